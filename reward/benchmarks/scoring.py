"""Scoring unique (source, edit, instruction) triples with any RewardModel, in batches, with a progress bar."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from reward.base import RewardModel
from reward.benchmarks.files import ImageRef, load_image

#: Name under which the reward model's combined scalar (``RewardScores.reward``) is exposed.
COMBINED_REWARD = "reward"


@dataclass
class ScoreTarget:
    """One edit to score; ``key`` identifies it (an edit shared by several pairs is scored once).
    Images stay undecoded until their batch is scored."""

    key: str
    source: ImageRef
    edit: ImageRef
    instruction: str


@dataclass
class ScoredTargets:
    """scores: key -> {dimension name: mean score, ..., "reward": combined scalar}; failed: keys without scores."""

    scores: dict[str, dict[str, float]]
    failed: set[str]


def score_targets(
    model: RewardModel, targets: Sequence[ScoreTarget], batch_size: int, desc: str, allow_failures: bool = False
) -> ScoredTargets:
    """Score every distinct target once.

    A non-finite score must not silently decide a comparison: it raises naming the item, or, with
    ``allow_failures`` (a VLM judge used as reward model, whose failed answers come back as NaN), the item is
    listed in ``failed`` so that the benchmark excludes and counts it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unique: dict[str, ScoreTarget] = {}
    for t in targets:
        unique.setdefault(t.key, t)
    items = list(unique.values())
    out: dict[str, dict[str, float]] = {}
    failed: set[str] = set()
    for start in tqdm(range(0, len(items), batch_size), desc=desc, disable=len(items) <= batch_size):
        batch = items[start : start + batch_size]
        sources = [load_image(t.source, f"{desc} item {t.key!r} source") for t in batch]
        edits = [load_image(t.edit, f"{desc} item {t.key!r} edit") for t in batch]
        scores = model.score(sources, edits, [t.instruction for t in batch])
        mu, reward = scores.mu.detach().float().cpu(), scores.reward.detach().float().cpu()
        for i, t in enumerate(batch):
            row = {name: float(mu[i, d]) for d, name in enumerate(scores.dimensions)}
            row[COMBINED_REWARD] = float(reward[i])
            bad = [k for k, v in row.items() if not math.isfinite(v)]
            if bad and not allow_failures:
                raise ValueError(f"{desc}: reward model returned non-finite {bad} for item {t.key!r}")
            if bad:
                failed.add(t.key)
            else:
                out[t.key] = row
    return ScoredTargets(out, failed)


def check_score_field(model: RewardModel, field_name: str, config_key: str) -> None:
    """Raise if ``field_name`` is neither one of the model's dimensions nor the combined ``reward``."""
    allowed = (*model.dimensions, COMBINED_REWARD)
    if field_name not in allowed:
        raise ValueError(f"{config_key}: {field_name!r} is not a score of this reward model; choose from {list(allowed)}")
