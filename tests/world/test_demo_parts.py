"""The demo's parts that read the config: alphas, metric keys and claim thresholds come from it, not literals."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from editrl.config import ConfigError, load_config
from rl.controller import RunResult
from world.demo.config import DemoConfig, alpha_key
from world.demo.heldout import RLEvaluation, gain_differences, score_deltas
from world.demo.metrics import ablation_metrics, arm_keys, gain_difference_key, jrm_key
from world.demo.outcome import AblationArm
from world.demo.report import baselines_text, claims, comparison_text
from world.evaluate import PolicyEvaluation
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
    assert _smoke("rl_reward_alpha=0.0", "ablation_rl_alphas=[0.7]").rl_reward_alpha == 0.0
    with pytest.raises(ConfigError, match="rl_reward_alpha"):
        _smoke("rl_reward_alpha=0.5")


def test_baselines_are_the_alphas_other_than_the_rl_reward():
    assert baselines_text(_smoke()) == "the alpha = 0 baseline"
    assert baselines_text(_smoke("rl_reward_alpha=0.0", "ablation_rl_alphas=[0.7]")) == "the alpha = 0.7 baseline"
    assert baselines_text(_smoke("jrm_alphas=[0.7,0.0,0.3]")) == "the alpha = 0, alpha = 0.3 baselines"
    assert baselines_text(_smoke("jrm_alphas=[0.7]", "ablation_rl_alphas=[]")) == ""


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
    strict = claims(_smoke("rl_reward_alpha=0.0", "ablation_rl_alphas=[0.7]", "claims.min_if_gain=0.5", "claims.max_vq_drop=0.01"), deltas, metrics)
    assert strict[2][0] == "JRM (alpha=0) held-out pair accuracy >= 0.85" and strict[2][1] == "0.600"
    assert [ok for _, _, ok in strict] == [False, False, False]


def test_ablation_rl_alphas_must_be_other_trained_alphas():
    assert _smoke().ablation_rl_alphas == [0.0]
    assert load_config(DemoConfig, "configs/demo.yaml", []).ablation_rl_alphas == []
    full = load_config(DemoConfig, "configs/demo_full.yaml", [])
    assert full.ablation_rl_alphas == [0.0] and full.oracle_reward_rl
    assert _smoke("ablation_rl_alphas=[]").ablation_rl_alphas == []
    assert _smoke("jrm_alphas=[0.7,0.0,0.3]", "ablation_rl_alphas=[0.3,0.0]").ablation_rl_alphas == [0.3, 0.0]
    for bad in ("[0.7]", "[0.5]", "[0.0,0.0]"):  # the RL reward's own alpha, an untrained alpha, a duplicate
        with pytest.raises(ConfigError, match="ablation_rl_alphas"):
            _smoke(f"ablation_rl_alphas={bad}")


def test_ablation_metric_keys_carry_the_alpha():
    assert arm_keys(0.0) == ("policy_alpha0", "rl_alpha0") and arm_keys(0.3) == ("policy_alpha0.3", "rl_alpha0.3")
    assert gain_difference_key(0.0, "oracle_if") == "policy.oracle_if_gain_minus_alpha0"


def _evaluation(if_scores: list[list[int]], rewards: list[list[float]] | None = None) -> RLEvaluation:
    """One PolicyEvaluation per step over the same three held-out tasks (VQ 2 everywhere, no images)."""
    results = [
        PolicyEvaluation(["t0", "t1", "t2"], np.array(s), np.full(3, 2), np.array(s) / 4.0, []) for s in if_scores
    ]
    return RLEvaluation(list(range(len(results))), results, rewards=[np.array(r) for r in rewards or []])


def test_ablation_arm_metrics_and_the_paired_difference_of_gains():
    cfg = _smoke("eval.bootstrap_resamples=200")
    main = _evaluation([[1, 1, 2], [3, 2, 2]])  # gains 2, 1, 0
    arm_eval = _evaluation([[1, 1, 2], [1, 2, 2]], rewards=[[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])  # gains 0, 1, 0
    diffs = gain_differences(cfg, main, arm_eval)
    assert diffs["oracle_if"].mean == pytest.approx(2 / 3) and diffs["oracle_vq"].mean == 0.0
    assert diffs["oracle_if"].low <= 2 / 3 <= diffs["oracle_if"].high and diffs["oracle_if"].n == 3
    rl = RunResult(Path("."), 0, 2, 2, None, summaries=[SimpleNamespace(reward_mean={"reward": r}) for r in (1.5, 2.5)])
    arm = AblationArm(0.0, rl, arm_eval, score_deltas(cfg, arm_eval), diffs)
    metrics = ablation_metrics(arm, "mean")
    assert metrics["policy_alpha0.oracle_if_before"] == pytest.approx(4 / 3)
    assert metrics["policy_alpha0.oracle_if_after"] == pytest.approx(5 / 3)
    assert metrics["policy_alpha0.oracle_vq_before"] == metrics["policy_alpha0.oracle_vq_after"] == 2.0
    assert metrics["policy_alpha0.oracle_if_delta"] == pytest.approx(1 / 3)
    assert metrics["policy_alpha0.oracle_if_delta_ci95_low"] <= metrics["policy_alpha0.oracle_if_delta_ci95_high"]
    assert (metrics["rl_alpha0.steps"], metrics["rl_alpha0.reward_first"], metrics["rl_alpha0.reward_last"]) == (2.0, 1.5, 2.5)
    assert metrics["rl_alpha0.heldout_jrm_reward_before"] == 2.0
    assert 0.0 <= metrics["rl_alpha0.jrm_oracle_agreement_before"] <= 1.0
    assert metrics["policy.oracle_if_gain_minus_alpha0"] == pytest.approx(2 / 3)
    assert "policy.oracle_if_gain_minus_alpha0_ci95_low" in metrics and "policy.oracle_vq_gain_minus_alpha0_ci95_high" in metrics
    assert all(math.isfinite(v) for v in metrics.values())
    with pytest.raises(ValueError, match="different held-out tasks"):
        other = _evaluation([[1, 1, 2], [1, 2, 2]])
        other.results[0].task_ids[0] = "elsewhere"
        gain_differences(cfg, main, other)


def test_the_comparison_sentence_says_which_way_it_falls():
    cfg = _smoke()
    main = {"oracle_if": _diff(0.4)}

    def arm(gain_diff: PairedDifference) -> AblationArm:
        return AblationArm(0.0, None, None, {"oracle_if": _diff(0.1)}, {"oracle_if": gain_diff, "oracle_vq": _diff(0.0)})

    assert "alpha = 0.7 reward gave the larger IF gain" in comparison_text(cfg, arm(PairedDifference(0.3, 0.1, 0.5, 6, 0.95)), main)
    assert "alpha = 0 reward gave the larger IF gain" in comparison_text(cfg, arm(PairedDifference(-0.3, -0.5, -0.1, 6, 0.95)), main)
    assert "not distinguishable" in comparison_text(cfg, arm(_diff(0.05)), main)
