"""Stage 1: train the JRM on Ray Train.

    python -m launch.train_jrm --config configs/jrm_tiny.yaml [key=value ...]

Overrides use dotted keys of :class:`reward.jrm.train_config.JRMTrainConfig` (e.g. ``alpha=0``,
``data.train_pairs=...``, ``max_steps=50``). The final model lands in ``<output_dir>/final``.
"""

from __future__ import annotations

import argparse
import json
import sys

from editrl.config import ConfigError, load_config
from editrl.config_reference import sections_help
from reward.jrm.train import JRMTrainConfig, train_jrm

#: Every key of the JRM training config, its type and default (generated; a test keeps it current).
JRM_CONFIG_REFERENCE = "docs/config-reference.md#jrm-training-launchtrain_jrmpy"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=sections_help(JRMTrainConfig, reference=JRM_CONFIG_REFERENCE),
    )
    parser.add_argument("--config", required=True, help="YAML preset (may name a 'base:' preset)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(JRMTrainConfig, args.config, args.overrides)
        cfg.model.require_choice()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    result = train_jrm(cfg)
    print(json.dumps({"checkpoint_dir": result.checkpoint_dir, "metrics": result.metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
