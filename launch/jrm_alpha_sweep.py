"""The alpha sweep (paper Fig. 4): train JRM at several alpha, tabulate held-out pair accuracy per dimension and
the effective rank of h per alpha, with a plot.

    python -m launch.jrm_alpha_sweep --config configs/jrm_qwen3vl8b.yaml --alphas 0 0.3 0.5 0.7 0.9 \\
        --out runs/jrm_alpha_sweep [key=value ...]

Overrides are dotted keys of :class:`reward.jrm.train_config.JRMTrainConfig`, applied to every run (``alpha``
and ``output_dir`` are set per run: ``<out>/alpha_<alpha>``). Writes ``sweep.json``, ``sweep.md`` and
``sweep.png`` into ``--out`` (:mod:`reward.jrm.alpha_sweep`).
"""

from __future__ import annotations

import argparse
import sys

from editrl.config import ConfigError, load_config
from reward.jrm.alpha_sweep import run_alpha_sweep, sweep_configs, sweep_table
from reward.jrm.train_config import JRMTrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML preset of JRMTrainConfig (may name a 'base:' preset)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--out", required=True, help="sweep directory: one run per alpha under it, and the report")
    parser.add_argument("--spectrum-pairs", type=int, default=256, help="held-out pairs whose two edits give h")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (every run)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(JRMTrainConfig, args.config, args.overrides)
        cfg.model.require_choice()
        sweep_configs(cfg, args.alphas, args.out)  # checks the alphas before any run starts
        if args.spectrum_pairs < 1:
            raise ConfigError(f"--spectrum-pairs must be >= 1, got {args.spectrum_pairs}")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    rows = run_alpha_sweep(cfg, args.alphas, args.out, spectrum_pairs=args.spectrum_pairs)
    print(sweep_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
