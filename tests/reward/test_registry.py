"""Reward registry: config validation, built-in kinds, explicit registration without shared state."""

import pytest
import torch

from editrl.config import ConfigError, load_config
from reward.base import RewardScores
from reward.editreward import EditRewardModel
from reward.jrm.model import JRM
from reward.registry import RewardModelConfig, build_reward_model, default_registry
from tests.reward._jrm_fixtures import solid


def test_config_validation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="dtype"):
        load_config(RewardModelConfig, overrides=["dtype=float64"])
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(RewardModelConfig, overrides=["batch_size=0"])
    with pytest.raises(ConfigError, match="unknown reward model kind 'oracle'"):
        build_reward_model(RewardModelConfig(kind="oracle"))
    with pytest.raises(ConfigError, match="combine"):
        build_reward_model(RewardModelConfig(kind="jrm", combine="aesthetics", tiny=True))


def test_a_missing_checkpoint_is_an_error_unless_tiny_is_set():
    for kind in ("jrm", "jrm_alpha0", "editreward"):
        with pytest.raises(ConfigError, match="checkpoint: .*tiny=true"):
            build_reward_model(RewardModelConfig(kind=kind))


def test_builtin_kinds_build_tiny_models_and_apply_combine(tmp_path):
    jrm = build_reward_model(RewardModelConfig(kind="jrm", combine="visual_quality", batch_size=1, tiny=True))
    assert isinstance(jrm, JRM) and not jrm.training
    scores = jrm.score([solid((1, 2, 3))] * 2, [solid((200, 0, 0)), solid((0, 200, 0))], ["a", "b"])
    torch.testing.assert_close(scores.reward, scores.column("visual_quality"))
    assert isinstance(build_reward_model(RewardModelConfig(kind="editreward", tiny=True)), EditRewardModel)

    baseline = build_reward_model(RewardModelConfig(kind="jrm_alpha0", tiny=True))
    assert baseline.config.alpha == 0.0
    jrm.save_pretrained(tmp_path / "jrm")  # alpha 0.7
    with pytest.raises(ConfigError, match="alpha=0.7"):
        build_reward_model(RewardModelConfig(kind="jrm_alpha0", checkpoint=str(tmp_path / "jrm")))
    loaded = build_reward_model(RewardModelConfig(kind="jrm", checkpoint=str(tmp_path / "jrm")))
    assert isinstance(loaded, JRM)


class _ConstantReward:
    dimensions = ("instruction_following", "visual_quality")

    def __init__(self, value):
        self.value = value

    def score(self, sources, edits, instructions):
        mu = torch.full((len(edits), 2), self.value)
        return RewardScores(mu, torch.ones_like(mu), mu.mean(dim=1), self.dimensions)


def test_registering_kinds_is_explicit_and_local():
    registry = default_registry().extended(constant=lambda cfg: _ConstantReward(float(cfg.seed)))
    model = build_reward_model(RewardModelConfig(kind="constant", seed=3), registry)
    assert model.score([solid((0, 0, 0))], [solid((0, 0, 0))], ["x"]).reward.item() == 3.0
    assert "constant" not in default_registry()  # no global side effect
    with pytest.raises(ValueError, match="already registered"):
        registry.register("jrm", lambda cfg: _ConstantReward(0.0))


def test_run_flow_grpo_checks_the_kind_against_the_registry_it_is_given(tmp_path):
    from rl.config import ExperimentConfig
    from rl.controller import run_flow_grpo

    cfg = ExperimentConfig(reward=RewardModelConfig(kind="my_reward"), output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown reward model kind 'my_reward'"):
        run_flow_grpo(cfg)  # fails before Ray starts
    with pytest.raises(ConfigError, match="my_reward"):
        cfg.validate()  # YAML configs name built-in kinds only
    default_registry().extended(my_reward=lambda c: None).require("my_reward")
