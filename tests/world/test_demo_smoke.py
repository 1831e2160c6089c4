"""The demo's stages, reduced (configs/demo_smoke.yaml): every stage runs and writes finite metrics and files."""

import json
import math

import numpy as np
import pytest
import torch

from launch.demo import main
from reward.base import RewardScores
from world.demo.heldout import RLEvaluation, score_with_reward_model
from world.demo.metrics import reward_model_metrics
from world.evaluate import PolicyEvaluation
from world.render import to_pil
from world.tasks import make_tasks

REQUIRED_KEYS = (
    "policy.oracle_if_before",
    "policy.oracle_if_after",
    "policy.oracle_vq_before",
    "policy.oracle_vq_after",
    "policy.n_heldout",
    "jrm.alpha_0.7.pair_acc",
    "jrm.alpha_0.pair_acc",
    "jrm.alpha_0.7.effective_rank",
    "jrm.alpha_0.effective_rank",
    "rl.steps",
    "wall_seconds",
    # the alpha = 0 ablation arm (configs/demo_smoke.yaml turns it on)
    "policy_alpha0.oracle_if_before",
    "policy_alpha0.oracle_if_after",
    "policy_alpha0.oracle_vq_before",
    "policy_alpha0.oracle_vq_after",
    "policy_alpha0.oracle_if_delta",
    "policy_alpha0.oracle_if_delta_ci95_low",
    "policy_alpha0.oracle_if_delta_ci95_high",
    "policy_alpha0.oracle_vq_delta",
    "rl_alpha0.steps",
    "rl_alpha0.reward_first",
    "rl_alpha0.reward_last",
    "rl_alpha0.heldout_jrm_reward_before",
    "rl_alpha0.heldout_jrm_reward_after",
    "policy.oracle_if_gain_minus_alpha0",
    "policy.oracle_if_gain_minus_alpha0_ci95_low",
    "policy.oracle_if_gain_minus_alpha0_ci95_high",
)


