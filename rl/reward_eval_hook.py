"""Eval hook: pairwise accuracy of the reward model on held-out preference pairs (EditReward-Data layout).

For each pair, the preferred and rejected edits are scored against the same source and instruction; the
counting rule (human ties skipped, model ties wrong, ``overall`` on the combined reward of non-tie pairs) is
:func:`reward.metrics.pairwise_counts`, the same as JRM training's held-out accuracy.
The policy argument is unused: the hook reports on the reward the RL run optimises (reward-hacking check
when the model is retrained, and a sanity check of the checkpoint the run loaded).
"""

from __future__ import annotations

from policies.base import EditingPolicy
from reward.base import RewardModel
from reward.jrm.data import load_images, load_preference_pairs
from reward.metrics import pairwise_counts
from rl.hooks import EvalResult


class RewardPairAccuracyHook:
    """Implements :class:`rl.hooks.EvalHook`: accuracy of ``model`` on the pairs of ``pairs_path``."""

    def __init__(
        self, model: RewardModel, pairs_path: str, *, image_root: str | None = None, every_n_steps: int = 10,
        limit: int | None = None, name: str = "reward_pairs", batch_size: int = 8,
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
        self.batch_size = batch_size

    def __call__(self, policy: EditingPolicy, step: int) -> EvalResult:
        counts = pairwise_counts(self.model, self.pairs, self.batch_size)
        metrics = {f"{self.name}/accuracy_{k}": v for k, v in counts.accuracies().items()}
        return EvalResult(metrics=metrics, n_items=len(self.pairs))
