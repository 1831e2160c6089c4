"""The interface every editing policy offers to evaluation: deterministic (ODE) edits of a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class EditingPolicy(Protocol):
    """Edits images by instruction. Used by eval hooks and the benchmark CLIs."""

    def edit(
        self,
        sources: Sequence[Image.Image],
        instructions: Sequence[str],
        *,
        seed: int = 0,
    ) -> list[Image.Image]:
        """Return one edited image per (source, instruction), sampled with the ODE (no SDE noise)."""
        ...
