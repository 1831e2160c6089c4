"""How much reward failure a run tolerates before it stops instead of "succeeding" with untrained weights.

A round whose reward model failed on more than ``max_failed_fraction`` of its samples, or
``max_rounds_without_update`` rounds in a row without an optimizer step, stops the run with an error that
names the reward model and its last exception.
"""

from __future__ import annotations

from dataclasses import dataclass


class RewardFailureBudgetError(RuntimeError):
    """The reward model failed more often than the configured budget allows."""


@dataclass
class FailureBudget:
    """Counts failures round by round; :meth:`record_round` raises once a limit is passed.

    max_failed_fraction:        largest tolerated fraction of a round's samples without a finite reward.
    max_rounds_without_update:  largest tolerated run of consecutive rounds that took no optimizer step.
    reward_name:                the reward model, for the error message.
    """

    max_failed_fraction: float
    max_rounds_without_update: int
    reward_name: str
    rounds_without_update: int = 0
    last_error: str = ""

    def record_round(self, step: int, *, n_samples: int, n_failed: int, updated: bool, error: str = "") -> None:
        """Account for round ``step``; raise :class:`RewardFailureBudgetError` past either limit."""
        if error:
            self.last_error = error
        self.rounds_without_update = 0 if updated else self.rounds_without_update + 1
        fraction = n_failed / n_samples if n_samples else 0.0
        cause = f"; last error: {self.last_error}" if self.last_error else ""
        if fraction > self.max_failed_fraction:
            raise RewardFailureBudgetError(
                f"step {step}: reward model {self.reward_name!r} failed on {n_failed} of {n_samples} samples "
                f"({fraction:.0%} > grpo.max_failed_reward_fraction={self.max_failed_fraction:g}){cause}"
            )
        if self.rounds_without_update > self.max_rounds_without_update:
            raise RewardFailureBudgetError(
                f"step {step}: {self.rounds_without_update} consecutive rounds without an update "
                f"(> grpo.max_rounds_without_update={self.max_rounds_without_update}) with reward model "
                f"{self.reward_name!r}{cause}"
            )
