"""Experiment config: presets load as small overrides; a bad key or value fails fast, named."""

import subprocess
import sys
from pathlib import Path

import pytest

from editrl.config import ConfigError
from rl.config import load_experiment_config
from rl.placement import bundle_specs
from tests.rl.helpers import REPO, TOY, toy_config, write_toy_instructions


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
    # hybrid placement: 32 policy workers, one per GPU, each sampling 3 chunks of 3 and training on them
    assert (cfg.ray.placement, cfg.ray.num_samplers, cfg.grpo.max_weight_lag) == ("hybrid", 32, 1)
    assert sum(b.get("GPU", 0) for b in bundle_specs(cfg.ray)) == 32
    assert 288 // cfg.grpo.samples_per_chunk % cfg.ray.num_samplers == 0
    # the public recipe: 2 disjoint minibatches per round, one pass, per-trained-step back-propagation
    assert (cfg.grpo.num_updates_per_step, cfg.grpo.num_epochs_per_step, cfg.grpo.learner_micro_batch) == (2, 1, 0)
    # stage 1 fits 8B full fine-tuning (sharded), is joint (rationales, annotated first) and writes to shared storage
    assert "base:" not in (REPO / "configs" / "omnigen2_jrm_32gpu.yaml").read_text()
    assert (cfg.jrm.strategy, cfg.jrm.precision, cfg.jrm.gradient_checkpointing) == ("fsdp", "bf16", True)
    assert cfg.jrm.alpha == 0.7 and cfg.jrm.data.rationales and cfg.jrm.annotate.enabled
    assert cfg.jrm.shared_output_dir and Path(cfg.jrm.output_dir).is_absolute()
    assert not cfg.reward.tiny and cfg.reward.checkpoint is None and cfg.train_jrm
    ablation = load_experiment_config(REPO / "configs" / "ablation_jrm_alpha0.yaml", local)
    assert ablation.reward.kind == "jrm_alpha0" and ablation.jrm.alpha == 0.0 and not ablation.jrm.annotate.enabled
    assert ablation.grpo.learning_rate == 4e-4
    er = load_experiment_config(
        REPO / "configs" / "ablation_editreward.yaml", [*local, "reward.checkpoint=null", "reward.tiny=true"]
    )
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
        ("ray.placement=fused", "ray.placement"),
        ("grpo.sde_window_size=-1", "grpo.sde_window_size"),
        ("grpo.sde_window_range=[0,2]", "grpo.sde_window_range is set but sde_window_size is 0"),
        ("grpo.sde_window_size=9", "grpo.sde_window_size"),
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


def test_the_32gpu_preset_refuses_missing_checkpoints_and_rationales_naming_the_key_before_ray(tmp_path):
    import ray

    from rl.preflight import preflight
    from world.pairs import write_preference_pairs
    from world.tasks import make_tasks

    preset = REPO / "configs" / "omnigen2_jrm_32gpu.yaml"
    data = write_toy_instructions(tmp_path / "world", 2)
    pairs = write_preference_pairs(make_tasks("pairs", 2), tmp_path / "pairs", seed=0, pairs_per_task=2).path
    tiny_policy = [f"data.train_path={data}", "policy.checkpoint=null", "policy.tiny=true"]
    with pytest.raises(ConfigError, match=r"policy\.checkpoint: required .*tiny=true"):
        load_experiment_config(preset, [f"data.train_path={data}", "policy.checkpoint=null"])
    with pytest.raises(ConfigError, match=r"reward\.checkpoint: required .*reward\.tiny=true"):
        load_experiment_config(preset, [*tiny_policy, "train_jrm=false"])
    with pytest.raises(ConfigError, match=r"jrm\.model\.backbone: stage 1"):
        load_experiment_config(preset, [*tiny_policy, "jrm.model.backbone=null"])
    stage1 = [
        *tiny_policy, "jrm.model.backbone=null", "jrm.model.tiny=true", f"jrm.data.train_pairs={pairs}",
        "jrm.data.image_root=null", f"jrm.output_dir={tmp_path / 'jrm'}", f"output_dir={tmp_path / 'run'}",
    ]
    # alpha 0.7 with no rationale file and no annotation step: the pairs carry none
    cfg = load_experiment_config(preset, [*stage1, "jrm.data.rationales=null", "jrm.annotate.enabled=false"])
    with pytest.raises(ConfigError, match=r"jrm\.data\.rationales: alpha=0\.7 > 0 .*none of the \d+ training pairs"):
        preflight(cfg)
    cfg = load_experiment_config(preset, [*stage1, "jrm.annotate.enabled=false"])  # the named file is absent
    with pytest.raises(ConfigError, match=r"jrm\.data\.rationales: /data/EditReward-Data/rationales\.jsonl not found"):
        preflight(cfg)
    with pytest.raises(ConfigError, match=r"jrm\.data\.rationales: annotate\.enabled needs"):
        load_experiment_config(preset, [*stage1, "jrm.data.rationales=null"])
    cfg = load_experiment_config(preset, [*(o for o in stage1 if not o.startswith("jrm.model.")),
                                          f"jrm.data.rationales={tmp_path / 'rationales.jsonl'}"])
    with pytest.raises(ConfigError, match=r"jrm\.model\.backbone: not a local directory"):
        preflight(cfg)
    # the annotation step will write the file: the preset passes preflight
    preflight(load_experiment_config(preset, [*stage1, f"jrm.data.rationales={tmp_path / 'rationales.jsonl'}"]))
    with pytest.raises(ConfigError, match=r"jrm\.output_dir: must be an absolute path on shared storage"):
        load_experiment_config(preset, [*stage1, "jrm.output_dir=runs/jrm"])
    assert not ray.is_initialized()


def test_the_noise_control_needs_no_reward_checkpoint_but_a_jrm_does(tmp_path):
    control = toy_config(tmp_path, "reward.kind=noise", "reward.tiny=false", "reward.checkpoint=null")
    assert control.reward.kind == "noise" and control.reward.checkpoint is None
    with pytest.raises(ConfigError, match=r"reward\.checkpoint: required"):
        toy_config(tmp_path, "reward.kind=jrm", "reward.tiny=false", "reward.checkpoint=null")
