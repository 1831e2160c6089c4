"""`make demo`: the whole method end to end on the toy world at CPU scale, with numbers a skeptic can check.

The stages, evaluation, metrics and report live in :mod:`world.demo`; this driver runs them in order and
writes ``metrics.json``, ``heldout_scores.json`` (and ``heldout_scores_alpha_<alpha>.json`` per ablation arm),
``report.md`` and ``plots/`` under ``output_dir``.

    python -m launch.demo --config configs/demo.yaml [key=value ...]
    python -m launch.demo --config configs/demo_full.yaml     # + the alpha = 0 RL arm, the oracle- and null-reward diagnostics
    python -m launch.demo --config configs/demo_smoke.yaml     # the same stages, reduced (< 5 minutes)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from editrl.config import load_config
from editrl.config_reference import sections_help
from editrl.io import atomic_write_json
from policies.omnigen2.config import build_pipeline
from world.demo import stages
from world.demo.config import DemoConfig, alpha_key
from world.demo.heldout import RLEvaluation, gain_differences, score_deltas, stage_eval, write_heldout_scores
from world.demo.metrics import collect_metrics, diagnostic_metrics
from world.demo.outcome import AblationArm, DemoOutcome, DiagnosticRewardRun
from world.demo.report import write_report
from world.evaluate import evaluate_autoencoder
from world.tasks import EditTask


def run_ablation_arm(
    cfg: DemoConfig, clock: stages.StageClock, alpha: float, jrm_dir: str, policy_dir: Path, out: Path,
    heldout: list[EditTask], main: RLEvaluation,
) -> AblationArm:
    """The main RL run again with the JRM of ``alpha`` (in ``jrm_dir``) as the reward, evaluated on the same
    held-out tasks from the same step-0 edits (which its own JRM scores), and its gains paired with the main run's."""
    key = alpha_key(alpha)
    rl = clock.run(f"rl_alpha_{key}", stages.stage_rl_ablation, cfg, policy_dir, jrm_dir, out, alpha)
    evaluation = clock.run(
        f"eval_alpha_{key}", stage_eval, cfg, policy_dir, heldout, str(stages.ablation_rl_dir(out, alpha)),
        jrm_dir=jrm_dir, pretrained=main.oracle_before(),
    )
    return AblationArm(alpha, rl, evaluation, score_deltas(cfg, evaluation), gain_differences(cfg, main, evaluation))


def run_diagnostic(
    cfg: DemoConfig, clock: stages.StageClock, name: str, policy_dir: Path, out: Path, heldout: list[EditTask],
    reward_jrm: str, main: RLEvaluation,
) -> DiagnosticRewardRun:
    """The main RL run again with diagnostic reward ``name`` (:data:`world.demo.stages.DIAGNOSTIC_REWARDS`),
    evaluated from the main run's step-0 edits (the main JRM scores its edits too), its gains paired with the main
    run's."""
    rl = clock.run(f"rl_{name}", stages.stage_rl_diagnostic, cfg, policy_dir, out, name)
    evaluation = clock.run(
        f"eval_{name}", stage_eval, cfg, policy_dir, heldout, str(rl.output_dir), jrm_dir=reward_jrm, pretrained=main
    )
    return DiagnosticRewardRun(name, rl, evaluation, score_deltas(cfg, evaluation), gain_differences(cfg, main, evaluation))


def run_demo(cfg: DemoConfig) -> dict[str, float]:
    """Run every stage; write ``metrics.json``, ``report.md`` and the plots; return the metrics."""
    torch.set_num_threads(cfg.threads_before_ray)
    torch.manual_seed(cfg.seed)
    out, start, clock = Path(cfg.output_dir), time.perf_counter(), stages.StageClock()
    stages.prepare_output_dir(out)
    heldout = clock.run("world", stages.stage_world, cfg, out)
    pretrain = clock.run("pretrain", stages.stage_pretrain, cfg, out)
    base_policy = build_pipeline(replace(stages.rl_policy_config(cfg, pretrain.checkpoint_dir), use_lora=False))
    roundtrip = evaluate_autoencoder(base_policy, heldout)
    pairs = clock.run("pairs", stages.stage_pairs, cfg, base_policy)
    torch.set_num_threads(1)
    jrm = clock.run("jrm", stages.stage_jrms, cfg, out)
    spectra = {alpha: stages.jrm_spectrum(result.checkpoint_dir, cfg) for alpha, result in jrm.items()}
    reward_jrm = str(jrm[cfg.rl_reward_alpha].checkpoint_dir)
    rl = clock.run("rl", stages.stage_rl, cfg, pretrain.checkpoint_dir, reward_jrm)
    evaluation = clock.run("eval", stage_eval, cfg, pretrain.checkpoint_dir, heldout, jrm_dir=reward_jrm)
    outcome = DemoOutcome(heldout, pretrain, roundtrip, pairs, jrm, spectra, rl, evaluation, score_deltas(cfg, evaluation))
    for alpha in cfg.ablation_rl_alphas:  # the paper's ablation: the same run with another alpha's JRM as the reward
        outcome.ablation_arms[alpha] = run_ablation_arm(
            cfg, clock, alpha, str(jrm[alpha].checkpoint_dir), pretrain.checkpoint_dir, out, heldout, evaluation
        )
    # wall time of the method itself (with its ablation arms); the optional diagnostics below are timed on their own
    metrics = collect_metrics(cfg, outcome, clock, time.perf_counter() - start)
    for name, (switch, _) in stages.DIAGNOSTIC_REWARDS.items():
        if getattr(cfg, switch):
            outcome.diagnostics[name] = run_diagnostic(cfg, clock, name, pretrain.checkpoint_dir, out, heldout, reward_jrm, evaluation)
            metrics.update(diagnostic_metrics(outcome.diagnostics[name], cfg.rl.reward.combine, clock))
    write_report(cfg, out, metrics, outcome)
    metrics["wall_seconds_total"] = time.perf_counter() - start
    atomic_write_json(out / "metrics.json", metrics)
    write_heldout_scores(out / "heldout_scores.json", evaluation)
    for alpha, arm in outcome.ablation_arms.items():
        write_heldout_scores(out / f"heldout_scores_alpha_{alpha_key(alpha)}.json", arm.evaluation)
    return metrics


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=sections_help(DemoConfig, reference="docs/config-reference.md#embedded-demo-launchdemopy"),
    )
    parser.add_argument("--config", default="configs/demo.yaml", help="demo preset (YAML, may name a base)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seed=1 eval.n_heldout=32")
    args = parser.parse_args(argv)
    # Ray workers run in other directories: every derived path must be absolute, so pin output_dir first.
    first = load_config(DemoConfig, args.config, args.overrides)
    cfg = load_config(DemoConfig, args.config, [*args.overrides, f"output_dir={Path(first.output_dir).resolve()}"])
    metrics = run_demo(cfg)
    width = max(len(k) for k in metrics)
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())))
    print(f"report: {Path(cfg.output_dir) / 'report.md'}")
    return metrics


if __name__ == "__main__":
    main()
