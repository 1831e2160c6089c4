"""Pairwise accuracy of a reward model against human preference pairs.

One rule, used by JRM training's held-out evaluation and the RL reward eval hook: per dimension, a pair counts
when its human scores on that dimension differ, and is correct when the model's mean scores order the two sides
the same way; ``overall`` counts the non-tie pairs (path1 preferred) and is correct when the combined reward of
the preferred side is strictly higher. A model tie is always wrong.

``overall`` is also split by how the pair's human scores differ (:func:`pair_case`, keys ``overall_<case>``): a
reward can be right on most pairs overall while at chance on the pairs that
only instruction following separates, or wrong on the pairs where the two dimensions disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reward.base import INSTRUCTION_FOLLOWING, VISUAL_QUALITY, RewardModel
from reward.jrm.pairs import LoadedPair

OVERALL = "overall"
#: Human score attribute of :class:`reward.jrm.pairs.EditScores` per reward dimension name.
LABEL_ATTR = {INSTRUCTION_FOLLOWING: "instruction_following", VISUAL_QUALITY: "visual_quality"}
#: How a pair's human scores differ: only IF, only VQ, both the same way, or the two dimensions opposed.
PAIR_CASES = ("if_only", "vq_only", "agree", "conflict")


def pair_case(if_margin: float, vq_margin: float) -> str | None:
    """The :data:`PAIR_CASES` entry of a pair from its human IF and VQ margins (preferred minus rejected);
    None when neither dimension differs."""
    if if_margin == 0 and vq_margin == 0:
        return None
    if vq_margin == 0:
        return "if_only"
    if if_margin == 0:
        return "vq_only"
    return "agree" if (if_margin > 0) == (vq_margin > 0) else "conflict"


def count_agreements(model_margin: torch.Tensor, human_margin: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) over N pairs.

    model_margin: (N,) model score of the preferred side minus that of the rejected side.
    human_margin: (N,) human score of the preferred side minus that of the rejected side.
    Tie rule: a pair with ``human_margin == 0`` is not counted; a counted pair is correct iff ``model_margin``
    has the same strict sign as ``human_margin`` (a model margin of 0 is wrong).
    """
    if model_margin.shape != human_margin.shape or model_margin.dim() != 1:
        raise ValueError(
            f"margins must both be (N,), got {tuple(model_margin.shape)} and {tuple(human_margin.shape)}"
        )
    model_sign = torch.sign(model_margin.detach().cpu().double())
    human_sign = torch.sign(human_margin.detach().cpu().double())
    counted = human_sign != 0
    correct = counted & (model_sign == human_sign)
    return int(correct.sum()), int(counted.sum())


@dataclass
class PairwiseCounts:
    """Correct and counted pairs per key: each labelled dimension name (:data:`LABEL_ATTR`), ``overall`` and
    ``overall_<case>`` per :data:`PAIR_CASES`."""

    correct: dict[str, int]
    counted: dict[str, int]

    @classmethod
    def empty(cls) -> PairwiseCounts:
        keys = [*LABEL_ATTR, OVERALL, *(f"{OVERALL}_{case}" for case in PAIR_CASES)]
        return cls(dict.fromkeys(keys, 0), dict.fromkeys(keys, 0))

    def add(self, key: str, agreements: tuple[int, int]) -> None:
        """Add a (correct, counted) result of :func:`count_agreements` to ``key``."""
        self.correct[key] += agreements[0]
        self.counted[key] += agreements[1]

    def accuracies(self) -> dict[str, float]:
        """correct / counted per key; keys with nothing counted are left out."""
        return {k: self.correct[k] / self.counted[k] for k in self.counted if self.counted[k]}


def pairwise_counts(model: RewardModel, pairs: Sequence[LoadedPair], batch_size: int) -> PairwiseCounts:
    """Score both sides of every pair (``batch_size`` pairs per call, no gradients) and count agreements.

    Dimensions the model does not score stay at zero counted; the model's train/eval mode is not changed.
    """
    counts = PairwiseCounts.empty()
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        n = len(batch)
        with torch.no_grad():
            scores = model.score(
                [p.source for p in batch] * 2,
                [p.preferred for p in batch] + [p.rejected for p in batch],
                [p.pair.instruction for p in batch] * 2,
            )
        human = {
            name: torch.tensor(
                [getattr(p.pair.scores_preferred, attr) - getattr(p.pair.scores_rejected, attr) for p in batch],
                dtype=torch.float64,
            )
            for name, attr in LABEL_ATTR.items()
        }
        for name in LABEL_ATTR:
            if name in scores.dimensions:
                counts.add(name, count_agreements(scores.column(name)[:n] - scores.column(name)[n:], human[name]))
        preferred = torch.tensor([0.0 if p.pair.tie else 1.0 for p in batch], dtype=torch.float64)
        margin = scores.reward[:n] - scores.reward[n:]
        counts.add(OVERALL, count_agreements(margin, preferred))
        cases = [pair_case(float(i), float(v)) for i, v in zip(human[INSTRUCTION_FOLLOWING], human[VISUAL_QUALITY])]
        for case in PAIR_CASES:
            rows = [i for i, c in enumerate(cases) if c == case]
            if rows:
                counts.add(f"{OVERALL}_{case}", count_agreements(margin[rows], preferred[rows]))
    return counts