@pytest.mark.slow
def test_demo_smoke_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    returned = main(["--config", "configs/demo_smoke.yaml", f"output_dir={out}", "oracle_reward_rl=true",
                     "null_reward_rl=true"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == pytest.approx(returned)
    for key in REQUIRED_KEYS:
        assert key in metrics, key
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["rl.steps"] == 2 and metrics["policy.n_heldout"] == 6
    for score in ("policy.oracle_if_before", "policy.oracle_if_after", "policy.oracle_vq_before", "policy.oracle_vq_after",
                  "policy.autoencoder_roundtrip_if", "policy.autoencoder_roundtrip_vq"):
        assert 1.0 <= metrics[score] <= 4.0
    assert 0.0 <= metrics["jrm.alpha_0.7.pair_acc"] <= 1.0
    assert metrics["jrm.alpha_0.7.effective_rank"] >= 1.0
    # the JRM scored the held-out edits of every evaluated step (agreement is left out when undefined)
    assert math.isfinite(metrics["rl.heldout_jrm_reward_before"]) and math.isfinite(metrics["rl.heldout_jrm_reward_after"])
    for key in ("rl.jrm_oracle_agreement_before", "rl.jrm_oracle_agreement_after",
                "rl.jrm_oracle_group_agreement_before", "rl.jrm_oracle_group_agreement_after"):
        assert 0.0 <= metrics.get(key, 0.5) <= 1.0
    for stage in ("world", "pretrain", "pairs", "jrm", "rl", "eval", "rl_alpha_0", "eval_alpha_0", "rl_oracle_reward", "eval_oracle_reward"):
        assert f"time.{stage}" in metrics, stage
    # the alpha = 0 arm: the same RL run with the alpha = 0 JRM as the reward, from the same pretrained edits
    assert metrics["rl_alpha0.steps"] == 2 and metrics["policy_alpha0.n_heldout"] == 6
    assert len(list((out / "rl_alpha_0" / "checkpoints").iterdir())) == 2
    assert metrics["policy_alpha0.oracle_if_before"] == metrics["policy.oracle_if_before"]
    gain_difference = metrics["policy.oracle_if_delta"] - metrics["policy_alpha0.oracle_if_delta"]
    assert metrics["policy.oracle_if_gain_minus_alpha0"] == pytest.approx(gain_difference)
    assert json.loads((out / "heldout_scores_alpha_0.json").read_text())["steps"] == [0, 1, 2]
    # the oracle-reward diagnostic: its own RL run, evaluated like the JRM run
    # the diagnostics: the oracle and the null reward, each its own RL run, evaluated like the JRM run from the
    # same step-0 edits, its gain paired with the JRM run's
    for name in ("oracle_reward", "null_reward"):
        assert metrics[f"diagnostic.{name}.rl_steps"] == 2
        assert len(list((out / f"rl_{name}" / "checkpoints").iterdir())) == 2
        assert f"time.rl_{name}" in metrics and f"time.eval_{name}" in metrics
        this_gain = metrics[f"diagnostic.{name}.oracle_if_delta"]
        assert metrics[f"diagnostic.{name}.oracle_if_gain_main_minus_this"] == pytest.approx(
            metrics["policy.oracle_if_delta"] - this_gain)
    # each stage's artefacts
    assert (out / "policy_pretrained" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "data" / "rl" / "instructions.jsonl").is_file()
    annotations = (out / "data" / "pairs" / "annotations.jsonl").read_text().splitlines()
    assert annotations and all(json.loads(line)["status"] == "ok" for line in annotations)
    for alpha in ("0.7", "0"):
        assert (out / f"jrm_alpha_{alpha}" / "final").is_dir()
    assert len(list((out / "rl" / "checkpoints").iterdir())) == 2
    report = (out / "report.md").read_text()
    assert "Diagnostic: RL with the oracle as the reward" in report
    assert "Diagnostic: RL with a null reward (what the updates alone do)" in report
    assert "## RL reward: JRM alpha = 0.7 vs alpha = 0 (ablation)" in report
    assert "the difference of the gains is" in report and "Per RL step, JRM alpha = 0 as the reward" in report
    assert "Training objective: ranking loss `hpsv3`" in report and "LM loss `token_mean`" in report
    assert "JRM-oracle agreement" in report and "Within-task JRM-oracle agreement" in report
    # overall accuracy split by pair case: each case's share of the overall count is reported beside it
    cases = [k for k in metrics if k.startswith("jrm.alpha_0.7.pair_acc_overall_")]
    assert cases and all(0.0 <= metrics[k] <= 1.0 for k in cases)
    assert "Overall accuracy by how the oracle's scores of a pair differ" in report
    for plot in ("rl_reward", "oracle_over_rl", "samples", "jrm_loss", "jrm_spectra"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
        assert f"plots/{plot}.png" in report


class _MeanPixelReward:
    """Reward = mean pixel value of the edit (NaN for one named instruction), to check alignment."""

    dimensions = ("instruction_following", "visual_quality")

    def __init__(self, nan_for: str | None = None) -> None:
        self.nan_for = nan_for

    def score(self, sources, edits, instructions):
        values = torch.tensor([
            float("nan") if text == self.nan_for else float(np.asarray(e, dtype=np.float32).mean() / 255.0)
            for e, text in zip(edits, instructions)
        ])
        mu = torch.stack([values, values], dim=1)
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=values, dimensions=self.dimensions)


def _evaluation_of(tasks, images) -> PolicyEvaluation:
    n = len(tasks)
    return PolicyEvaluation([t.task_id for t in tasks], np.ones(n, int), np.ones(n, int), np.zeros(n), images)


def test_held_out_edits_are_scored_in_task_order_across_batches():
    tasks = make_tasks("heldout", 5, 32)
    images = [to_pil(np.full((32, 32, 3), i / 10.0, dtype=np.float32)) for i in range(5)]
    rewards = score_with_reward_model(_MeanPixelReward(), tasks, _evaluation_of(tasks, images), batch_size=2)
    assert rewards == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=3e-3)  # 8-bit rounding
    with pytest.raises(FloatingPointError, match=tasks[3].task_id):
        score_with_reward_model(_MeanPixelReward(nan_for=tasks[3].instruction), tasks, _evaluation_of(tasks, images), batch_size=2)


def test_reward_model_metrics_compare_the_jrm_with_the_oracle_per_step():
    tasks = make_tasks("heldout", 3, 32)
    images = [to_pil(np.zeros((32, 32, 3), dtype=np.float32))] * 3
    before = _evaluation_of(tasks, images)
    after = PolicyEvaluation(before.task_ids, np.array([1, 2, 4]), np.array([1, 2, 2]), np.zeros(3), images)
    evaluation = RLEvaluation(
        [0, 5], [before, after], rewards=[np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])], group_agreement=[0.75, float("nan")]
    )
    metrics = reward_model_metrics("rl", evaluation, "mean")
    assert metrics["rl.jrm_oracle_group_agreement_before"] == 0.75
    assert "rl.jrm_oracle_group_agreement_after" not in metrics  # undefined, left out
    assert metrics["rl.heldout_jrm_reward_before"] == 2.0 and metrics["rl.heldout_jrm_reward_after"] == 2.0
    assert "rl.jrm_oracle_agreement_before" not in metrics  # the oracle scores every "before" edit alike
    assert metrics["rl.jrm_oracle_agreement_after"] == 0.0  # oracle means 1, 2, 3 against rewards 3, 2, 1
