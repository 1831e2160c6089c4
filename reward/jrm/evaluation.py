"""Held-out evaluation during JRM training: pairwise accuracy in the trainer's metric names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reward.jrm.pairs import LoadedPair
from reward.metrics import pairwise_counts


def pairwise_accuracy(model: Any, pairs: Sequence[LoadedPair], batch_size: int) -> dict[str, float]:
    """Held-out pairwise accuracy (the rule of :func:`reward.metrics.pairwise_counts`), per dimension and overall.

    ``acc/<key>`` is correct / counted for ``instruction_following``, ``visual_quality`` and ``overall``
    (absent when nothing was counted for it); ``n/<key>`` is the number of pairs counted. The model scores in
    eval mode and is put back in its previous mode.
    """
    was_training = model.training
    model.eval()
    counts = pairwise_counts(model, pairs, batch_size)
    model.train(was_training)
    out = {f"acc/{k}": v for k, v in counts.accuracies().items()}
    out.update({f"n/{k}": float(v) for k, v in counts.counted.items()})
    return out
