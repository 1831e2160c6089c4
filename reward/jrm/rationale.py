"""Rationale JSON (DESIGN.md section 3): parsing and strict validation, shared by annotation and ``JRM.explain``.

- IF: ``{"edit_region": [{"id": 0, "label": "...", "bbox_2d": [ymin, xmin, ymax, xmax]}],
  "reasoning": "<|bbox_0|> ... <|global|> ..."}``, coordinates on a 0-1000 scale, ``<|global|>`` required,
  every cited ``<|bbox_k|>`` naming a listed region.
- VQ: ``{"reasoning": "..."}``.
- Joint (the text that follows ``<|reward|>`` in training): ``{"instruction_following": <IF>,
  "visual_quality": <VQ>}``, either key optional.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

RationaleDimension = Literal["IF", "VQ"]
#: Keys of the joint rationale object, per dimension.
JOINT_KEYS: dict[str, str] = {"IF": "instruction_following", "VQ": "visual_quality"}
GLOBAL_TAG = "<|global|>"
_BBOX_TAG = re.compile(r"<\|bbox_([^|>]*)\|>")
COORDINATE_MAX = 1000


class RationaleError(ValueError):
    """A rationale fails validation; ``reason`` is a short machine-readable tag (e.g. ``bbox_out_of_range``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[RationaleError], tuple[str, str]]:
        """Rebuild from (reason, message) so the error survives pickling (e.g. across Ray workers)."""
        return type(self), (self.reason, self.message)


@dataclass(frozen=True)
class Region:
    """One edit region: id (cited as ``<|bbox_id|>``), label, box [ymin, xmin, ymax, xmax] on 0-1000."""

    id: int
    label: str
    bbox_2d: tuple[float, float, float, float]


@dataclass(frozen=True)
class Rationale:
    """A validated rationale of one dimension; ``regions`` is empty for VQ."""

    dimension: RationaleDimension
    reasoning: str
    regions: tuple[Region, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object this rationale was parsed from (canonical key order)."""
        if self.dimension == "VQ":
            return {"reasoning": self.reasoning}
        return {
            "edit_region": [{"id": r.id, "label": r.label, "bbox_2d": list(r.bbox_2d)} for r in self.regions],
            "reasoning": self.reasoning,
        }


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object in ``text``: the whole text, a Markdown code fence, or the first balanced ``{...}``."""
    stripped = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, flags=re.DOTALL)
    candidates = [fence.group(1)] if fence else [stripped]
    start = stripped.find("{")
    if start >= 0:
        try:
            _, end = json.JSONDecoder().raw_decode(stripped[start:])
            candidates.append(stripped[start : start + end])
        except json.JSONDecodeError:
            pass
    for candidate in candidates:
        try:
            obj = json.loads(candidate, parse_constant=lambda _c: math.nan)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise RationaleError("invalid_json", f"no JSON object found in {text[:80]!r}")


def cited_region_ids(reasoning: str) -> set[int]:
    """Ids k of every ``<|bbox_k|>`` tag in ``reasoning``; a malformed tag raises."""
    ids = set()
    for match in _BBOX_TAG.finditer(reasoning):
        if not match.group(1).isdigit():
            raise RationaleError("unknown_bbox_ref", f"malformed region tag {match.group(0)!r}")
        ids.add(int(match.group(1)))
    return ids


def _parse_region(region: Any) -> Region:
    if not isinstance(region, dict):
        raise RationaleError("bad_region", f"region {region!r} is not an object")
    rid, label, box = region.get("id"), region.get("label"), region.get("bbox_2d")
    if isinstance(rid, bool) or not isinstance(rid, int) or rid < 0:
        raise RationaleError("bad_region", f"region id {rid!r} is not a non-negative integer")
    if not isinstance(label, str) or not label.strip():
        raise RationaleError("bad_region", f"region {rid} has no label")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in box)
    ):
        raise RationaleError("bad_bbox", f"region {rid}: bbox_2d must be 4 finite numbers, got {box!r}")
    if any(not 0 <= v <= COORDINATE_MAX for v in box):
        raise RationaleError("bbox_out_of_range", f"region {rid}: bbox_2d {box} is outside [0, {COORDINATE_MAX}]")
    ymin, xmin, ymax, xmax = box
    if not (ymin < ymax and xmin < xmax):
        raise RationaleError("bbox_degenerate", f"region {rid}: bbox_2d {box} needs ymin<ymax and xmin<xmax")
    return Region(id=rid, label=label, bbox_2d=(ymin, xmin, ymax, xmax))


