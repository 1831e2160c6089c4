"""Reward-model eval hook: pairwise accuracy per dimension on held-out pairs, checked by hand."""

import json

import pytest
import torch
from PIL import Image

from reward.base import RewardScores
from rl.hooks import EvalHook
from rl.reward_eval_hook import RewardPairAccuracyHook


class _Brightness:
    """IF score = mean brightness, VQ score = minus it; reward = the IF score (a rule we can reason about)."""

    dimensions = ("instruction_following", "visual_quality")

    def score(self, sources, edits, instructions):
        b = torch.tensor([float(torch.tensor(list(e.getdata())).float().mean()) / 255.0 for e in edits])
        mu = torch.stack([b, -b], dim=1)
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=b, dimensions=self.dimensions)


def _record(i, pref, rej, s1, s2, tie):
    return {
        "id": f"p{i}", "prompt": "brighten", "path_src": "src.png", "path1": pref, "path2": rej,
        "model1_dim1_score": s1[0], "model1_dim2_score": s1[1], "model1_overall_score": s1[2],
        "model2_dim1_score": s2[0], "model2_dim2_score": s2[1], "model2_overall_score": s2[2], "tie_case": tie,
    }


def test_pair_accuracy_hand_computed(tmp_path):
    for name, level in {"src": 128, "b80": 204, "b20": 51, "b30": 77, "b90": 230, "b50": 128, "b40": 102}.items():
        Image.new("RGB", (8, 8), (level,) * 3).save(tmp_path / f"{name}.png")
    records = [
        # IF 4>2 and the brighter edit is preferred: IF correct; VQ tied (skipped); overall correct
        _record(0, "b80.png", "b20.png", (4, 3, 7), (2, 3, 5), False),
        # IF 3>1 but the preferred edit is darker: IF wrong; VQ 2<4 and the model prefers the darker: wrong;
        # overall wrong
        _record(1, "b30.png", "b90.png", (3, 2, 5.5), (1, 4, 5.0), False),
        # a tie overall (skipped there); IF equal (skipped); VQ 3>1 but the preferred is brighter: wrong
        _record(2, "b50.png", "b40.png", (2, 3, 5), (2, 1, 5), True),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    hook = RewardPairAccuracyHook(_Brightness(), str(path), every_n_steps=3, name="held_out")
    assert isinstance(hook, EvalHook)
    result = hook(policy=None, step=5)
    assert result.n_items == 3
    assert result.metrics == pytest.approx(
        {"held_out/accuracy_instruction_following": 0.5, "held_out/accuracy_visual_quality": 0.0,
         "held_out/accuracy_overall": 0.5,
         # by pair case: pair 0 differs on IF only (right), pair 1 has IF +2 against VQ -2 (wrong)
         "held_out/accuracy_overall_if_only": 1.0, "held_out/accuracy_overall_conflict": 0.0}
    )
