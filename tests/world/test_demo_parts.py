"""The demo's parts that read the config: alphas, metric keys and claim thresholds come from it, not literals."""

import pytest

from editrl.config import ConfigError, load_config
from world.demo.config import DemoConfig, alpha_key
from world.demo.metrics import jrm_key
from world.demo.report import baselines_text, claims
from world.stats import PairedDifference


def _smoke(*overrides: str) -> DemoConfig:
    return load_config(DemoConfig, "configs/demo_smoke.yaml", list(overrides))


def _diff(mean: float) -> PairedDifference:
    return PairedDifference(mean, mean - 0.1, mean + 0.1, 6, 0.95)


def test_alpha_spelling_and_jrm_metric_keys():
    assert (alpha_key(0.7), alpha_key(0.0), alpha_key(0.25)) == ("0.7", "0", "0.25")
    assert (jrm_key(0.7), jrm_key(0.0)) == ("jrm.alpha_0.7", "jrm.alpha_0")


def test_the_rl_reward_alpha_must_be_one_of_the_trained_alphas():
    assert _smoke().rl_reward_alpha == 0.7
    assert _smoke("rl_reward_alpha=0.0").rl_reward_alpha == 0.0
    with pytest.raises(ConfigError, match="rl_reward_alpha"):
        _smoke("rl_reward_alpha=0.5")


def test_baselines_are_the_alphas_other_than_the_rl_reward():
    assert baselines_text(_smoke()) == "the alpha = 0 baseline"
    assert baselines_text(_smoke("rl_reward_alpha=0.0")) == "the alpha = 0.7 baseline"
    assert baselines_text(_smoke("jrm_alphas=[0.7,0.0,0.3]")) == "the alpha = 0, alpha = 0.3 baselines"
    assert baselines_text(_smoke("jrm_alphas=[0.7]")) == ""


def test_claims_use_the_configured_alpha_and_thresholds():
    deltas = {"oracle_if": _diff(0.35), "oracle_vq": _diff(-0.05)}
    metrics = {"jrm.alpha_0.7.pair_acc": 0.9, "jrm.alpha_0.pair_acc": 0.6}
    default = claims(_smoke(), deltas, metrics)
    assert [c for c, _, _ in default] == [
        "RL raises held-out oracle IF by >= 0.3",
        "RL lowers held-out oracle VQ by <= 0.1",
        "JRM (alpha=0.7) held-out pair accuracy >= 0.85",
    ]
    assert [ok for _, _, ok in default] == [True, True, True]
    strict = claims(_smoke("rl_reward_alpha=0.0", "claims.min_if_gain=0.5", "claims.max_vq_drop=0.01"), deltas, metrics)
    assert strict[2][0] == "JRM (alpha=0) held-out pair accuracy >= 0.85" and strict[2][1] == "0.600"
    assert [ok for _, _, ok in strict] == [False, False, False]
