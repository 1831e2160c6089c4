"""The eval hook registry: built-in kinds, extension, and kind errors that name the config key."""

import dataclasses

import pytest
import ray

from editrl.config import ConfigError
from rl.config import EvalHookConfig
from rl.controller import run_flow_grpo
from rl.hook_registry import build_eval_hooks, default_hook_registry, require_eval_hook_kinds
from rl.reward_eval_hook import RewardPairAccuracyHook
from tests.rl.helpers import toy_config


def test_default_registry_holds_the_built_in_kind_only_and_is_fresh_per_call():
    registry = default_hook_registry()
    assert registry.names == ("reward_pair_accuracy",)
    extended = registry.extended(mine=lambda cfg, reward_model: None)
    assert "mine" in extended and "mine" not in registry and "mine" not in default_hook_registry()


def test_unknown_kind_names_the_key_and_lists_the_known_kinds():
    cfgs = [EvalHookConfig(kind="reward_pair_accuracy", path="a.jsonl"), EvalHookConfig(kind="nope", path="b.jsonl")]
    with pytest.raises(ConfigError, match=r"eval_hooks\.1\.kind: .*'nope'.*\['reward_pair_accuracy'\]"):
        require_eval_hook_kinds(cfgs, default_hook_registry())
    with pytest.raises(ConfigError, match=r"eval_hooks\.1\.kind"):
        build_eval_hooks(cfgs, reward_model=None)


def test_build_eval_hooks_uses_the_registry_it_is_handed():
    built = []

    def builder(cfg, reward_model):
        built.append((cfg.path, reward_model))
        return RewardPairAccuracyHook

    registry = default_hook_registry().extended(mine=builder)
    hooks = build_eval_hooks([EvalHookConfig(kind="mine", path="p.jsonl")], "reward", registry=registry)
    assert hooks == [RewardPairAccuracyHook] and built == [("p.jsonl", "reward")]


def test_run_flow_grpo_rejects_an_unknown_hook_kind_before_ray_starts(tmp_path):
    cfg = toy_config(tmp_path)
    cfg = dataclasses.replace(cfg, eval_hooks=[EvalHookConfig(kind="world_oracle", path="heldout.jsonl")])  # not built in
    was_running = ray.is_initialized()
    with pytest.raises(ConfigError, match=r"eval_hooks\.0\.kind: unknown eval hook kind 'world_oracle'"):
        run_flow_grpo(cfg)
    assert ray.is_initialized() == was_running
