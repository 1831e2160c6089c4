"""phase_timer: a positive duration per named phase; repeated uses accumulate; nesting and exceptions."""

import time

import pytest

from editrl.timing import phase_timer


def test_each_named_phase_gets_a_positive_duration():
    timings: dict[str, float] = {}
    for name in ("sample", "reward", "learn"):
        with phase_timer(name, timings):
            time.sleep(0.01)
    assert set(timings) == {"sample", "reward", "learn"}
    assert all(value >= 0.01 for value in timings.values())


def test_repeated_use_accumulates_and_keeps_existing_entries():
    timings = {"other": 5.0}
    with phase_timer("sync", timings):
        time.sleep(0.01)
    first = timings["sync"]
    with phase_timer("sync", timings):
        time.sleep(0.01)
    assert timings["sync"] >= first + 0.01
    assert timings["other"] == 5.0


def test_nested_distinct_names_outer_includes_inner():
    timings: dict[str, float] = {}
    with phase_timer("total", timings):
        with phase_timer("learn", timings):
            time.sleep(0.01)
        time.sleep(0.01)
    assert timings["learn"] >= 0.01
    assert timings["total"] >= timings["learn"] + 0.01


def test_time_is_recorded_when_the_block_raises():
    timings: dict[str, float] = {}
    with pytest.raises(RuntimeError), phase_timer("learn", timings):
        time.sleep(0.01)
        raise RuntimeError("learner died")
    assert timings["learn"] >= 0.01
