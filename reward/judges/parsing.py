"""Parsing of judge answers into validated score tuples.

Two public answer styles are supported:
- ``json_list`` (VIEScore): a JSON object ``{"score": [s1, s2], "reasoning": "..."}``, possibly wrapped in
  VIEScore's ``||V^=^V||`` delimiters or a markdown code fence.
- ``labelled_lines`` (ImgEdit-Bench): lines ``<Criterion name>: <integer>``, one per criterion, in order.

Two parsing modes (``ScoreFormat.parsing``):

- ``strict`` (this project's): anything else (no JSON, wrong number of scores, non-integers, out-of-range
  values) raises :class:`MalformedAnswerError`; the judge retries and finally records a failure.
- ``official``: exactly what the public scorers accept. GEdit-Bench's VIEScore (``mllm_output_to_dict``): the
  text between two ``||V^=^V||`` delimiters, else from the first ``{`` to the last ``}``, stripped and with
  every newline removed, read as JSON (a non-list ``score`` is wrapped in a list; on a JSON error, its
  ``fix_json`` repair is tried once); with no braces at all, a bare ``[a, b]`` list or a bare integer 0-10
  is accepted. Any number of scores is kept (the metric takes their min), neither range nor integrality is
  checked. ImgEdit-Bench's ``step1_get_avgscore.py``: every line that splits on ``": "`` into exactly two
  parts whose second is all digits contributes that integer; any count of them is kept (the item score is
  their mean, rounded to 2 decimals). Retries follow the official scorers
  (:attr:`ScoreFormat.malformed_attempt_limit`): where the official VIEScore asks once more and then
  substitutes a random score, here the judge asks once more and then counts the item as unparsed and excludes
  it (nothing is ever guessed); ImgEdit's script never retries and drops an item without scores, so here one
  answer is asked for and such an item is counted as unparsed. (One difference remains: the official VIEScore
  re-asks both of an item's questions when either fails to parse; here only the failed one is asked again.)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

AnswerStyle = Literal["json_list", "labelled_lines"]
ParsingMode = Literal["strict", "official"]
PARSING_MODES: tuple[str, ...] = ("strict", "official")
#: Answers the official scorers ask for before giving up on an item: VIEScore (GEdit) the first and one retry,
#: ImgEdit's script only the first.
OFFICIAL_PARSE_ATTEMPTS: dict[str, int] = {"json_list": 2, "labelled_lines": 1}

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
    parsing: ParsingMode = "strict"

    @property
    def malformed_attempt_limit(self) -> int | None:
        """How many malformed answers a judge may receive for one request before it gives up (None: its own
        ``max_attempts``). ``official``: as the public scorer, VIEScore 2 (one retry), ImgEdit 1 (none)."""
        return OFFICIAL_PARSE_ATTEMPTS[self.style] if self.parsing == "official" else None

    def parse(self, text: str | None) -> tuple[float, ...]:
        """The validated scores in ``text``; raises :class:`MalformedAnswerError` otherwise."""
        if self.parsing == "official":
            if text is None:
                raise MalformedAnswerError("empty answer")
            if self.style == "json_list":
                return official_viescore_scores(text)
            return official_imgedit_scores(text)
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


# official parsers -----------------------------------------------------------------------------------------


def official_fix_json(text: str) -> str:
    """VIEScore's ``fix_json`` repair: quote bare ``word:`` keys, then wrap bare numbers in ``[...]`` and quote
    bare string values of ``"key": value`` pairs (booleans and null left as they are)."""
    fixed = re.sub(r"(\w+):", r'"\1":', text)

    def format_value(match: re.Match[str]) -> str:
        key, value, comma = match.groups()
        value = value.strip()
        if re.match(r"^-?\d+(\.\d+)?$", value):
            value = f"[{value}]"
        elif not re.match(r"^(true|false|null)$", value, re.IGNORECASE):
            value = f'"{value}"'
        return f"{key}: {value}{comma}"

    return re.sub(r'(".*?"):(.*?)(,|})', format_value, fixed)


def _official_int_0_10(text: str) -> bool:
    """VIEScore's ``is_int_between_0_and_10``: ``int(text)`` succeeds (Python's rules) and is in 0..10."""
    try:
        return 0 <= int(text) <= 10
    except ValueError:
        return False


def official_viescore_dict(text: str) -> dict | None:
    """VIEScore's ``mllm_output_to_dict(text, give_up_parsing=False)``: the answer object, or None where it
    returns False (never the random guess of ``give_up_parsing=True``)."""
    if text.count(_VIESCORE_DELIMITER) == 2:
        start = text.find(_VIESCORE_DELIMITER) + len(_VIESCORE_DELIMITER)
        end = text.rfind(_VIESCORE_DELIMITER)
    else:
        start, end = text.find("{"), text.rfind("}") + 1
        if start == -1 or end == 0:
            start, end = text.find("["), text.rfind("]") + 1
            if re.match(r"^\[\d+, ?\d+\]$", text[start:end]):
                text = json.dumps({"score": json.loads(text[start:end]), "reasoning": "a list of scores"})
            elif _official_int_0_10(text):
                text = json.dumps({"score": [int(text)], "reasoning": "a number"})
            else:
                return None
            start, end = 0, len(text)
    if start == -1 or end == -1 or start == end:
        return None
    candidate = text[start:end].strip().replace("\n", "")
    try:
        obj = json.loads(candidate)
        if not isinstance(obj["score"], list):
            obj["score"] = [obj["score"]]
    except Exception:  # the official code catches everything here, then tries its repair once
        try:
            return json.loads(official_fix_json(candidate))
        except Exception:
            return None
    return obj


def official_viescore_scores(text: str) -> tuple[float, ...]:
    """The ``score`` list the official VIEScore reads from ``text`` (any length >= 1: SC/PQ take its min).

    Raises :class:`MalformedAnswerError` where the official parser gives up, and where its result has no
    usable ``score`` list (the official scorer would crash on it: not an object, no ``score``, an empty list,
    or an entry that is not a number).
    """
    obj = official_viescore_dict(text)
    if obj is None:
        raise MalformedAnswerError("the official VIEScore parser finds no answer object")
    raw = obj.get("score") if isinstance(obj, dict) else None
    if not isinstance(raw, list) or not raw:
        raise MalformedAnswerError(f"the official VIEScore parser finds no score list in {obj!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in raw):
        raise MalformedAnswerError(f"score list {raw!r} holds a non-number")
    return tuple(float(v) for v in raw)


def official_imgedit_scores(text: str) -> tuple[float, ...]:
    """ImgEdit's ``extract_scores_and_average`` reading: every ``<anything>: <digits>`` line, in order.

    Raises :class:`MalformedAnswerError` when there is none (the official script then drops the item).
    """
    scores: list[float] = []
    for line in text.splitlines():
        parts = line.strip().split(": ")
        if len(parts) == 2 and parts[1].isdigit():
            try:
                scores.append(float(int(parts[1])))
            except ValueError:  # a non-ASCII digit str.isdigit accepts and int() does not
                raise MalformedAnswerError(f"score {parts[1]!r} is not an integer") from None
    if not scores:
        raise MalformedAnswerError("the official ImgEdit parser finds no '<criterion>: <integer>' line")
    return tuple(scores)
