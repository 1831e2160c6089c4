"""The bases evaluation's figures by hand: RL headroom of sampled groups and the JRM edit-sensitivity probe."""

from pathlib import Path

import numpy as np
import pytest
import torch

from reward.base import RewardScores
from world.bases.evaluate import best_of_group, edit_sensitivity, share_with_spread
from world.tasks import make_tasks


def test_headroom_figures_by_hand():
    scores = np.array([[1, 1, 3, 3], [2, 2, 2, 2], [1, 4, 1, 1]], dtype=float)
    assert share_with_spread(scores) == pytest.approx(2 / 3)
    assert best_of_group(scores) == pytest.approx((3 + 2 + 4) / 3)


class _ChangeReader:
    """IF = mean absolute pixel change from source to edit, plus ``instruction_weight`` x instruction length:
    reads the edit; reads the instruction only when the weight is non-zero."""

    dimensions = ("instruction_following", "visual_quality")

    def __init__(self, instruction_weight: float = 0.0) -> None:
        self.instruction_weight = instruction_weight

    def score(self, sources, edits, instructions):
        change = torch.tensor([
            float(np.abs(np.asarray(e, dtype=np.float32) - np.asarray(s, dtype=np.float32)).mean())
            for s, e in zip(sources, edits)
        ])
        value = change + self.instruction_weight * torch.tensor([float(len(t)) for t in instructions])
        mu = torch.stack([value, torch.zeros_like(value)], dim=1)
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=value, dimensions=self.dimensions)


def test_edit_sensitivity_tells_a_model_that_reads_the_edit_from_one_that_reads_the_instruction():
    tasks = make_tasks("pairs_eval", 6, 32)
    assert all((t.source_image != t.target_image).any() for t in tasks)
    blind_to_text = edit_sensitivity(_ChangeReader(), tasks)
    # every exact target differs from its source; the instruction is ignored, so a swapped one never scores lower
    assert blind_to_text == {"target_over_noop": 1.0, "own_over_other_instruction": 0.0}
    lengths = [len(t.instruction) for t in tasks]
    longer_than_next = np.mean([a > b for a, b in zip(lengths, lengths[1:] + lengths[:1])])
    text_only = edit_sensitivity(_ChangeReader(instruction_weight=1e3), tasks)
    assert text_only["own_over_other_instruction"] == pytest.approx(longer_than_next)
    with pytest.raises(ValueError, match="at least 2"):
        edit_sensitivity(_ChangeReader(), tasks[:1])


def test_jrm_eval_config_runs_exactly_the_asked_steps_past_the_demos_epoch_cap(tmp_path):
    from editrl.config import load_config
    from reward.jrm.train_loop import planned_steps
    from world.bases.config import REPO_ROOT, load_bases_config
    from world.bases.evaluate import jrm_eval_config
    from world.demo.config import DemoConfig

    demo = load_config(DemoConfig, REPO_ROOT / "configs" / "demo.yaml")
    batches = 2400 // demo.jrm.global_batch_size
    assert planned_steps(demo.jrm, batches) < 1200  # the demo's own section would stop a 1200-step run early
    cfg = jrm_eval_config(tmp_path / "bases", load_bases_config("full", []), demo, tmp_path / "work", alpha=0.7,
                          steps=1200, learning_rate=1e-3, rank_warmup_steps=600)
    assert planned_steps(cfg, batches) == 1200
    assert planned_steps(cfg, 1) == 1200  # even one batch per epoch reaches the asked steps
    assert (cfg.rank_warmup_steps, cfg.alpha, cfg.learning_rate) == (600, 0.7, 1e-3)
    assert cfg.data.rationales == str(tmp_path / "work" / "pairs_600" / "rationales.jsonl")
    rank_only = jrm_eval_config(tmp_path / "bases", load_bases_config("full", []), demo, tmp_path / "work", alpha=0.0,
                                steps=10, learning_rate=1e-3, n_train_tasks=1200)
    assert rank_only.data.rationales is None
    # another pair set lands in its own folder, never mixed with a cached one of another size
    assert Path(rank_only.data.train_pairs).parent != Path(cfg.data.train_pairs).parent
