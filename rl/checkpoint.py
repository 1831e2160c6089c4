"""RL checkpoints: adapter, optimizer, RNG states, step, data position and config, written atomically.

Layout: ``<output_dir>/checkpoints/step_<8-digit step>/`` with ``adapter.safetensors``, ``optimizer.pt`` (a plain
tensor/number state dict, read back with ``weights_only=True``), ``rng.safetensors``, ``state.json`` and
``config.yaml``. Directories are handled by :class:`editrl.checkpoints.StepCheckpoints`: each is written
under a temporary name and renamed into place in one step, so ``latest_checkpoint`` never sees a half-written
one (the driver may be ``kill -9``-ed at any instant).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from editrl.checkpoints import StepCheckpoints
from editrl.io import atomic_save_safetensors, atomic_write_bytes, atomic_write_json

#: The file every complete RL checkpoint holds.
STATE_FILE = "state.json"


@dataclass
class TrainingState:
    """Scalars that locate a run in time.

    step:          rounds completed (the next round to run is ``step``).
    data_position: instruction records handed out by the dataset after those rounds.
    adapter_version: the learner's adapter version.
    wandb_run_id:  to continue the same wandb run after a resume ("" if none).
    """

    step: int
    data_position: int
    adapter_version: int
    wandb_run_id: str = ""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    adapter:   LoRA tensors by name.
    optimizer: the optimizer state dict (``torch.optim.Optimizer.state_dict()`` layout), or None.
    rng:       named RNG state tensors (uint8), e.g. ``torch_cpu``.
    """

    path: Path
    state: TrainingState
    adapter: dict[str, torch.Tensor]
    optimizer: dict | None
    rng: dict[str, torch.Tensor]


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def run_checkpoints(output_dir: str | Path) -> StepCheckpoints:
    """The step checkpoints of the run writing to ``output_dir``."""
    return StepCheckpoints(checkpoint_root(output_dir), marker=STATE_FILE)


def save_checkpoint(
    output_dir: str | Path,
    state: TrainingState,
    adapter: dict[str, torch.Tensor],
    optimizer_state: dict | None,
    rng: dict[str, torch.Tensor],
    config_yaml: str,
    *,
    keep_last: int = 3,
) -> Path:
    """Write ``step_<8-digit step>`` atomically, then delete all but the ``keep_last`` newest. Returns its path."""

    def fill(tmp: Path) -> None:
        atomic_save_safetensors(tmp / "adapter.safetensors", adapter, metadata={"step": str(state.step)})
        atomic_save_safetensors(tmp / "rng.safetensors", rng)
        if optimizer_state is not None:
            buf = io.BytesIO()
            torch.save(optimizer_state, buf)
            atomic_write_bytes(tmp / "optimizer.pt", buf.getvalue())
        atomic_write_bytes(tmp / "config.yaml", config_yaml.encode())
        atomic_write_json(tmp / STATE_FILE, asdict(state))

    checkpoints = run_checkpoints(output_dir)
    final = checkpoints.write(state.step, fill)
    checkpoints.prune(keep_last)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    return run_checkpoints(output_dir).paths()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    return run_checkpoints(output_dir).latest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory (safetensors, and the optimizer with ``weights_only=True``)."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"not a checkpoint directory (no {STATE_FILE}): {path}")
    try:
        state = TrainingState(**json.loads(state_file.read_text()))
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad checkpoint state file {state_file}: {exc}") from None
    optimizer = None
    if (path / "optimizer.pt").is_file():
        optimizer = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    return Checkpoint(
        path=path,
        state=state,
        adapter=load_file(path / "adapter.safetensors"),
        optimizer=optimizer,
        rng=load_file(path / "rng.safetensors"),
    )
