"""Paired comparisons over held-out tasks: the mean difference with a seeded percentile-bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (after - before) over n paired items and its bootstrap confidence interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float


def paired_bootstrap(
    before: np.ndarray, after: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> PairedDifference:
    """Percentile bootstrap of mean(after - before); before, after: (n,) scores of the same n items."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 1 or before.size == 0:
        raise ValueError(f"need two equal-length 1-D score arrays, got shapes {before.shape} and {after.shape}")
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        raise ValueError("paired_bootstrap got NaN or inf scores")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    diff = after - before
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_resamples, diff.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(float(diff.mean()), float(low), float(high), int(diff.size), confidence)
