"""Parsing of judge answers into validated score tuples.

Two public answer styles are supported:
- ``json_list`` (VIEScore): a JSON object ``{"score": [s1, s2], "reasoning": "..."}``, possibly wrapped in
  VIEScore's ``||V^=^V||`` delimiters or a markdown code fence.
- ``labelled_lines`` (ImgEdit-Bench): lines ``<Criterion name>: <integer>``, one per criterion, in order.

Anything else (no JSON, wrong number of scores, non-integers, out-of-range values) raises
:class:`MalformedAnswerError`; the judge retries and finally records a failure. Nothing is ever guessed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

AnswerStyle = Literal["json_list", "labelled_lines"]

_VIESCORE_DELIMITER = "||V^=^V||"
_LABELLED_LINE = re.compile(r"^\s*[*#>\-\s]*(?P<label>[A-Za-z][A-Za-z &/'\-]*?)\s*\**\s*:\s*\**\s*(?P<value>[-+]?\d+(?:\.\d+)?)\s*\**\s*$")


class MalformedAnswerError(ValueError):
    """A judge's answer does not hold the expected scores."""


@dataclass(frozen=True)
class ScoreFormat:
    """The expected answer: ``num_scores`` integers in ``[low, high]`` written in ``style``.

    labels: for ``labelled_lines``, the criterion names in order (matched case-insensitively); empty = take
            exactly ``num_scores`` labelled number lines whatever their names (as ImgEdit's own scorer reads
            its per-type prompts, whose criterion names differ by edit type).
    """

    style: AnswerStyle
    num_scores: int
    low: int
    high: int
    labels: tuple[str, ...] = ()

    def parse(self, text: str | None) -> tuple[float, ...]:
        """The validated scores in ``text``; raises :class:`MalformedAnswerError` otherwise."""
        if text is None or not text.strip():
            raise MalformedAnswerError("empty answer")
        values = _parse_json_list(text) if self.style == "json_list" else _parse_labelled(text, self.labels, self.num_scores)
        if len(values) != self.num_scores:
            raise MalformedAnswerError(f"expected {self.num_scores} scores, got {len(values)}: {values}")
        for v in values:
            if not math.isfinite(v) or v != int(v):
                raise MalformedAnswerError(f"score {v!r} is not an integer")
            if not self.low <= v <= self.high:
                raise MalformedAnswerError(f"score {v!r} outside [{self.low}, {self.high}]")
        return tuple(float(v) for v in values)


def _json_candidate(text: str) -> str:
    if text.count(_VIESCORE_DELIMITER) >= 2:
        start = text.index(_VIESCORE_DELIMITER) + len(_VIESCORE_DELIMITER)
        return text[start : text.index(_VIESCORE_DELIMITER, start)]
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise MalformedAnswerError("no JSON object in the answer")
    return text[start : end + 1]


def _parse_json_list(text: str) -> list[float]:
    try:
        obj = json.loads(_json_candidate(text).strip())
    except json.JSONDecodeError as exc:
        raise MalformedAnswerError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict) or "score" not in obj:
        raise MalformedAnswerError('JSON answer has no "score" key')
    raw = obj["score"]
    raw = raw if isinstance(raw, list) else [raw]
    values: list[float] = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise MalformedAnswerError(f"score entry {v!r} is not a number")
        values.append(float(v))
    return values


def _parse_labelled(text: str, labels: tuple[str, ...], num_scores: int) -> list[float]:
    found: list[tuple[str, float]] = []
    for line in text.splitlines():
        m = _LABELLED_LINE.match(line)
        if m:
            found.append((m.group("label").strip().lower(), float(m.group("value"))))
    if not labels:
        return [v for _, v in found]
    by_label = {label: value for label, value in found}
    missing = [name for name in labels if name.lower() not in by_label]
    if missing:
        raise MalformedAnswerError(f"answer lacks the score line(s) {missing}")
    return [by_label[name.lower()] for name in labels]
