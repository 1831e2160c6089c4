"""Evaluation hooks called by the Flow-GRPO controller every K steps on held-out instructions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from policies.base import EditingPolicy


@dataclass
class EvalResult:
    """What one hook run reports.

    metrics: scalar metrics, keys prefixed by the hook's name (e.g. ``gedit/overall``).
    images:  a few (caption, image) samples to log.
    n_items / n_failures: items evaluated and items excluded (e.g. a judge that never answered).
    """

    metrics: dict[str, float]
    images: list[tuple[str, Image.Image]] = field(default_factory=list)
    n_items: int = 0
    n_failures: int = 0


@runtime_checkable
class EvalHook(Protocol):
    """Runs an evaluation of the current policy (ODE sampling) and returns metrics."""

    name: str
    every_n_steps: int

    def __call__(self, policy: EditingPolicy, step: int) -> EvalResult: ...
