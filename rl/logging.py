"""Run logging: wandb (offline unless configured), a console line per round, sample images, a tqdm bar.

Also appends one JSON line per round to ``<output_dir>/rounds.jsonl`` (step, instruction ids, metrics), the
plain-text record that resume tests and offline analysis read.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from rl.config import LoggingConfig
from rl.types import RoundSummary

logger = logging.getLogger("editrl.rl")


def summary_metrics(summary: RoundSummary) -> dict[str, float]:
    """Flatten a round summary into ``section/name`` scalars (finite values only)."""
    metrics: dict[str, float] = {}
    for name, value in summary.reward_mean.items():
        metrics[f"reward/{name}_mean"] = value
    for name, value in summary.reward_std.items():
        metrics[f"reward/{name}_std"] = value
    metrics.update(
        {
            "advantage/mean": summary.advantage_mean,
            "advantage/std": summary.advantage_std,
            "advantage/abs_max": summary.advantage_abs_max,
            "samples/total": summary.n_samples,
            "samples/kept": summary.n_kept,
            "samples/dropped_zero_spread": summary.n_zero_spread,
            "samples/dropped_reward_failed": summary.n_reward_failed,
            "sync/bytes": summary.sync_bytes,
            "faults/reissued_chunks": summary.sampler_restarts,
        }
    )
    if summary.learner is not None:
        for key, value in asdict(summary.learner).items():
            metrics[f"learner/{key}"] = value
    for key, value in asdict(summary.timing).items():
        metrics[f"time/{key}"] = value
    metrics.update(summary.extra)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}


class RunLogger:
    """Writes metrics to wandb, the console and ``rounds.jsonl``; owns the progress bar."""

    def __init__(
        self, cfg: LoggingConfig, output_dir: Path, *, total_steps: int, start_step: int, config_dict: dict[str, Any],
        run_id: str = "",
    ) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.rounds_path = output_dir / "rounds.jsonl"
        self.samples_dir = output_dir / "samples"
        self.run = None
        if cfg.wandb and cfg.wandb_mode != "disabled":
            import wandb

            self.run = wandb.init(
                project=cfg.wandb_project, name=cfg.run_name, mode=cfg.wandb_mode, dir=str(output_dir),
                config=config_dict, id=run_id or None, resume="allow" if run_id else None,
            )
        self.bar = tqdm(total=total_steps, initial=start_step, desc="flow-grpo", unit="step", disable=not cfg.progress_bar)

    @property
    def run_id(self) -> str:
        return self.run.id if self.run is not None else ""

    def log_round(self, summary: RoundSummary, record_ids: list[str]) -> dict[str, float]:
        metrics = summary_metrics(summary)
        with self.rounds_path.open("a") as fh:
            fh.write(json.dumps({"step": summary.step, "record_ids": record_ids, "metrics": metrics}) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=summary.step)
        learner = summary.learner
        logger.info(
            "step %d | reward %.4f +- %.4f | kept %d/%d | loss %s | clip %s | kl %s | time s/r/l/sync/idle "
            "%.2f/%.2f/%.2f/%.2f/%.2f",
            summary.step, summary.reward_mean.get("reward", float("nan")), summary.reward_std.get("reward", float("nan")),
            summary.n_kept, summary.n_samples,
            f"{learner.loss:.4g}" if learner else "-", f"{learner.clip_fraction:.3f}" if learner else "-",
            f"{learner.kl:.3g}" if learner else "-",
            summary.timing.sample, summary.timing.reward, summary.timing.learn, summary.timing.sync, summary.timing.idle,
        )
        self.bar.update(1)
        self.bar.set_postfix(reward=f"{summary.reward_mean.get('reward', float('nan')):.3f}")
        return metrics

    def log_images(self, step: int, images: list[tuple[str, Image.Image]]) -> None:
        """Save the images under ``samples/`` and send them to wandb."""
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        for i, (_, image) in enumerate(images):
            image.save(self.samples_dir / f"step_{step:08d}_{i}.png")
        if self.run is not None and images:
            import wandb

            self.run.log({"samples": [wandb.Image(img, caption=cap) for cap, img in images]}, step=step)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        if self.run is not None and finite:
            self.run.log(finite, step=step)
        if finite:
            logger.info("step %d | eval %s", step, ", ".join(f"{k}={v:.4g}" for k, v in sorted(finite.items())))

    def close(self) -> None:
        self.bar.close()
        if self.run is not None:
            self.run.finish()
