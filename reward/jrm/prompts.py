"""JRM's evaluation prompts: the paper's per-dimension prompts (appendix C) and a compact prompt for tiny models.

Two prompt styles (``JRMConfig.prompt``, recorded in every checkpoint):

- ``paper`` (the default for real backbones): appendix C of the JRM paper, verbatim as printed (Markdown
  emphasis included), one prompt per dimension: C.1 instruction following, C.2 visual quality, each ending
  ``Text instruction - <instruction>``. An edit is one row per dimension (``[source image, edited image,
  the dimension's prompt]`` + ``<|reward|>``); the head reads each dimension from its own row's ``<|reward|>``
  state, and in training each row is followed by that dimension's rationale (the IF JSON
  ``{"edit_region": [...], "reasoning": "..."}`` or the VQ JSON ``{"reasoning": "..."}``, see
  :mod:`reward.jrm.rationale`).
- ``compact``: one short joint prompt for tiny from-scratch JRMs (toy world, tests): the paper's ~500 text
  tokens per row swamp a tiny model's few image tokens in attention. One row per edit; its rationale is the
  joint JSON ``{"instruction_following": ..., "visual_quality": ...}``.

The text of the prompt is part of the model's training distribution: scoring and explaining use the prompt a
checkpoint was trained with, and a checkpoint refuses to run with another (``JRM.from_pretrained``).
Note: C.1 asks for ``bbox_2d`` as ``[x1, y1, x2, y2]`` while appendix A (the rationales it is trained on)
writes ``[ymin, xmin, ymax, xmax]``; both are printed so, and the paper's text is kept as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from reward.base import INSTRUCTION_FOLLOWING, VISUAL_QUALITY
from reward.jrm.rationale import RationaleDimension

#: The slot of appendix C's prompts that the instruction fills.
TEXT_PROMPT_SLOT = "{text_prompt}"

#: Appendix C.1, "Instruction Edit Following Template", as printed.
PAPER_IF_PROMPT = """You are tasked with evaluating an edited image **in comparison with the original source image** based on **Instruction Following & Semantic Fidelity**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best. This dimension focuses on how accurately, completely, and exclusively the model executed the given text instruction.

****Inputs Provided:**

- Source Image (before editing)
- Edited Image (after applying the instruction)
- Text Instruction

****Sub-Dimensions to Evaluate:**

- **Semantic Accuracy:** Assess whether the edited content accurately captures the semantics of the instruction. The edited result should precisely match the intended meaning. For example, if the instruction is “replace apples with oranges,” the object must clearly be oranges, not other fruits.
- **Completeness of Editing:** Check whether **all parts** of the instruction are fully executed. For multi-step edits (e.g., “replace a red car with a blue bicycle”), both the color change and the object replacement must be done without omissions.
- **Exclusivity of Edit (No Over-Editing):** Ensure that only the requested parts are changed. The rest of the image (as seen in the source) should remain unaltered. For example, if the instruction only involves replacing an object, the background, lighting, and unrelated objects should not be unnecessarily modified.

****Scoring Criteria:**

- **4 (Very Good):** Perfectly accurate, complete, and exclusive execution of the instruction.
- **3 (Relatively Good):** Largely correct, but with minor omissions or slight over-editing.
- **2 (Relatively Poor):** Major misinterpretation, incomplete edits, or noticeable unintended changes.
- **1 (Very Poor):** Instruction ignored or completely wrong execution.

****IMPORTANT: Output Format**

You must provide your output in this format:

```
{"edit_region": [...], "reasoning": "..."}

```

First, identify where the editing occurred in the second image:

- If editing was successful, provide bounding boxes with labels: [{"id": 0~n, "label": "description of edited area", "bbox_2d": [x1, y1, x2, y2]}] (coordinates normalized to [0, 1000] range)
- If editing failed (images look identical), use empty list: []

In your reasoning, use special tokens to reference regions:

- `<|bbox_{id}|>` before describing each edited region (if exist)
- `<|global|>` before overall assessment

Text instruction - {text_prompt}"""

#: Appendix C.2, "Visual Quality Evaluation Template", as printed.
PAPER_VQ_PROMPT = """You are tasked with evaluating an edited image **in comparison with the original source image** based on **Visual Quality & Realism**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best. This dimension focuses on how realistic, artifact-free, and aesthetically appealing the edited image is, while remaining consistent with the source image.

****Inputs Provided:**

- Source Image (before editing)
- Edited Image (after applying the instruction)
- Text Instruction

****Sub-Dimensions to Evaluate:**

