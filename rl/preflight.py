"""Everything a run can check before Ray or any model starts: kinds, paths, data, and the checkpoint to resume.

:func:`load_config` already validated every key and value (lists included, NaN rejected). What needs the
registries a run is given, the file system, or a checkpoint is checked here, once, so that a bad input fails in
seconds instead of after minutes of loading models on 32 GPUs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from editrl.config import ConfigError
from editrl.manifest import DamagedCheckpointError
from policies.registry import PolicyRegistry, default_policy_registry
from reward.registry import RewardRegistry, default_registry
from rl.checkpoint import Checkpoint, load_checkpoint, newest_intact_checkpoint
from rl.config import ExperimentConfig
from rl.config_changes import ConfigChanges, compare_configs
from rl.data import read_instruction_jsonl
from rl.hook_registry import HookRegistry, default_hook_registry, require_eval_hook_kinds
from rl.types import InstructionRecord

logger = logging.getLogger(__name__)


@dataclass
class RunInputs:
    """What the preflight loaded, handed to the run so nothing is read twice.

    records:  the instruction records, every source image decoded once.
    resume:   the checkpoint to continue from (verified), or None for a fresh run.
    changes:  how the new config differs from the checkpoint's (None without a resume).
    """

    records: list[InstructionRecord]
    resume: Checkpoint | None
    changes: ConfigChanges | None


def check_input_paths(cfg: ExperimentConfig) -> None:
    """Every file and directory the config names that must exist (errors name the key)."""
    if not Path(cfg.data.train_path).is_file():
        raise ConfigError(f"data.train_path: instruction file not found: {cfg.data.train_path}")
    for i, hook in enumerate(cfg.eval_hooks):
        if not Path(hook.path).exists():
            raise ConfigError(f"eval_hooks.{i}.path: not found: {hook.path}")
        if hook.image_root is not None and not Path(hook.image_root).is_dir():
            raise ConfigError(f"eval_hooks.{i}.image_root: not a directory: {hook.image_root}")
    for i, hook in enumerate(cfg.policy_eval_hooks):
        if not Path(hook.data_dir).is_dir():
            raise ConfigError(f"policy_eval_hooks.{i}.data_dir: not a directory: {hook.data_dir}")
    if cfg.reward.checkpoint is not None and not Path(cfg.reward.checkpoint).exists():
        raise ConfigError(f"reward.checkpoint: not found: {cfg.reward.checkpoint}")
    resume = cfg.checkpoint.resume
    if resume not in ("auto", "never") and not Path(resume).is_dir():
        raise ConfigError(f"checkpoint.resume: must be auto, never or a checkpoint directory; {resume!r} is not one")


def check_stage1_inputs(cfg: ExperimentConfig) -> None:
    """When stage 1 will run (``train_jrm`` and no ``reward.checkpoint``): its pair file, its rationales for
    alpha > 0 (:func:`reward.jrm.train_data.check_stage1_data`), and where its final JRM goes (errors name the
    ``jrm.*`` key)."""
    if not cfg.train_jrm or cfg.reward.checkpoint:
        return
    from reward.jrm.train_data import check_stage1_data

    try:
        check_stage1_data(cfg.jrm)
    except ConfigError as exc:
        raise ConfigError(f"jrm.{exc}") from None


def config_tree(cfg: ExperimentConfig) -> dict:
    """The resolved config as plain containers (what a checkpoint's ``config.yaml`` holds)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def resolve_resume(cfg: ExperimentConfig) -> tuple[Checkpoint | None, ConfigChanges | None]:
    """The checkpoint ``checkpoint.resume`` names (auto: the newest intact one), checked against ``cfg``.

    Keys that change the run's meaning must equal the checkpoint's, unless ``checkpoint.allow_config_change``;
    the error lists every difference. An explicitly named damaged checkpoint is an error naming its file.
    """
    choice = cfg.checkpoint.resume
    if choice == "never":
        return None, None
    ckpt = newest_intact_checkpoint(cfg.output_path) if choice == "auto" else load_checkpoint(choice)
    if ckpt is None:
        return None, None
    config_file = ckpt.path / "config.yaml"
    try:
        old = OmegaConf.to_container(OmegaConf.load(config_file))
    except Exception as exc:  # yaml errors come in many classes
        raise DamagedCheckpointError(f"{config_file}: cannot be parsed ({exc})") from None
    changes = compare_configs(old or {}, config_tree(cfg))
    if changes.fixed and not cfg.checkpoint.allow_config_change:
        listed = "\n  ".join(str(c) for c in changes.fixed)
        raise ConfigError(
            f"checkpoint.resume: {ckpt.path} was written with a different config; these keys change the meaning "
            f"of the run:\n  {listed}\nuse a new output_dir, checkpoint.resume=never, or "
            "checkpoint.allow_config_change=true to continue anyway"
        )
    return ckpt, changes


def check_kinds(
    cfg: ExperimentConfig,
    *,
    reward_registry: RewardRegistry | None = None,
    policy_registry: PolicyRegistry | None = None,
    hook_registry: HookRegistry | None = None,
) -> None:
    """Every kind the config names (reward, policy, eval hooks) is in the registries the run is handed."""
    (reward_registry or default_registry()).require(cfg.reward.kind)
    (policy_registry or default_policy_registry()).require(cfg.policy.kind, "policy.kind")
    require_eval_hook_kinds(cfg.eval_hooks, hook_registry or default_hook_registry())


def preflight(
    cfg: ExperimentConfig,
    *,
    reward_registry: RewardRegistry | None = None,
    policy_registry: PolicyRegistry | None = None,
    hook_registry: HookRegistry | None = None,
    check_resume: bool = True,
) -> RunInputs:
    """Check kinds, paths, data and the resume checkpoint; load what the run needs. Nothing starts here."""
    check_kinds(cfg, reward_registry=reward_registry, policy_registry=policy_registry, hook_registry=hook_registry)
    check_input_paths(cfg)
    check_stage1_inputs(cfg)
    records = read_instruction_jsonl(
        cfg.data.train_path, allow_outside=cfg.data.allow_outside_paths, decode_workers=cfg.data.decode_workers
    )
    resume, changes = resolve_resume(cfg) if check_resume else (None, None)
    return RunInputs(records=records, resume=resume, changes=changes)
