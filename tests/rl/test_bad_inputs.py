"""Bad inputs, as a new user makes them: each is an error that names the thing, raised before Ray starts.

One table per family: config keys (load time), inputs the preflight checks (kinds, paths), instruction data
faults, and checkpoint faults. Every case also asserts that no Ray cluster was started.
"""

import logging
from dataclasses import replace

import pytest
import ray
import torch
from PIL import Image

from editrl.config import ConfigError, to_yaml
from editrl.jsonl import read_jsonl
from editrl.manifest import DamagedCheckpointError
from rl.checkpoint import TrainingState, save_checkpoint
from rl.data import InstructionDataError
from rl.preflight import preflight
from tests.rl.helpers import toy_config
from world.registries import world_hook_registry

CONFIG_CASES = [
    ("grpo.num_stepz=3", "grpo.num_stepz"),
    ("grpo.beta=abc", "grpo.beta"),
    ("grpo.learning_rate=nan", "grpo.learning_rate: must be a finite number"),
    ("grpo.max_grad_norm=inf", "grpo.max_grad_norm: must be a finite number"),
    ("policy.kind=sdxl", "policy.kind: unknown policy kind 'sdxl'"),
    ("reward.kind=clip", "reward.kind: unknown reward model kind 'clip'"),
    ("reward.combine=median", "reward.combine"),
    ("reward.dtype=int8", "reward.dtype"),
    ("grpo.max_failed_reward_fraction=1.5", "grpo.max_failed_reward_fraction"),
    ("grpo.max_rounds_without_update=-1", "grpo.max_rounds_without_update"),
    ("checkpoint.keep_last=0", "checkpoint.keep_last"),
    ("data.decode_workers=0", "data.decode_workers"),
    ("eval_hooks=[{kind: reward_pair_accuracy, path: x.jsonl, every_n_steps: 0}]", "eval_hooks.0.every_n_steps"),
    ("eval_hooks=[{kind: '', path: x.jsonl}]", "eval_hooks.0.kind"),
    ("policy_eval_hooks=[{bench: gedit, data_dir: ''}]", "policy_eval_hooks.0.data_dir"),
    ("policy_eval_hooks=[{bench: gedit, data_dir: d, every_n_steps: 0}]", "policy_eval_hooks.0.every_n_steps"),
    ("policy_eval_hooks=[{bench: nope, data_dir: d}]", "'bench' (in override policy_eval_hooks="),
]


@pytest.mark.parametrize(("override", "named"), CONFIG_CASES, ids=[c[0][:40] for c in CONFIG_CASES])
def test_config_key_families_fail_at_load_naming_the_key(tmp_path, override, named):
    with pytest.raises(ConfigError) as err:
        toy_config(tmp_path, override)
    assert named in str(err.value)
    assert not ray.is_initialized()


PREFLIGHT_CASES = [
    ("eval_hooks=[{kind: world_oracle, path: HELDOUT}, {kind: nope, path: HELDOUT}]", "eval_hooks.1.kind"),
    ("eval_hooks=[{kind: world_oracle, path: MISSING}]", "eval_hooks.0.path: not found"),
    ("eval_hooks=[{kind: reward_pair_accuracy, path: HELDOUT, image_root: MISSING}]", "eval_hooks.0.image_root"),
    ("data.train_path=MISSING", "data.train_path: instruction file not found"),
    ("checkpoint.resume=MISSING", "checkpoint.resume"),
    ("reward.checkpoint=MISSING", "reward.checkpoint: not found"),
    ("policy_eval_hooks=[{bench: gedit, data_dir: MISSING}]", "policy_eval_hooks.0.data_dir: not a directory"),
]


@pytest.mark.parametrize(("override", "named"), PREFLIGHT_CASES, ids=[c[1] for c in PREFLIGHT_CASES])
def test_preflight_names_the_key_before_ray(tmp_path, override, named):
    cfg = toy_config(tmp_path)
    override = override.replace("HELDOUT", cfg.data.train_path).replace("MISSING", str(tmp_path / "missing"))
    cfg = toy_config(tmp_path, override)
    with pytest.raises(ConfigError) as err:
        preflight(cfg, hook_registry=world_hook_registry())
    assert named in str(err.value)
    assert not ray.is_initialized()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _bomb(path):
    Image.new("RGB", (256, 256)).save(path)


DATA_CASES = [
    ("truncated_png", lambda d, rec: _truncate(d / rec["source"]), "image cannot be decoded"),
    ("not_an_image", lambda d, rec: (d / rec["source"]).write_text("hello"), "image cannot be decoded"),
    ("decompression_bomb", lambda d, rec: _bomb(d / rec["source"]), "decompression bomb"),
    ("missing_image", lambda d, rec: (d / rec["source"]).unlink(), "image not found"),
]