- **Plausibility & Physical Consistency:** Check whether the edit aligns with the laws of physics and the scene context. Lighting, shadows, reflections, perspective, size, and interactions with the environment should all appear natural compared to the source image.
- **Artifact-Free Quality:** Look for technical flaws such as blur, distortions, pixel misalignment, unnatural textures, or seams around edited regions. High-quality results should be free from such visible artifacts.
- **Aesthetic Quality:** Evaluate the overall harmony and visual appeal. The image should look natural, balanced, and pleasant. Colors, composition, and atmosphere should enhance the image rather than degrade it.

****Scoring Criteria:**

- **4 (Very Good):** Perfectly realistic, artifact-free, seamless, and aesthetically pleasing.
- **3 (Relatively Good):** Mostly realistic and clean, with only minor flaws that do not significantly distract.
- **2 (Relatively Poor):** Noticeable physical inconsistencies or visible artifacts that make the edit unnatural.
- **1 (Very Poor):** Severe artifacts, incoherent composition, or visually unusable result.

Text instruction - {text_prompt}"""

#: A short scoring prompt for tiny from-scratch JRMs (toy world, tests); one joint row per edit.
COMPACT_EVALUATION_PROMPT = """Edit: "{instruction}"
Judge instruction following and visual quality (1-4)."""

PAPER, COMPACT = "paper", "compact"
#: The prompt styles a JRM can be built with (``JRMConfig.prompt``).
PROMPT_STYLES: tuple[str, ...] = (PAPER, COMPACT)
#: Where a newly added ``<|reward|>`` embedding starts, i.e. which state the head first reads after the prompt
#: (``JRMConfig.reward_token_init``): the embeddings' mean, or a copy of the answer-opening token.
REWARD_TOKEN_INITS: tuple[str, ...] = ("mean", "answer_start")
#: Head dimension -> its appendix-C prompt (``paper`` style).
PAPER_DIMENSION_PROMPTS: dict[str, str] = {INSTRUCTION_FOLLOWING: PAPER_IF_PROMPT, VISUAL_QUALITY: PAPER_VQ_PROMPT}
#: Head dimension -> the rationale dimension its row explains (``paper`` style).
RATIONALE_DIMENSIONS: dict[str, RationaleDimension] = {INSTRUCTION_FOLLOWING: "IF", VISUAL_QUALITY: "VQ"}


def check_prompt_style(style: str, dimensions: Sequence[str]) -> None:
    """Raise ValueError unless ``style`` is known and (``paper``) every head dimension has an appendix-C prompt."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown JRM prompt {style!r} (expected one of {list(PROMPT_STYLES)})")
    missing = [d for d in dimensions if style == PAPER and d not in PAPER_DIMENSION_PROMPTS]
    if missing:
        raise ValueError(f"the paper prompts cover {sorted(PAPER_DIMENSION_PROMPTS)}, not the dimension(s) {missing}")


def paper_prompt(dimension: str, instruction: str) -> str:
    """Appendix C's prompt of one head dimension with the instruction filled in."""
    if dimension not in PAPER_DIMENSION_PROMPTS:
        raise ValueError(f"no paper prompt for dimension {dimension!r} (have {sorted(PAPER_DIMENSION_PROMPTS)})")
    return PAPER_DIMENSION_PROMPTS[dimension].replace(TEXT_PROMPT_SLOT, instruction)


def row_dimensions(style: str, dimensions: Sequence[str]) -> tuple[str | None, ...]:
    """The dimension each of an edit's rows is prompted for: ``paper`` one row per dimension (in head order),
    ``compact`` a single joint row (None)."""
    check_prompt_style(style, dimensions)
    return tuple(dimensions) if style == PAPER else (None,)


def row_prompts(style: str, dimensions: Sequence[str], instruction: str) -> list[str]:
    """The text prompt of each of an edit's rows (see :func:`row_dimensions`)."""
    return [
        COMPACT_EVALUATION_PROMPT.format(instruction=instruction) if dim is None else paper_prompt(dim, instruction)
        for dim in row_dimensions(style, dimensions)
    ]


def dimension_prompt(dimension: RationaleDimension, instruction: str) -> str:
    """A single-dimension inference prompt ("IF" or "VQ"): appendix C's, e.g. for generative judging baselines."""
    for head_dim, rationale_dim in RATIONALE_DIMENSIONS.items():
        if rationale_dim == dimension:
            return paper_prompt(head_dim, instruction)
    raise ValueError(f"unknown rationale dimension {dimension!r} (expected 'IF' or 'VQ')")
