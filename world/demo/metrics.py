"""The demo's metrics: flat ``name -> float`` (``metrics.json``), keyed by stage; JRM keys carry the alpha they
were trained with (:func:`jrm_key`), as the config's ``jrm_alphas`` list them, and so do the keys of an
ablation arm's RL run (:func:`arm_keys`: ``policy_alpha0.*``, ``rl_alpha0.*`` beside the main run's
``policy.*``, ``rl.*``)."""

from __future__ import annotations

import math

from reward.metrics import PAIR_CASES
from rl.controller import RunResult
from world.demo.config import DemoConfig, alpha_key
from world.demo.heldout import RLEvaluation
from world.demo.outcome import AblationArm, DemoOutcome, DiagnosticRewardRun
from world.demo.stages import StageClock
from world.stats import PairedDifference


def jrm_key(alpha: float) -> str:
    """The metric prefix of the JRM trained with ``alpha``: ``jrm.alpha_0.7``, ``jrm.alpha_0``."""
    return f"jrm.alpha_{alpha_key(alpha)}"


def arm_keys(alpha: float) -> tuple[str, str]:
    """The metric prefixes of the ablation arm with the JRM of ``alpha`` as the reward: its held-out oracle
    scores and its RL run (``policy_alpha0``, ``rl_alpha0``; the main run's are ``policy``, ``rl``)."""
    return f"policy_alpha{alpha_key(alpha)}", f"rl_alpha{alpha_key(alpha)}"


def gain_difference_key(alpha: float, name: str) -> str:
    """``policy.oracle_if_gain_minus_alpha0``: the main run's held-out gain in ``name`` minus the arm's."""
    return f"policy.{name}_gain_minus_alpha{alpha_key(alpha)}"


def oracle_score_metrics(prefix: str, evaluation: RLEvaluation) -> dict[str, float]:
    """``<prefix>.oracle_{if,vq,edit_success}_{before,after}`` and ``<prefix>.n_heldout``."""
    metrics: dict[str, float] = {}
    for name, attr in (("if", "instruction_following"), ("vq", "visual_quality"), ("edit_success", "edit_success")):
        metrics[f"{prefix}.oracle_{name}_before"] = float(getattr(evaluation.before, attr).mean())
        metrics[f"{prefix}.oracle_{name}_after"] = float(getattr(evaluation.after, attr).mean())
    metrics[f"{prefix}.n_heldout"] = float(len(evaluation.before.task_ids))
    return metrics


def rl_run_metrics(prefix: str, rl: RunResult) -> dict[str, float]:
    """``<prefix>.steps`` and the mean RL reward of the first and last round (``reward_first`` / ``_last``)."""
    metrics = {f"{prefix}.steps": float(rl.steps_completed)}
    if rl.summaries:
        metrics[f"{prefix}.reward_first"] = rl.summaries[0].reward_mean.get("reward", float("nan"))
        metrics[f"{prefix}.reward_last"] = rl.summaries[-1].reward_mean.get("reward", float("nan"))
    return metrics


def ablation_metrics(arm: AblationArm, combine: str) -> dict[str, float]:
    """One ablation arm: its held-out oracle scores and differences under ``policy_alpha<a>``, its RL run and
    reward model against the oracle under ``rl_alpha<a>``, and the main run's gains minus the arm's under
    :func:`gain_difference_key` (with their 95% intervals)."""
    policy, rl = arm_keys(arm.alpha)
    metrics = oracle_score_metrics(policy, arm.evaluation)
    metrics.update(delta_metrics(policy, arm.deltas))
    metrics.update(rl_run_metrics(rl, arm.rl))
    metrics.update(reward_model_metrics(rl, arm.evaluation, combine))
    for name, diff in arm.gain_vs_main.items():
        metrics.update(interval_metrics(gain_difference_key(arm.alpha, name), diff))
    return metrics


