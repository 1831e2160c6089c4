"""The world's kinds, added to the registries a run is handed: reward ``world_oracle`` and eval hook ``world_oracle``.

    run_flow_grpo(cfg, world_reward_registry(), hook_registry=world_hook_registry())

Each function extends a copy of ``base`` (default: the built-in kinds of :mod:`reward.registry` /
:mod:`rl.hook_registry`); ``base`` itself is left unchanged.
"""

from __future__ import annotations

from reward.registry import RewardRegistry, default_registry
from rl.hook_registry import HookRegistry, default_hook_registry
from world.eval_hook import build_world_oracle_hook
from world.oracle_reward import build_world_oracle

#: The kind name of the oracle, as a reward model and as an eval hook.
WORLD_ORACLE_KIND = "world_oracle"


def world_reward_registry(base: RewardRegistry | None = None) -> RewardRegistry:
    """``base`` (default: the built-in reward kinds) plus ``world_oracle`` (:class:`world.oracle_reward.WorldOracleReward`)."""
    return (base or default_registry()).extended(**{WORLD_ORACLE_KIND: build_world_oracle})


def world_hook_registry(base: HookRegistry | None = None) -> HookRegistry:
    """``base`` (default: the built-in eval hook kinds) plus ``world_oracle`` (:class:`world.eval_hook.WorldOracleHook`)."""
    return (base or default_hook_registry()).extended(**{WORLD_ORACLE_KIND: build_world_oracle_hook})
