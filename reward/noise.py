"""The null-reward control: scores that ignore how good an edit is.

``NoiseReward`` gives every (source, edit, instruction) a pseudo-random score per dimension on the 1-4 scale,
a hash of the edit's pixels, the instruction and ``seed``: the same input always scores the same (on any actor,
in any batch), different edits score independently, and nothing about quality enters. RL with it as the reward
measures what the updates alone do to a policy (``rl.reward.kind=noise``): on the toy world, 30 rounds at lr
1e-2 moved held-out IF -0.46 and VQ +0.53 (the policy drifts toward copying its source), against IF -0.23 /
VQ +0.74 with the oracle as the reward, so a learned reward's gain is only meaningful next to this control.
Never a reward to train for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from reward.base import DEFAULT_DIMENSIONS, RewardScores
from reward.jrm.model import check_combine, combine_dimensions

SCORE_LOW, SCORE_HIGH = 1.0, 4.0


def noise_scores(edit: Image.Image, instruction: str, seed: int, n_dimensions: int) -> list[float]:
    """``n_dimensions`` scores in [1, 4], uniform over hashes of (seed, instruction, edit size, edit RGB bytes)."""
    digest = hashlib.blake2b(digest_size=8 * n_dimensions)
    digest.update(f"{seed}\0{instruction}\0{edit.size}\0".encode())
    digest.update(np.asarray(edit.convert("RGB"), dtype=np.uint8).tobytes())
    words = np.frombuffer(digest.digest(), dtype="<u8")
    return [SCORE_LOW + (SCORE_HIGH - SCORE_LOW) * float(w) / 2.0**64 for w in words]


class NoiseReward:
    """Implements :class:`reward.base.RewardModel` with :func:`noise_scores` (sigma 1, reward = ``combine``)."""

    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS

    def __init__(self, seed: int = 0, combine: str = "mean") -> None:
        check_combine(combine, self.dimensions)
        self.seed, self.combine = seed, combine

    def score(self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]) -> RewardScores:
        if not len(sources) == len(edits) == len(instructions):
            raise ValueError(f"got {len(sources)} sources, {len(edits)} edits, {len(instructions)} instructions")
        mu = torch.tensor([noise_scores(e, t, self.seed, len(self.dimensions)) for e, t in zip(edits, instructions)],
                          dtype=torch.float32).reshape(len(edits), len(self.dimensions))
        reward = combine_dimensions(mu, self.dimensions, self.combine)
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=reward, dimensions=self.dimensions)
