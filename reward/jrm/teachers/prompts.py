"""Teacher prompts for JRM's language supervision (after the JRM paper's appendix A; our own wording).

The teacher sees the source image (first) and the edited image (second), the instruction and a score that
human annotators already assigned on a 1-4 scale; it must justify that score, never re-grade. Answers are the
JSON of DESIGN.md section 3:

- IF: ``{"edit_region": [{"id": 0, "label": "...", "bbox_2d": [ymin, xmin, ymax, xmax]}, ...],
  "reasoning": "... <|bbox_0|> ... <|global|> ..."}`` with coordinates on a 0-1000 scale of the edited image;
  ``<|bbox_k|>`` cites region k, ``<|global|>`` marks the whole-image judgement (required).
- VQ: ``{"reasoning": "..."}``.
"""

from __future__ import annotations

from reward.jrm.teachers.base import Dimension

SCORE_MEANINGS_IF = {
    1: "the instruction was not carried out, or the result contradicts it",
    2: "the instruction was only partly carried out, or with clear mistakes or unwanted changes",
    3: "the instruction was carried out with minor flaws or small unwanted changes",
    4: "the instruction was carried out fully and precisely, with nothing else changed",
}
SCORE_MEANINGS_VQ = {
    1: "severe artifacts, distortions or an implausible image",
    2: "noticeable artifacts, blur, seams or unnatural regions",
    3: "good quality with minor imperfections",
    4: "clean, natural, artifact-free and consistent with the source",
}

_IF_TEMPLATE = """You are an expert evaluator of instruction-based image editing.
The first image is the SOURCE. The second image is the EDITED result of applying this instruction:
"{instruction}"

Human experts rated how well the edit follows the instruction at {score} on a 1-4 scale:
{scale}
Write the expert rationale that justifies exactly this score (do not change it).

1. Locate the regions the instruction concerns or that changed, in the EDITED image. Give each one an id
   (0, 1, 2, ...), a short label and a box [ymin, xmin, ymax, xmax] with integer coordinates on a 0-1000 scale
   (ymin < ymax, xmin < xmax).
2. Reason region by region, citing a region with the tag <|bbox_k|> where k is its id, comparing against the
   source image; then give the whole-image judgement after the tag <|global|>.

Answer with JSON only, no other text:
{{"edit_region": [{{"id": 0, "label": "...", "bbox_2d": [ymin, xmin, ymax, xmax]}}], "reasoning": "<|bbox_0|> ... <|global|> ..."}}"""

_VQ_TEMPLATE = """You are an expert evaluator of image quality in image editing.
The first image is the SOURCE. The second image is the EDITED result of applying this instruction:
"{instruction}"

Human experts rated the visual quality of the edited image at {score} on a 1-4 scale:
{scale}
Write the expert rationale that justifies exactly this score (do not change it): judge artifacts, blur,
distortions, lighting and texture consistency, and how naturally the edited content blends with the rest.

Answer with JSON only, no other text:
{{"reasoning": "..."}}"""


def _scale_text(meanings: dict[int, str]) -> str:
    return "\n".join(f"  {k} = {v}" for k, v in sorted(meanings.items()))


def check_score(score: int) -> int:
    """The pre-assigned score as an int in 1-4 (a float must already be integral)."""
    if isinstance(score, bool) or int(score) != score or not 1 <= int(score) <= 4:
        raise ValueError(f"teacher prompts take an integer score in 1-4, got {score!r}")
    return int(score)


def build_teacher_prompt(dimension: Dimension, instruction: str, score: int) -> str:
    """The full teacher prompt for one dimension ("IF" or "VQ"), instruction and pre-assigned 1-4 score."""
    score = check_score(score)
    if dimension == "IF":
        return _IF_TEMPLATE.format(instruction=instruction, score=score, scale=_scale_text(SCORE_MEANINGS_IF))
    if dimension == "VQ":
        return _VQ_TEMPLATE.format(instruction=instruction, score=score, scale=_scale_text(SCORE_MEANINGS_VQ))
    raise ValueError(f"unknown rationale dimension {dimension!r} (expected 'IF' or 'VQ')")
