"""JRM's inference-side prompts: the evaluation prompt (scoring, training, explaining) and per-dimension prompts.

The sequence is a user turn ``[source image, edited image, text]`` followed by the assistant turn, which starts
with ``<|reward|>``; in training the rationale follows it. The paper's appendix-C wording was not available to
us; these prompts are our own, faithful to its description: the model judges instruction following (with
grounded regions on a 0-1000 scale, ``<|bbox_k|>`` citations and a ``<|global|>`` judgement) and visual
quality, and its answer is the joint JSON of :mod:`reward.jrm.rationale`. The text of the evaluation prompt
is part of the model's training distribution, so scoring and explaining must use the same prompt.
"""

from __future__ import annotations

from reward.jrm.rationale import RationaleDimension

EVALUATION_PROMPT = """You are an expert evaluator of instruction-based image editing.
The first image is the SOURCE image. The second image is the EDITED image, produced by applying this instruction:
"{instruction}"

Evaluate the edit on two dimensions, each on a 1-4 scale (1 = very poor, 4 = very good):
- Instruction following: is the instruction carried out accurately and completely, with nothing else changed?
  Locate the relevant regions of the edited image as boxes [ymin, xmin, ymax, xmax] on a 0-1000 scale, reason
  about each region citing it as <|bbox_k|>, then give the whole-image judgement after <|global|>.
- Visual quality: is the edited image natural and free of artifacts, blur, distortions and seams, and
  consistent with the source in lighting and texture?

Answer with JSON only:
{{"instruction_following": {{"edit_region": [{{"id": 0, "label": "...", "bbox_2d": [ymin, xmin, ymax, xmax]}}], "reasoning": "<|bbox_0|> ... <|global|> ..."}}, "visual_quality": {{"reasoning": "..."}}}}"""

_IF_PROMPT = """You are an expert evaluator of instruction-based image editing.
The first image is the SOURCE image. The second image is the EDITED image, produced by applying this instruction:
"{instruction}"

Evaluate instruction following on a 1-4 scale: is the instruction carried out accurately and completely, with
nothing else changed? Locate the relevant regions of the edited image as boxes [ymin, xmin, ymax, xmax] on a
0-1000 scale, reason about each region citing it as <|bbox_k|>, then give the whole-image judgement after
<|global|>.

Answer with JSON only:
{{"edit_region": [{{"id": 0, "label": "...", "bbox_2d": [ymin, xmin, ymax, xmax]}}], "reasoning": "<|bbox_0|> ... <|global|> ..."}}"""

_VQ_PROMPT = """You are an expert evaluator of image quality in image editing.
The first image is the SOURCE image. The second image is the EDITED image, produced by applying this instruction:
"{instruction}"

Evaluate the visual quality of the edited image on a 1-4 scale: is it natural and free of artifacts, blur,
distortions and seams, and consistent with the source in lighting and texture?

Answer with JSON only:
{{"reasoning": "..."}}"""


#: A short scoring prompt for tiny from-scratch JRMs (toy world, tests): the full prompt's ~500 text tokens
#: swamp a tiny model's few image tokens in attention; the same answer format is still trained by the LM loss.
COMPACT_EVALUATION_PROMPT = """Edit: "{instruction}"
Judge instruction following and visual quality (1-4)."""

#: The evaluation prompts a JRM can be built with (``JRMConfig.prompt``).
EVALUATION_PROMPTS = {"full": EVALUATION_PROMPT, "compact": COMPACT_EVALUATION_PROMPT}


def evaluation_prompt(instruction: str, style: str = "full") -> str:
    """The joint evaluation prompt for one instruction (used by ``score``, training and ``explain``).

    ``style``: a key of :data:`EVALUATION_PROMPTS`; a JRM stores its own in ``jrm_config.json``.
    """
    if style not in EVALUATION_PROMPTS:
        raise ValueError(f"unknown evaluation prompt {style!r} (expected one of {sorted(EVALUATION_PROMPTS)})")
    return EVALUATION_PROMPTS[style].format(instruction=instruction)


def dimension_prompt(dimension: RationaleDimension, instruction: str) -> str:
    """A single-dimension inference prompt ("IF" or "VQ"), e.g. for generative judging baselines."""
    if dimension == "IF":
        return _IF_PROMPT.format(instruction=instruction)
    if dimension == "VQ":
        return _VQ_PROMPT.format(instruction=instruction)
    raise ValueError(f"unknown rationale dimension {dimension!r} (expected 'IF' or 'VQ')")
