"""Small pure operations on :class:`policies.rollout.Rollout`."""

from __future__ import annotations

import dataclasses

import torch

from policies.rollout import Rollout


def _take(t: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[index]


def select_samples(rollout: Rollout, index: torch.Tensor) -> Rollout:
    """The sub-rollout of the samples at ``index`` ((n,) int64), every per-sample field sliced alike."""
    index = index.to(torch.long)
    positions = index.tolist()
    return dataclasses.replace(
        rollout,
        latents=rollout.latents[index],
        log_probs=rollout.log_probs[index],
        conditions=rollout.conditions.select(positions),
        images=rollout.images[index],
        instructions=[rollout.instructions[i] for i in positions] if rollout.instructions else [],
        group_ids=_take(rollout.group_ids, index),
    )