@pytest.mark.parametrize(("fault", "damage", "named"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_unreadable_source_images_fail_the_load_naming_file_line_and_id(tmp_path, monkeypatch, fault, damage, named):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 256*256 > 2 * 20000; the 32 px sources are fine
    cfg = toy_config(tmp_path)
    records = read_jsonl(cfg.data.train_path)
    damage(type(tmp_path)(cfg.data.train_path).parent, records[2])
    with pytest.raises(InstructionDataError) as err:
        preflight(cfg)
    message = str(err.value)
    assert named in message and "instructions.jsonl:3" in message and repr(records[2]["id"]) in message
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('{"id": "x", "instruction": "do it", "source": "../escape.png"}', "leaves the data root"),
        ('{"id": "x", "instruction": "do it", "source": "/etc/passwd"}', "leaves the data root"),
        ('{"id": "x", "instruction": "do it", "source": ', "malformed JSON"),
        ('{"id": "x", "instruction": "", "source": "a.png"}', "'instruction' must be a non-empty string"),
    ],
    ids=["dotdot", "absolute", "malformed_json", "empty_instruction"],
)
def test_bad_instruction_lines_name_file_and_line(tmp_path, line, named):
    cfg = toy_config(tmp_path)
    path = type(tmp_path)(cfg.data.train_path)
    path.write_text(path.read_text() + line + "\n")
    n = len(path.read_text().splitlines())
    with pytest.raises(InstructionDataError) as err:
        preflight(cfg)
    assert named in str(err.value) and f"instructions.jsonl:{n}" in str(err.value)


def test_duplicate_ids_are_named(tmp_path):
    cfg = toy_config(tmp_path)
    path = type(tmp_path)(cfg.data.train_path)
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    with pytest.raises(InstructionDataError, match="duplicate id"):
        preflight(cfg)


def test_outside_paths_load_when_allowed(tmp_path):
    cfg = toy_config(tmp_path, "data.allow_outside_paths=true")
    path = type(tmp_path)(cfg.data.train_path)
    Image.new("RGB", (32, 32)).save(tmp_path / "outside.png")
    path.write_text(path.read_text() + '{"id": "out", "instruction": "x", "source": "../outside.png"}\n')
    assert preflight(cfg).records[-1].record_id == "out"
    with pytest.raises(InstructionDataError, match="leaves the data root"):
        preflight(replace(cfg, data=replace(cfg.data, allow_outside_paths=False)))


# -- checkpoints ---------------------------------------------------------------------------------------------


def _save(cfg, step: int, *, learning_rate: float | None = None):
    saved_cfg = replace(cfg, grpo=replace(cfg.grpo, learning_rate=learning_rate)) if learning_rate else cfg
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=saved_cfg.grpo.learning_rate)
    return save_checkpoint(
        cfg.output_dir, TrainingState(step, step * 2, step), {"lora.weight": torch.full((2, 2), float(step))},
        opt.state_dict(), {"torch_cpu": torch.get_rng_state()}, to_yaml(saved_cfg), keep_last=10,
    )


CHECKPOINT_DAMAGE = [
    ("truncated_adapter", lambda d: _truncate(d / "adapter.safetensors"), "adapter.safetensors"),
    ("missing_optimizer", lambda d: (d / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    ("altered_rng", lambda d: (d / "rng.safetensors").write_bytes(b"x" * (d / "rng.safetensors").stat().st_size),
     "rng.safetensors does not match"),
    ("missing_manifest_and_file", lambda d: [(d / "manifest.json").unlink(), (d / "config.yaml").unlink()],
     "config.yaml is missing"),
]


@pytest.mark.parametrize(("fault", "damage", "named"), CHECKPOINT_DAMAGE, ids=[c[0] for c in CHECKPOINT_DAMAGE])
def test_damaged_newest_checkpoint_falls_back_or_is_named(tmp_path, caplog, fault, damage, named):
    cfg = toy_config(tmp_path)
    _save(cfg, 1)
    newest = _save(cfg, 2)
    damage(newest)
    with caplog.at_level(logging.WARNING):
        inputs = preflight(cfg)
    assert inputs.resume is not None and inputs.resume.state.step == 1
    assert "step_00000002" in caplog.text and named in caplog.text
    with pytest.raises(DamagedCheckpointError, match=named.replace(".", r"\.")):
        preflight(toy_config(tmp_path, f"checkpoint.resume={newest}"))
    assert not ray.is_initialized()


def test_a_checkpoint_killed_mid_write_is_never_picked_up(tmp_path):
    cfg = toy_config(tmp_path)
    _save(cfg, 1)
    root = cfg.output_path / "checkpoints"
    partial = root / ".step_00000002.tmp"  # what a kill -9 during the write leaves
    partial.mkdir()
    (partial / "adapter.safetensors").write_bytes(b"partial")
    (root / "step_00000003").mkdir()  # a directory without the state marker is not a checkpoint either
    assert preflight(cfg).resume.state.step == 1


def test_resume_refuses_meaning_changes_listing_them_and_applies_the_rest(tmp_path):
    cfg = toy_config(tmp_path)
    _save(cfg, 2)
    changed = toy_config(tmp_path, "policy.lora_alpha=16", "grpo.seed=3", "grpo.learning_rate=1e-5")
    with pytest.raises(ConfigError) as err:
        preflight(changed)
    message = str(err.value)
    assert "policy.lora_alpha: 8 -> 16" in message and "grpo.seed: 0 -> 3" in message
    assert "learning_rate" not in message
    lr_only = preflight(toy_config(tmp_path, "grpo.learning_rate=1e-5"))
    assert [c.key for c in lr_only.changes.mutable] == ["grpo.learning_rate"] and not lr_only.changes.fixed
    forced = preflight(toy_config(tmp_path, "policy.lora_alpha=16", "checkpoint.allow_config_change=true"))
    assert [c.key for c in forced.changes.fixed] == ["policy.lora_alpha"]
