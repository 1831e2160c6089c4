"""Experiment config: presets load as small overrides; a bad key or value fails fast, named."""

import subprocess
import sys

import pytest

from editrl.config import ConfigError
from rl.config import load_experiment_config
from tests.rl.helpers import REPO, TOY, toy_config


def test_toy_preset_and_overrides(tmp_path):
    cfg = toy_config(tmp_path, "grpo.group_size=3", "grpo.samples_per_chunk=6")
    assert cfg.grpo.group_size == 3 and cfg.grpo.samples_per_chunk == 6
    assert cfg.policy.checkpoint is None and cfg.reward.kind == "jrm"
    assert cfg.grpo.beta == 0.04 and cfg.grpo.eps_low == 1e-4 and cfg.grpo.eps_high == 5e-4


def test_paper_preset_chain(tmp_path):
    # the paper preset names cluster paths; blank them so it loads here
    (tmp_path / "x.jsonl").write_text("")
    local = ["policy.checkpoint=null", "policy.tiny=true", "jrm.model.backbone=null", "jrm.model.tiny=true", f"data.train_path={tmp_path}/x.jsonl"]
    cfg = load_experiment_config(REPO / "configs" / "omnigen2_jrm_32gpu.yaml", local)
    assert cfg.grpo.instructions_per_step * cfg.grpo.group_size == 288
    assert (cfg.policy.lora_rank, cfg.policy.lora_alpha, cfg.policy.num_inference_steps) == (32, 64, 20)
    assert cfg.ray.num_samplers + cfg.ray.num_learner_workers == 32
    # the public recipe: 2 disjoint minibatches per round, one pass, per-trained-step back-propagation
    assert (cfg.grpo.num_updates_per_step, cfg.grpo.num_epochs_per_step, cfg.grpo.learner_micro_batch) == (2, 1, 0)
    ablation = load_experiment_config(REPO / "configs" / "ablation_jrm_alpha0.yaml", local)
    assert ablation.reward.kind == "jrm_alpha0" and ablation.jrm.alpha == 0.0
    assert ablation.grpo.learning_rate == 4e-4
    er = load_experiment_config(REPO / "configs" / "ablation_editreward.yaml", [*local, "reward.checkpoint=null"])
    assert er.reward.kind == "editreward" and er.train_jrm is False


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("grpo.gruop_size=4", "grpo.gruop_size"),
        ("grpo.max_weight_lag=2", "grpo.max_weight_lag"),
        ("grpo.group_size=1", "grpo.group_size"),
        ("ray.placement_strategy=RANDOM", "ray.placement_strategy"),
        ("grpo.beta=abc", "grpo.beta"),
        ("grpo.num_epochs_per_step=0", "grpo.num_epochs_per_step"),
        ("grpo.learner_micro_batch=-1", "grpo.learner_micro_batch"),
    ],
)
def test_bad_config_names_the_key(tmp_path, override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        toy_config(tmp_path, override)


def test_launch_fails_fast_on_a_bad_key(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "launch" / "flow_grpo_jrm.py"), "--config", str(TOY), "grpo.num_stepz=3"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "grpo.num_stepz" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr
