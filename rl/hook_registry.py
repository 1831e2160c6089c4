"""Builds the eval hooks an experiment config lists (``eval_hooks: [{kind: ..., ...}]``).

The kinds live in a :class:`editrl.registry.Registry` of hook builders: :func:`default_hook_registry` returns
a fresh one with the built-in kind ``reward_pair_accuracy``; other packages extend a copy with their own
(the toy world adds ``world_oracle``: :func:`world.registries.world_hook_registry`) and hand it to
:func:`rl.controller.run_flow_grpo`, which checks every configured kind before any actor starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from editrl.registry import Registry
from reward.base import RewardModel
from rl.benchmarks.config import PolicyEvalHookConfig
from rl.benchmarks.hooks import build_policy_eval_hook
from rl.config import EvalHookConfig
from rl.hooks import EvalHook
from rl.reward_eval_hook import RewardPairAccuracyHook

#: Builds one hook from its config and the run's reward model (a driver-side proxy of the reward actor).
HookBuilder = Callable[[EvalHookConfig, RewardModel], EvalHook]
HookRegistry = Registry[HookBuilder]


def _reward_pair_accuracy(cfg: EvalHookConfig, reward_model: RewardModel) -> EvalHook:
    return RewardPairAccuracyHook(
        reward_model, cfg.path, image_root=cfg.image_root, every_n_steps=cfg.every_n_steps, limit=cfg.limit
    )


def default_hook_registry() -> HookRegistry:
    """A fresh registry with the built-in kind ``reward_pair_accuracy`` (each call returns a new object)."""
    return Registry("eval hook", {"reward_pair_accuracy": _reward_pair_accuracy})


def require_eval_hook_kinds(cfgs: Sequence[EvalHookConfig], registry: HookRegistry) -> None:
    """Raise a :class:`editrl.config.ConfigError` naming ``eval_hooks.<i>.kind`` for the first unknown kind."""
    for i, cfg in enumerate(cfgs):
        registry.require(cfg.kind, f"eval_hooks.{i}.kind")


def build_eval_hooks(
    cfgs: Sequence[EvalHookConfig],
    reward_model: RewardModel,
    policy_cfgs: Sequence[PolicyEvalHookConfig] = (),
    registry: HookRegistry | None = None,
) -> list[EvalHook]:
    """The hooks of ``eval_hooks`` (kinds of ``registry``, default: the built-in ones) and ``policy_eval_hooks``
    (GEdit / ImgEdit, judged). Every kind is checked before any hook is built."""
    registry = registry or default_hook_registry()
    require_eval_hook_kinds(cfgs, registry)
    hooks: list[EvalHook] = [build_policy_eval_hook(cfg) for cfg in policy_cfgs]
    hooks += [registry.get(cfg.kind)(cfg, reward_model) for cfg in cfgs]
    return hooks
