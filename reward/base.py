"""The one interface every reward model implements (JRM, the alpha=0 baseline, EditReward, oracles, judges).

The RL reward actor, the evaluation CLIs and the benchmarks only ever talk to :class:`RewardModel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

#: Canonical dimension names, in the order used by every reward model that scores both.
INSTRUCTION_FOLLOWING = "instruction_following"
VISUAL_QUALITY = "visual_quality"
DEFAULT_DIMENSIONS: tuple[str, ...] = (INSTRUCTION_FOLLOWING, VISUAL_QUALITY)


@dataclass
class RewardScores:
    """Scores of a batch of B edits.

    mu:         (B, D) float32, per-dimension mean score (dimension names in ``dimensions``).
    sigma:      (B, D) float32, per-dimension std (uncertainty); ones where a model has none.
    reward:     (B,)   float32, the combined scalar reward used by RL.
    dimensions: names of the D columns.
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    reward: torch.Tensor
    dimensions: tuple[str, ...]

    def __post_init__(self) -> None:
        b = self.reward.shape[0]
        if self.mu.shape != (b, len(self.dimensions)) or self.sigma.shape != self.mu.shape:
            raise ValueError(
                f"RewardScores shapes disagree: mu {tuple(self.mu.shape)}, sigma {tuple(self.sigma.shape)}, "
                f"reward {tuple(self.reward.shape)}, dimensions {self.dimensions}"
            )

    def column(self, name: str) -> torch.Tensor:
        """(B,) mean score of one dimension."""
        return self.mu[:, self.dimensions.index(name)]


@runtime_checkable
class RewardModel(Protocol):
    """Scores edits: (source image, edited image, instruction) -> per-dimension scores and a scalar reward."""

    dimensions: tuple[str, ...]

    def score(
        self,
        sources: Sequence[Image.Image],
        edits: Sequence[Image.Image],
        instructions: Sequence[str],
    ) -> RewardScores:
        """Score B edits in one call (the implementation batches internally as it sees fit)."""
        ...
