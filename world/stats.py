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


def pairwise_agreement(scores: np.ndarray, reference: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Share of item pairs the reference orders strictly that ``scores`` order the same way (ties in
    ``scores`` count one half); scores, reference: (n,). NaN when the reference orders no pair.

    With ``groups`` (n,) only pairs within one group count (e.g. several edits of one task, as GRPO compares
    them). The Kendall-style concordance of a learned reward with the oracle: 1 agrees everywhere, 0.5 is chance.
    """
    scores, reference = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if scores.shape != reference.shape or scores.ndim != 1:
        raise ValueError(f"need two equal-length 1-D arrays, got shapes {scores.shape} and {reference.shape}")
    if not (np.isfinite(scores).all() and np.isfinite(reference).all()):
        raise ValueError("pairwise_agreement got NaN or inf scores")
    upper = np.triu_indices(scores.size, k=1)
    ref_sign = np.sign(reference[:, None] - reference[None, :])[upper]
    score_sign = np.sign(scores[:, None] - scores[None, :])[upper]
    ordered = ref_sign != 0
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != scores.shape:
            raise ValueError(f"groups has shape {groups.shape}, expected {scores.shape}")
        ordered &= (groups[:, None] == groups[None, :])[upper]
    if not ordered.any():
        return float("nan")
    agree = np.where(score_sign[ordered] == 0, 0.5, (score_sign[ordered] == ref_sign[ordered]).astype(np.float64))
    return float(agree.mean())
