"""A rule-based rationale teacher: answers the real annotation prompts from the oracle's facts.

It implements :class:`reward.jrm.teachers.base.Teacher`, so JRM's language supervision path (prompts, answer
validation, resumable output) runs for real on the toy world. The facts come from the request's metadata:
either the facts themselves (a dict with ``regions``) or the pair record's ``oracle_facts`` column, keyed
``path1`` / ``path2`` and selected by the side named at the end of the request's ``record_id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reward.jrm.teachers.base import AnnotationRequest
from world.pairs import FACTS_COLUMN

#: A region counts as done / kept at this fraction of its pixels (the oracle's IF-4 bar).
GOOD_FRACTION = 0.85
PARTIAL_FRACTION = 0.3

_IF_GLOBAL = {
    4: "Everything the instruction asked for was done and nothing else changed, so it is followed fully.",
    3: "The asked change is mostly there, with minor flaws or small side effects.",
    2: "The instruction was only partly carried out, or carried out together with clear unwanted changes.",
    1: "The instruction was not carried out: the asked change is missing or contradicted.",
}
_VQ_GLOBAL = {
    4: "The image is clean: flat colours, crisp shape edges, no noise, blur or artifacts.",
    3: "The image is mostly clean with a few imperfect pixels.",
    2: "The image shows noticeable degradation.",
    1: "The image is badly degraded.",
}


def facts_for(request: AnnotationRequest) -> dict[str, Any]:
    """The oracle facts of the edit a request is about; raises naming the record when there are none."""
    meta = request.metadata
    if "regions" in meta:
        return meta
    by_side = meta.get(FACTS_COLUMN)
    if isinstance(by_side, dict):
        side = request.record_id.rsplit("/", 1)[-1]
        aliases = {"preferred": "path1", "rejected": "path2"}
        side = aliases.get(side, side)
        if side in by_side:
            return by_side[side]
        raise ValueError(f"record {request.record_id!r}: cannot tell which side ({sorted(by_side)}) the request is about")
    raise ValueError(f"record {request.record_id!r}: request metadata has no oracle facts (key {FACTS_COLUMN!r})")


def _bbox_1000(bbox: Sequence[int], size: int) -> list[int]:
    """Pixel [ymin, xmin, ymax, xmax) -> integer 0-1000 coordinates with min < max."""
    ymin, xmin, ymax, xmax = (round(1000 * v / size) for v in bbox)
    return [min(ymin, 999), min(xmin, 999), max(ymax, ymin + 1), max(xmax, xmin + 1)]


def _edit_sentence(region: dict[str, Any], edit_type: str) -> str:
    label, observed = region["label"], region["observed"]
    if region["done"] >= GOOD_FRACTION:
        done = {
            "recolour": f"the {label} now has the asked colour, {observed}",
            "remove": f"the {label} is gone and the spot shows the {observed} background",
            "add": f"a {label} now appears in the asked place",
            "move": f"the {label} is where it should be",
            "background": f"the background is now {observed} as asked",
            "resize": f"the {label} now has the asked size",
        }
        return done.get(edit_type, f"the {label} was changed as asked") + "."
    if region["done"] >= PARTIAL_FRACTION:
        return f"the {label} was only partly changed as asked; much of it still looks wrong."
    if region["changed"] >= 0.5:
        return f"the {label} was changed, but not as asked: it mostly shows {observed}."
    return f"the {label} was left as it was, although the instruction asks to change it."


def instruction_following_answer(facts: dict[str, Any], score: int) -> str:
    """IF rationale JSON: the edit regions and any altered context region, each cited, then the verdict."""
    size = int(facts["size"])
    cited = [r for r in facts["regions"] if r["role"] == "edit" or r["preserved"] < GOOD_FRACTION]
    regions, sentences = [], []
    for k, region in enumerate(cited):
        regions.append({"id": k, "label": region["label"], "bbox_2d": _bbox_1000(region["bbox"], size)})
        if region["role"] == "edit":
            text = _edit_sentence(region, facts["edit_type"])
        else:
            text = f"the {region['label']} should have stayed unchanged, but it was altered (it mostly shows {region['observed']})."
        sentences.append(f"<|bbox_{k}|> {text[0].upper()}{text[1:]}")
    kept = [r["label"] for r in facts["regions"] if r["role"] == "context" and r["preserved"] >= GOOD_FRACTION]
    tail = f" The rest ({', '.join(kept)}) is unchanged." if kept else ""
    reasoning = " ".join(sentences) + f" <|global|> {_IF_GLOBAL[score]}{tail}"
    return json.dumps({"edit_region": regions, "reasoning": reasoning})


def visual_quality_answer(facts: dict[str, Any], score: int) -> str:
    """VQ rationale JSON from the defect statistics."""
    fraction = float(facts["defect_fraction"])
    if fraction == 0.0:
        detail = "Every pixel has a clean flat colour."
    elif facts["edge_defect_share"] >= 0.7:
        detail = f"About {100 * fraction:.0f}% of the pixels are off-colour, mostly along shape edges, so the edges look blurred."
    else:
        detail = f"About {100 * fraction:.0f}% of the pixels are off-colour and spread across flat areas, like noise or blotchy artifacts."
    return json.dumps({"reasoning": f"{_VQ_GLOBAL[score]} {detail}"})


class RuleTeacher:
    """Answers IF and VQ annotation requests from the oracle facts in their metadata (deterministic)."""

    def generate(self, requests: Sequence[AnnotationRequest]) -> list[str]:
        answers = []
        for request in requests:
            facts = facts_for(request)
            score = int(request.score)
            if request.dimension == "IF":
                answers.append(instruction_following_answer(facts, score))
            elif request.dimension == "VQ":
                answers.append(visual_quality_answer(facts, score))
            else:
                raise ValueError(f"record {request.record_id!r}: unknown dimension {request.dimension!r}")
        return answers
