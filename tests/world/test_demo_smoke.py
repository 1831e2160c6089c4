"""The demo's stages, reduced (configs/demo_smoke.yaml): every stage runs and writes finite metrics and files."""

import json
import math

import pytest

from launch.demo import main

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
)


@pytest.mark.slow
def test_demo_smoke_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    returned = main(["--config", "configs/demo_smoke.yaml", f"output_dir={out}", "oracle_reward_rl=true"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == pytest.approx(returned)
    for key in REQUIRED_KEYS:
        assert key in metrics, key
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["rl.steps"] == 2 and metrics["policy.n_heldout"] == 6
    for score in ("policy.oracle_if_before", "policy.oracle_if_after", "policy.oracle_vq_before", "policy.oracle_vq_after"):
        assert 1.0 <= metrics[score] <= 4.0
    assert 0.0 <= metrics["jrm.alpha_0.7.pair_acc"] <= 1.0
    assert metrics["jrm.alpha_0.7.effective_rank"] >= 1.0
    for stage in ("world", "pretrain", "pairs", "jrm", "rl", "eval", "rl_oracle_reward", "eval_oracle_reward"):
        assert f"time.{stage}" in metrics, stage
    # the oracle-reward diagnostic: its own RL run, evaluated like the JRM run
    assert metrics["diagnostic.oracle_reward.rl_steps"] == 2
    assert len(list((out / "rl_oracle_reward" / "checkpoints").iterdir())) == 2
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
    for plot in ("rl_reward", "oracle_over_rl", "samples", "jrm_loss", "jrm_spectra"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
        assert f"plots/{plot}.png" in report
