"""RL checkpoints: adapter, optimizer, RNG states, step, data position and config, written atomically.

Layout: ``<output_dir>/checkpoints/step_<8-digit step>/`` with ``adapter.safetensors``, ``optimizer.pt`` (a plain
tensor/number state dict, read back with ``weights_only=True``), ``rng.safetensors``, ``state.json`` and
``config.yaml``, and ``manifest.json`` (size and sha256 of each, written last). Directories are handled by
:class:`editrl.checkpoints.StepCheckpoints`: each is written under a temporary name and renamed into place in
one step, so ``latest_checkpoint`` never sees a half-written one (the driver may be ``kill -9``-ed at any
instant). Loading verifies the manifest, so a file damaged afterwards (a truncated copy, a full disk) is
named instead of loaded; :func:`newest_intact_checkpoint` skips such a checkpoint for an older one.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from editrl.checkpoints import StepCheckpoints
from editrl.io import atomic_save_safetensors, atomic_write_bytes, atomic_write_json
from editrl.manifest import MANIFEST_NAME, DamagedCheckpointError, verify_manifest, write_manifest

logger = logging.getLogger(__name__)

#: The file every complete RL checkpoint holds.
STATE_FILE = "state.json"
#: Files a checkpoint must hold to resume (the manifest, when present, lists them all).
REQUIRED_FILES = ("adapter.safetensors", "optimizer.pt", "rng.safetensors", "config.yaml", STATE_FILE)


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
    optimizer: the optimizer state dict (``torch.optim.Optimizer.state_dict()`` layout).
    rng:       named RNG state tensors (uint8), e.g. ``torch_cpu``.
    """

    path: Path
    state: TrainingState
    adapter: dict[str, torch.Tensor]
    optimizer: dict
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
    optimizer_state: dict,
    rng: dict[str, torch.Tensor],
    config_yaml: str,
    *,
    keep_last: int = 3,
) -> Path:
    """Write ``step_<8-digit step>`` atomically, then delete all but the ``keep_last`` newest. Returns its path."""

    def fill(tmp: Path) -> None:
        atomic_save_safetensors(tmp / "adapter.safetensors", adapter, metadata={"step": str(state.step)})
        atomic_save_safetensors(tmp / "rng.safetensors", rng)
        buf = io.BytesIO()
        torch.save(optimizer_state, buf)
        atomic_write_bytes(tmp / "optimizer.pt", buf.getvalue())
        atomic_write_bytes(tmp / "config.yaml", config_yaml.encode())
        atomic_write_json(tmp / STATE_FILE, asdict(state))
        write_manifest(tmp)

    checkpoints = run_checkpoints(output_dir)
    final = checkpoints.write(state.step, fill)
    checkpoints.prune(keep_last)
    return final


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    return run_checkpoints(output_dir).paths()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    return run_checkpoints(output_dir).latest()


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise DamagedCheckpointError(f"{path}: cannot be read as safetensors ({exc})") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint directory (safetensors, and the optimizer with ``weights_only=True``).

    Raises :class:`DamagedCheckpointError` naming the file when the manifest check fails or a required file
    is missing or unreadable; a checkpoint from before manifests is loaded with a warning.
    """
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"not a checkpoint directory (no {STATE_FILE}): {path}")
    if (path / MANIFEST_NAME).is_file():
        verify_manifest(path)
    else:
        logger.warning("%s has no %s (written by an older version): its files are not verified", path, MANIFEST_NAME)
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise DamagedCheckpointError(f"{path}: file {name} is missing")
    try:
        state = TrainingState(**json.loads(state_file.read_text()))
    except (TypeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpointError(f"bad checkpoint state file {state_file}: {exc}") from None
    try:
        optimizer = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several classes for a damaged archive
        raise DamagedCheckpointError(f"{path / 'optimizer.pt'}: cannot be loaded ({exc})") from None
    return Checkpoint(
        path=path,
        state=state,
        adapter=_load_tensors(path / "adapter.safetensors"),
        optimizer=optimizer,
        rng=_load_tensors(path / "rng.safetensors"),
    )


def newest_intact_checkpoint(output_dir: str | Path) -> Checkpoint | None:
    """The newest checkpoint that loads and verifies; each damaged newer one is skipped with a warning."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            return load_checkpoint(path)
        except DamagedCheckpointError as exc:
            logger.warning("skipping damaged checkpoint %s: %s", path.name, exc)
    return None
