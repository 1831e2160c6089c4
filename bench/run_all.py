"""`make bench`: run every benchmark in one process and print where the JSON figures went."""

from __future__ import annotations

import importlib
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

BENCHMARKS = ("policy_sde", "reward_speed", "ray_pipeline", "placement_shape")


def main(names: list[str] | None = None) -> int:
    """Run the named benchmarks (all by default); return the number that failed."""
    failed = 0
    for name in names or list(BENCHMARKS):
        start = time.perf_counter()
        print(f"=== bench.{name} ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # one failing benchmark must not hide the others' figures
            failed += 1
            print(f"bench.{name} FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"=== bench.{name}: {time.perf_counter() - start:.1f}s; JSON in runs/bench/{name}.json ===\n")
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
