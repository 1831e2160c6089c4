"""Builds the eval hooks an experiment config lists (``eval_hooks: [{kind: ..., ...}]``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType

from editrl.config import ConfigError
from reward.base import RewardModel
from rl.benchmarks.config import PolicyEvalHookConfig
from rl.benchmarks.hooks import build_policy_eval_hook
from rl.config import EVAL_HOOK_KINDS, EvalHookConfig
from rl.hooks import EvalHook
from rl.reward_eval_hook import RewardPairAccuracyHook
from world.eval_hook import WorldOracleHook
from world.tasks import task_from_record

HookBuilder = Callable[[EvalHookConfig, RewardModel], EvalHook]


def _reward_pair_accuracy(cfg: EvalHookConfig, reward_model: RewardModel) -> EvalHook:
    return RewardPairAccuracyHook(
        reward_model, cfg.path, image_root=cfg.image_root, every_n_steps=cfg.every_n_steps, limit=cfg.limit
    )


def _world_oracle(cfg: EvalHookConfig, reward_model: RewardModel) -> EvalHook:
    records = [json.loads(line) for line in Path(cfg.path).read_text().splitlines() if line.strip()]
    tasks = [task_from_record(r) for r in records[: cfg.limit]]
    return WorldOracleHook(tasks, cfg.every_n_steps)


#: kind -> builder (read-only).
HOOK_BUILDERS: MappingProxyType[str, HookBuilder] = MappingProxyType(
    {"reward_pair_accuracy": _reward_pair_accuracy, "world_oracle": _world_oracle}
)


if set(HOOK_BUILDERS) != set(EVAL_HOOK_KINDS):
    raise ImportError(f"rl.config.EVAL_HOOK_KINDS {EVAL_HOOK_KINDS} and HOOK_BUILDERS {sorted(HOOK_BUILDERS)} disagree")


def build_eval_hooks(
    cfgs: Sequence[EvalHookConfig], reward_model: RewardModel, policy_cfgs: Sequence[PolicyEvalHookConfig] = ()
) -> list[EvalHook]:
    """The hooks of ``eval_hooks`` (kinds above) and ``policy_eval_hooks`` (GEdit / ImgEdit, judged)."""
    hooks: list[EvalHook] = [build_policy_eval_hook(cfg) for cfg in policy_cfgs]
    for i, cfg in enumerate(cfgs):
        builder = HOOK_BUILDERS.get(cfg.kind)
        if builder is None:
            raise ConfigError(f"eval_hooks.{i}.kind: unknown hook kind {cfg.kind!r}; known: {sorted(HOOK_BUILDERS)}")
        hooks.append(builder(cfg, reward_model))
    return hooks