def collect_metrics(cfg: DemoConfig, outcome: DemoOutcome, clock: StageClock, wall_seconds: float) -> dict[str, float]:
    """The method's metrics: held-out oracle scores before / after RL with their differences, the RL reward
    model against the oracle, each JRM's held-out pair accuracy and spectrum, RL rewards, the ablation arms
    (:func:`ablation_metrics`) and stage times."""
    evaluation, roundtrip, spectra = outcome.evaluation, outcome.roundtrip, outcome.spectra
    metrics: dict[str, float] = {
        "policy.autoencoder_roundtrip_if": float(roundtrip.instruction_following.mean()),
        "policy.autoencoder_roundtrip_vq": float(roundtrip.visual_quality.mean()),
        **oracle_score_metrics("policy", evaluation),
        **rl_run_metrics("rl", outcome.rl),
        "wall_seconds": wall_seconds,
    }
    metrics.update(delta_metrics("policy", outcome.deltas))
    metrics.update(reward_model_metrics("rl", evaluation, cfg.rl.reward.combine))
    for arm in outcome.ablation_arms.values():
        metrics.update(ablation_metrics(arm, cfg.rl.reward.combine))
    for alpha, result in outcome.jrm.items():
        key = jrm_key(alpha)
        metrics[f"{key}.pair_acc"] = float(result.metrics["eval/acc/overall"])
        for dim in ("instruction_following", "visual_quality", *(f"overall_{case}" for case in PAIR_CASES)):
            if f"eval/acc/{dim}" in result.metrics:
                metrics[f"{key}.pair_acc_{dim}"] = float(result.metrics[f"eval/acc/{dim}"])
        metrics[f"{key}.n_heldout_pairs"] = float(result.metrics.get("eval/n/overall", float("nan")))
        metrics[f"{key}.effective_rank"] = spectra[alpha].effective_rank
        metrics[f"{key}.isotropy"] = spectra[alpha].isotropy
    for stage, seconds in clock.seconds.items():
        metrics[f"time.{stage}"] = seconds
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite demo metrics: {bad}")
    return metrics


def reward_model_metrics(prefix: str, evaluation: RLEvaluation, combine: str) -> dict[str, float]:
    """The JRM's mean reward on the held-out edits and its agreement with the oracle, before and after RL."""
    if not evaluation.rewards:
        return {}
    agreement = evaluation.agreement(combine)
    metrics = {
        f"{prefix}.heldout_jrm_reward_before": float(evaluation.rewards[0].mean()),
        f"{prefix}.heldout_jrm_reward_after": float(evaluation.rewards[-1].mean()),
    }
    # undefined (left out) when the oracle scores every edit it compares alike
    values = {"agreement": agreement}
    if evaluation.group_agreement:
        values["group_agreement"] = evaluation.group_agreement
    for name, series in values.items():
        for when, value in (("before", series[0]), ("after", series[-1])):
            if math.isfinite(value):
                metrics[f"{prefix}.jrm_oracle_{name}_{when}"] = value
    return metrics


def interval_metrics(key: str, diff: PairedDifference) -> dict[str, float]:
    """``<key>`` (the mean difference) and its 95% interval ``<key>_ci95_low`` / ``<key>_ci95_high``."""
    return {key: diff.mean, f"{key}_ci95_low": diff.low, f"{key}_ci95_high": diff.high}


def delta_metrics(prefix: str, deltas: dict[str, PairedDifference]) -> dict[str, float]:
    """``<prefix>.<name>_delta`` and its 95% interval ``_ci95_low`` / ``_ci95_high`` for every difference."""
    out: dict[str, float] = {}
    for name, diff in deltas.items():
        out.update(interval_metrics(f"{prefix}.{name}_delta", diff))
    return out


def diagnostic_metrics(run: DiagnosticRewardRun, combine: str, clock: StageClock) -> dict[str, float]:
    """``diagnostic.<name>.*`` of a diagnostic reward run: its held-out differences, the main run's gains minus
    its gains (``..._gain_main_minus_this`` with 95% intervals), the main JRM's view of its edits, stage times."""
    prefix = f"diagnostic.{run.name}"
    metrics = delta_metrics(prefix, run.deltas)
    metrics[f"{prefix}.rl_steps"] = float(run.rl.steps_completed)
    metrics.update(reward_model_metrics(prefix, run.evaluation, combine))
    for name, diff in run.gain_vs_main.items():
        metrics.update(interval_metrics(f"{prefix}.{name}_gain_main_minus_this", diff))
    metrics.update({f"time.{k}": v for k, v in clock.seconds.items() if k.endswith(run.name)})
    return metrics
