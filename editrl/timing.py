"""Wall-clock timing of named phases, in the style of verl's ``marked_timer``.

    timings: dict[str, float] = {}
    with phase_timer("learn", timings):
        ...

Each use adds the seconds its block took (``time.perf_counter``, also when the block raises) to
``timings[name]``: a phase entered several times in a round accumulates, and different names nest freely (an
outer phase includes the time of the phases inside it). Do not nest a name inside itself: both uses would add
the inner block's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def phase_timer(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Add the wall seconds of the ``with`` block to ``timings[name]`` (starting from 0 if absent)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - start)
