"""RNG state of a training worker (torch CPU and CUDA, Python ``random``): seeding, capture, restore.

A checkpoint stores the torch states as uint8 tensors (``rng.safetensors``) and the Python state as JSON, so
a resumed run draws the same random numbers as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import torch


def seed_worker(seed: int) -> None:
    """Seed torch (all devices) and Python ``random`` with ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)


def capture_rng() -> tuple[dict[str, torch.Tensor], Any]:
    """(torch states by name: ``torch_cpu``, ``torch_cuda_<i>`` per visible GPU; Python ``random`` state)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = st
    return tensors, random.getstate()


def restore_rng(tensors: dict[str, torch.Tensor], python_state: Any) -> None:
    """Undo :func:`capture_rng`; ``python_state`` may have come back from JSON (lists instead of tuples)."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))
