"""A placement probe: an actor that only answers where it runs (no model, no torch import), so ``make bench``
can start the 32-GPU preset's 64 actors on one small machine with the options the real actors get."""

from __future__ import annotations

from rl.actor_location import Locatable


class PlacementProbe(Locatable):
    """Stands in for a policy worker or reward actor; ``location()`` is all it does."""
