"""`make demo`: the whole method end to end on the toy world at CPU scale, with numbers a skeptic can check.

The stages, evaluation, metrics and report live in :mod:`world.demo`; this driver runs them in order and
writes ``metrics.json``, ``heldout_scores.json``, ``report.md`` and ``plots/`` under ``output_dir``.

    python -m launch.demo --config configs/demo.yaml [key=value ...]
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
from world.demo.config import DemoConfig
from world.demo.heldout import score_deltas, stage_eval, write_heldout_scores
from world.demo.metrics import collect_metrics, oracle_diagnostic_metrics
from world.demo.outcome import DemoOutcome, OracleRewardRun
from world.demo.report import write_report
from world.evaluate import evaluate_autoencoder


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
    # wall time of the method itself; the optional diagnostic below is timed on its own
    metrics = collect_metrics(cfg, outcome, clock, time.perf_counter() - start)
    if cfg.oracle_reward_rl:
        oracle_rl = clock.run("rl_oracle_reward", stages.stage_rl_oracle, cfg, pretrain.checkpoint_dir, out)
        oracle_eval = clock.run(
            "eval_oracle_reward", stage_eval, cfg, pretrain.checkpoint_dir, heldout, str(oracle_rl.output_dir),
            jrm_dir=reward_jrm, pretrained=evaluation,
        )
        outcome.oracle_run = OracleRewardRun(oracle_rl, oracle_eval, score_deltas(cfg, oracle_eval))
        metrics.update(oracle_diagnostic_metrics(outcome.oracle_run, cfg.rl.reward.combine, clock))
    write_report(cfg, out, metrics, outcome)
    metrics["wall_seconds_total"] = time.perf_counter() - start
    atomic_write_json(out / "metrics.json", metrics)
    write_heldout_scores(out / "heldout_scores.json", evaluation)
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