def validate_rationale(
    obj: Mapping[str, Any], dimension: RationaleDimension, max_regions: int | None = None
) -> Rationale:
    """Check one dimension's JSON object; ``max_regions`` bounds region ids (the model has ``<|bbox_0..K|>``)."""
    if dimension not in JOINT_KEYS:
        raise ValueError(f"unknown rationale dimension {dimension!r} (expected 'IF' or 'VQ')")
    if not isinstance(obj, Mapping):
        raise RationaleError("invalid_json", f"{dimension} rationale is not a JSON object")
    reasoning = obj.get("reasoning")
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise RationaleError("missing_reasoning", f"{dimension}: 'reasoning' must be a non-empty string")
    if dimension == "VQ":
        return Rationale(dimension="VQ", reasoning=reasoning)
    raw_regions = obj.get("edit_region")
    if not isinstance(raw_regions, list):
        raise RationaleError("missing_regions", "IF: 'edit_region' must be a list")
    regions = tuple(_parse_region(r) for r in raw_regions)
    ids = [r.id for r in regions]
    if len(set(ids)) != len(ids):
        raise RationaleError("bad_region", f"IF: region ids {ids} are not distinct")
    if max_regions is not None and any(i >= max_regions for i in ids):
        raise RationaleError("too_many_regions", f"IF: region ids {ids} exceed the {max_regions} region tags")
    unknown = sorted(cited_region_ids(reasoning) - set(ids))
    if unknown:
        raise RationaleError("unknown_bbox_ref", f"IF: reasoning cites <|bbox_k|> for unlisted region ids {unknown}")
    if GLOBAL_TAG not in reasoning:
        raise RationaleError("missing_global", f"IF: reasoning lacks the {GLOBAL_TAG} tag")
    return Rationale(dimension="IF", reasoning=reasoning, regions=regions)


def parse_rationale(text: str, dimension: RationaleDimension, max_regions: int | None = None) -> Rationale:
    """Parse and validate one dimension's rationale text (JSON, optionally code-fenced)."""
    return validate_rationale(extract_json_object(text), dimension, max_regions)


def parse_joint_rationale(text: str, max_regions: int | None = None) -> dict[str, Rationale]:
    """Parse the joint rationale; returns ``{"IF": ..., "VQ": ...}`` for the keys present (at least one)."""
    obj = extract_json_object(text)
    unknown = sorted(set(obj) - set(JOINT_KEYS.values()))
    if unknown:
        raise RationaleError("invalid_json", f"joint rationale has unknown keys {unknown}")
    out = {dim: validate_rationale(obj[key], dim, max_regions) for dim, key in JOINT_KEYS.items() if key in obj}  # type: ignore[arg-type]
    if not out:
        raise RationaleError("invalid_json", f"joint rationale has none of {sorted(JOINT_KEYS.values())}")
    return out


def format_rationale(rationale: Rationale) -> str:
    """Compact JSON text of one dimension's rationale (what follows ``<|reward|>`` in a per-dimension row)."""
    return json.dumps(rationale.to_json(), ensure_ascii=False, separators=(", ", ": "))


def format_joint_rationale(rationales: Mapping[str, Rationale]) -> str:
    """Compact joint JSON text (IF first), the form that follows ``<|reward|>`` in training."""
    ordered = {JOINT_KEYS[d]: rationales[d].to_json() for d in JOINT_KEYS if d in rationales}
    return json.dumps(ordered, ensure_ascii=False, separators=(", ", ": "))
