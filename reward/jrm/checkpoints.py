"""JRM training checkpoints: what they hold, writing one, restoring a run from one, choosing which to resume.

Layout (:class:`editrl.checkpoints.StepCheckpoints`, the same as RL's): ``<output_dir>/checkpoints/step_<8
digits>/`` with

- ``model/``: the full JRM (``JRM.save_pretrained``),
- ``optimizer.safetensors``: the full, name-keyed optimizer state's tensors (:func:`flatten_optimizer_state`),
- ``rng.safetensors``: torch RNG states (:mod:`reward.jrm.rng`),
- ``trainer_state.json``: ``step``, ``sampler``, ``scheduler``, ``optimizer`` (the non-tensor optimizer
  state), ``python_rng``, ``history`` (held-out metrics so far) and ``wandb_id``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from editrl.checkpoints import StepCheckpoints
from editrl.config import ConfigError
from editrl.io import atomic_save_safetensors, atomic_write_json
from reward.jrm.data import PairBatchSampler
from reward.jrm.parallel import ParallelPlan, flatten_optimizer_state, unflatten_optimizer_state
from reward.jrm.rng import capture_rng, restore_rng
from reward.jrm.train_config import JRMTrainConfig

#: The file every complete JRM checkpoint holds.
TRAINER_STATE = "trainer_state.json"
#: The model directory inside a checkpoint.
MODEL_DIR = "model"


def jrm_checkpoints(output_dir: str | Path) -> StepCheckpoints:
    """The step checkpoints of the JRM run writing to ``output_dir``."""
    return StepCheckpoints(Path(output_dir) / "checkpoints", marker=TRAINER_STATE)


@dataclass
class TrainerProgress:
    """Where a run stands, beyond the training objects' own state.

    step:     optimizer steps completed.
    history:  one entry per held-out evaluation: ``{"step": ..., "eval/...": ...}``.
    wandb_id: the wandb run to continue (None: none yet).
    """

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    wandb_id: str | None = None


def save_checkpoint(
    checkpoints: StepCheckpoints,
    save_model: Callable[[Path], None],
    optimizer_state: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: PairBatchSampler,
    progress: TrainerProgress,
) -> Path:
    """Write the checkpoint of ``progress.step`` atomically; returns its directory.

    save_model(dir) writes the full model with ``JRM.save_pretrained``; optimizer_state is the full,
    name-keyed optimizer state (:meth:`ParallelPlan.full_state`).
    """

    def fill(tmp: Path) -> None:
        save_model(tmp / MODEL_DIR)
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
        atomic_save_safetensors(tmp / "optimizer.safetensors", opt_tensors)
        rng_tensors, python_rng = capture_rng()
        atomic_save_safetensors(tmp / "rng.safetensors", rng_tensors)
        atomic_write_json(
            tmp / TRAINER_STATE,
            {
                "step": progress.step,
                "sampler": sampler.state_dict(),
                "scheduler": scheduler.state_dict(),
                "optimizer": opt_meta,
                "python_rng": python_rng,
                "history": progress.history,
                "wandb_id": progress.wandb_id,
            },
        )

    return checkpoints.write(progress.step, fill)


def restore_checkpoint(
    path: Path,
    plan: ParallelPlan,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    sampler: PairBatchSampler,
) -> TrainerProgress:
    """Load optimizer, scheduler, sampler and RNG state from checkpoint ``path`` (the model is loaded from
    ``path / "model"`` when it is built); returns the run's progress."""
    state = json.loads((path / TRAINER_STATE).read_text())
    opt_state = unflatten_optimizer_state(load_file(path / "optimizer.safetensors"), state["optimizer"])
    plan.load_optimizer(model, optimizer, opt_state)
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    restore_rng(load_file(path / "rng.safetensors"), state["python_rng"])
    return TrainerProgress(step=state["step"], history=state.get("history", []), wandb_id=state.get("wandb_id"))


def resolve_resume(cfg: JRMTrainConfig) -> Path | None:
    """The checkpoint to resume from: ``resume`` = "auto" (latest, if any), "never", or a directory."""
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        return jrm_checkpoints(cfg.output_dir).latest()
    path = Path(cfg.resume)
    if not (path / TRAINER_STATE).is_file():
        raise ConfigError(f"resume: {path} is not a checkpoint directory (no {TRAINER_STATE})")
    return path
