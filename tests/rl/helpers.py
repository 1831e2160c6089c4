"""Shared test fixtures for tests/rl: a toy-world instruction file and a small experiment config."""

from __future__ import annotations

from pathlib import Path

from launch.flow_grpo_jrm import load_job_config
from rl.config import ExperimentConfig
from world.tasks import make_tasks, write_instruction_jsonl

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "configs" / "toy.yaml"


def write_toy_instructions(directory: Path, n: int = 8) -> Path:
    """``n`` toy-world edit tasks (32 px sources) in the RL instruction JSONL format."""
    return write_instruction_jsonl(make_tasks("rl", n, size=32), directory)


def toy_config(tmp_path: Path, *overrides: str, n_instructions: int = 8) -> ExperimentConfig:
    """The toy preset on a fresh instruction file, quiet (no wandb, no progress bar)."""
    data = write_toy_instructions(tmp_path / "world", n_instructions)
    base = [
        f"data.train_path={data}",
        f"output_dir={tmp_path / 'run'}",
        "logging.wandb=false",
        "logging.progress_bar=false",
        "ray.num_cpus=2",
    ]
    return load_job_config(TOY, [*base, *overrides]).experiment()
