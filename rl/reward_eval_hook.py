"""Eval hook: pairwise accuracy of the reward model on held-out preference pairs (EditReward-Data layout).

For each pair, the preferred and rejected edits are scored against the same source and instruction. A pair
counts for a dimension when its human scores on that dimension differ (ties are skipped); it is correct when
the model's mean score orders the two the same way. ``overall`` uses the combined reward on non-tie pairs.
The policy argument is unused: the hook reports on the reward the RL run optimises (reward-hacking check
when the model is retrained, and a sanity check of the checkpoint the run loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from policies.base import EditingPolicy
from reward.base import INSTRUCTION_FOLLOWING, VISUAL_QUALITY, RewardModel
from reward.jrm.data import load_images, load_preference_pairs
from reward.jrm.pairs import LoadedPair
from rl.hooks import EvalResult

#: Pair score attribute per reward dimension name.
_LABEL_ATTR = {INSTRUCTION_FOLLOWING: "instruction_following", VISUAL_QUALITY: "visual_quality"}


@dataclass
class PairAccuracy:
    """Counts per dimension name (plus ``overall``): correct and total judged pairs."""

    correct: dict[str, int]
    total: dict[str, int]

    def accuracies(self) -> dict[str, float]:
        return {k: self.correct[k] / self.total[k] for k in self.total if self.total[k]}


def pair_accuracy(model: RewardModel, pairs: Sequence[LoadedPair], batch_size: int = 8) -> PairAccuracy:
    """Score both sides of every pair (batched) and count correct orderings per dimension."""
    dims = tuple(model.dimensions)
    keys = [*dims, "overall"]
    correct = dict.fromkeys(keys, 0)
    total = dict.fromkeys(keys, 0)
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        n = len(batch)
        with torch.no_grad():
            scores = model.score(
                [p.source for p in batch] * 2,
                [p.preferred for p in batch] + [p.rejected for p in batch],
                [p.pair.instruction for p in batch] * 2,
            )
        for i, loaded in enumerate(batch):
            pair = loaded.pair
            for d, name in enumerate(dims):
                attr = _LABEL_ATTR.get(name)
                if attr is None:
                    continue
                label = getattr(pair.scores_preferred, attr) - getattr(pair.scores_rejected, attr)
                if label == 0:
                    continue
                margin = float(scores.mu[i, d] - scores.mu[n + i, d])
                total[name] += 1
                correct[name] += int(margin * label > 0)
            if not pair.tie:
                total["overall"] += 1
                correct["overall"] += int(float(scores.reward[i]) > float(scores.reward[n + i]))
    return PairAccuracy(correct, total)


class RewardPairAccuracyHook:
    """Implements :class:`rl.hooks.EvalHook`: accuracy of ``model`` on the pairs of ``pairs_path``."""

    def __init__(
        self, model: RewardModel, pairs_path: str, *, image_root: str | None = None, every_n_steps: int = 10,
        limit: int | None = None, name: str = "reward_pairs",
    ) -> None:
        pairs, _ = load_preference_pairs(pairs_path, image_root, on_error="raise")
        if limit is not None:
            pairs = pairs[:limit]
        if not pairs:
            raise ValueError(f"no preference pairs in {pairs_path}")
        self.pairs = [load_images(p) for p in pairs]
        self.model = model
        self.every_n_steps = every_n_steps
        self.name = name

    def __call__(self, policy: EditingPolicy, step: int) -> EvalResult:
        counts = pair_accuracy(self.model, self.pairs)
        metrics = {f"{self.name}/accuracy_{k}": v for k, v in counts.accuracies().items()}
        return EvalResult(metrics=metrics, n_items=len(self.pairs))
