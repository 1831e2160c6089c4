"""Reward actor: wraps any :class:`reward.base.RewardModel` chosen by config; never lets a bad score through.

Placed in the same bundle as a sampler (fractional GPU), it scores a chunk while the sampler draws the next.
An exception while scoring, or a NaN/inf score, turns the affected samples into NaN rewards, which the
controller drops and counts; nothing non-finite reaches the loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from PIL import Image

from reward.base import RewardModel, RewardScores
from reward.registry import RewardModelConfig, RewardRegistry, build_reward_model
from rl.actor_location import Locatable
from rl.types import RewardResult, ScoringInput

logger = logging.getLogger(__name__)


def score_safely(model: RewardModel, batch: ScoringInput) -> RewardResult:
    """Score a chunk; an exception fails the whole chunk (all NaN), a non-finite value fails its sample."""
    try:
        scores = model.score(batch.sources, batch.edits, batch.instructions)
    except Exception as exc:  # any model failure drops the chunk; the run goes on
        logger.warning("reward model failed on a chunk of %d samples: %r", len(batch.edits), exc)
        return RewardResult.failed(len(batch.edits), tuple(model.dimensions), repr(exc))
    result = RewardResult.from_scores(scores)
    if result.n_failed:
        logger.warning("reward model returned %d non-finite scores out of %d", result.n_failed, len(batch.edits))
    return result


class RewardActor(Locatable):
    """Builds the reward model from its config and scores :class:`ScoringInput` chunks."""

    def __init__(self, reward_cfg: RewardModelConfig, *, torch_threads: int = 1, registry: RewardRegistry | None = None) -> None:
        torch.set_num_threads(torch_threads)
        self.model = build_reward_model(reward_cfg, registry)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.model.dimensions)

    def get_dimensions(self) -> tuple[str, ...]:
        return self.dimensions

    def score(self, batch: ScoringInput) -> RewardResult:
        return score_safely(self.model, batch)

    def score_raw(self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]) -> RewardScores:
        """The model's own scores (for evaluation hooks that need mu and sigma)."""
        with torch.no_grad():
            return self.model.score(sources, edits, instructions)
