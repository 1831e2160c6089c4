"""Driver-side stand-ins that let eval hooks talk to actors through the ordinary interfaces.

:class:`RemotePolicy` is an :class:`policies.base.EditingPolicy` backed by a sampler actor (current weights);
:class:`RemoteRewardModel` is a :class:`reward.base.RewardModel` backed by a reward actor.
"""

from __future__ import annotations

from collections.abc import Sequence

import ray
from PIL import Image

from policies.settings import SamplingSettings
from reward.base import RewardScores


class RemotePolicy:
    """ODE edits on a sampler actor (after the weight syncs queued before the call)."""

    def __init__(self, sampler: ray.actor.ActorHandle) -> None:
        self.sampler = sampler
        self._sampling: SamplingSettings | None = None

    @property
    def sampling(self) -> SamplingSettings:
        """The sampler's policy's default sampling settings (fetched once)."""
        if self._sampling is None:
            self._sampling = ray.get(self.sampler.sampling_defaults.remote())
        return self._sampling

    def edit(
        self,
        sources: Sequence[Image.Image],
        instructions: Sequence[str],
        *,
        seed: int = 0,
        settings: SamplingSettings | None = None,
    ) -> list[Image.Image]:
        """``settings``: None = the policy's defaults."""
        return ray.get(self.sampler.edit.remote(list(sources), list(instructions), seed=seed, settings=settings))


class RemoteRewardModel:
    """Scores on a reward actor."""

    def __init__(self, actor: ray.actor.ActorHandle) -> None:
        self.actor = actor
        self.dimensions: tuple[str, ...] = tuple(ray.get(actor.get_dimensions.remote()))

    def score(self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]) -> RewardScores:
        return ray.get(self.actor.score_raw.remote(list(sources), list(edits), list(instructions)))
