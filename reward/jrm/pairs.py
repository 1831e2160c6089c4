"""Preference pairs in the EditReward-Data layout (DESIGN.md section 3), as typed records.

The loader (:mod:`reward.jrm.data`) produces :class:`PreferencePair`; the trainer loads the images into a
:class:`LoadedPair` and the objective (:mod:`reward.jrm.objective`) turns those into losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class EditScores:
    """Human (or oracle) scores of one edit on the 1-4 scales; ``overall`` may be on any scale."""

    instruction_following: float
    visual_quality: float
    overall: float


@dataclass
class PreferencePair:
    """One record: a source, an instruction, and two edits, ``preferred`` (path1) and ``rejected`` (path2).

    tie:        the record's ``tie_case`` flag (overall preference is a tie).
    rationales: optional language supervision per side, keyed ``"preferred"`` / ``"rejected"``; each value is
                the rationale text that follows ``<|reward|>`` in training.
    metadata:   any extra columns of the record, kept verbatim (e.g. the toy world's facts).
    """

    record_id: str
    instruction: str
    source: Path
    preferred: Path
    rejected: Path
    scores_preferred: EditScores
    scores_rejected: EditScores
    tie: bool = False
    confidence: float | None = None
    rationales: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedPair:
    """A :class:`PreferencePair` with its three images decoded to RGB."""

    pair: PreferencePair
    source: Image.Image
    preferred: Image.Image
    rejected: Image.Image
