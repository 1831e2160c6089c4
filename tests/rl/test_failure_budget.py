"""The reward failure budget stops a run that cannot learn, and names the reward model and its error."""

import pytest

from rl.failure_budget import FailureBudget, RewardFailureBudgetError


def test_failed_fraction_above_the_limit_stops_with_the_last_error():
    budget = FailureBudget(max_failed_fraction=0.5, max_rounds_without_update=10, reward_name="jrm")
    budget.record_round(0, n_samples=12, n_failed=6, updated=True, error="CUDA OOM")  # 50%: at the limit, allowed
    with pytest.raises(RewardFailureBudgetError) as err:
        budget.record_round(1, n_samples=12, n_failed=7, updated=True)
    message = str(err.value)
    assert "step 1" in message and "'jrm'" in message and "7 of 12" in message and "CUDA OOM" in message


def test_consecutive_rounds_without_update_stop_and_an_update_resets_the_count():
    budget = FailureBudget(max_failed_fraction=1.0, max_rounds_without_update=2, reward_name="editreward")
    budget.record_round(0, n_samples=4, n_failed=0, updated=False)
    budget.record_round(1, n_samples=4, n_failed=0, updated=False)
    budget.record_round(2, n_samples=4, n_failed=0, updated=True)
    assert budget.rounds_without_update == 0
    budget.record_round(3, n_samples=4, n_failed=0, updated=False)
    budget.record_round(4, n_samples=4, n_failed=0, updated=False)
    with pytest.raises(RewardFailureBudgetError, match="3 consecutive rounds without an update"):
        budget.record_round(5, n_samples=4, n_failed=0, updated=False)


def test_an_always_failing_reward_stops_in_the_first_round_at_default_like_limits():
    budget = FailureBudget(max_failed_fraction=0.5, max_rounds_without_update=3, reward_name="jrm")
    with pytest.raises(RewardFailureBudgetError, match="failed on 8 of 8"):
        budget.record_round(0, n_samples=8, n_failed=8, updated=False, error="RuntimeError('boom')")
