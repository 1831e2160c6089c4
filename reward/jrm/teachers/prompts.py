"""Teacher prompts for JRM's language supervision: the paper's appendix A, or this project's own wording.

Two templates (``template``): ``paper``, appendix A of the JRM paper verbatim as printed (A.1 instruction
following, shown the source and the edited image; A.2 visual quality, shown **only the edited image**, as A.2's
inputs list it), and ``project``, this project's wording of the same task (both images for both dimensions).
The teacher gets the instruction and a score that human annotators already assigned on a 1-4 scale; it must
justify that score, never re-grade. Answers are the JSON of DESIGN.md section 3:

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


#: Appendix A.1, "Instruction Following Data Construction Template", as printed ({instruction}, {score}).
PAPER_IF_TEACHER = """You are an expert AI training data annotator and visual linguistics specialist. Your task is to generate a structured evaluation entry for an image editing pair based on a pre-assigned score.

****Inputs:****

- **Instruction:** "{instruction}"
- **Assigned Score:** {score} / 4
- **Images:** [Original Image], [Edited Image]

****Job Description:****

1. Identify Edit Regions (Grounding):

- Analyze the instruction and the changes in the images to identify **ALL distinct objects or regions** involved in the edit.
- For each distinct edit target (up to k regions), create a bounding box [ymin, xmin, ymax, xmax] (0-1000 scale) and assign it a unique ID starting from 0.
- Example: If the instruction is "Change the cat to a dog and make the grass blue", identify Region 0 (dog) and Region 1 (grass).

2. Draft the Reasoning:

- Write a detailed justification for the score of {score}.
- **Mandatory Tagging:** You **MUST** reference specific regions using their tags <|bbox_0|>, <|bbox_1|>, ..., <|bbox_k|> immediately before discussing them.
- Use <|global|> to discuss the overall context, background preservation, and composition.
- 3. **Align with Score {score}:**
 - **Score 4:** All <|bbox_k|> regions are edited perfectly. <|global|> background is perfectly preserved.
 - **Score 3:** Main goal achieved, but one specific <|bbox_k|> has a minor flaw (e.g., texture/color off), or <|global|> has slight noise.
 - **Score 2:** A major <|bbox_k|> is misinterpreted/failed, or <|global|> background is significantly corrupted/over-edited.
 - **Score 1:** Complete failure to follow instruction or image collapse.

****Output Format (JSON Only):**

```
{
  "edit_region": [
    {"id": 0, "label": "concise_label_for_first_target",
     "bbox_2d": [ymin, xmin, ymax, xmax]},
    {"id": 1, "label": "concise_label_for_second_target",
     "bbox_2d": [ymin, xmin, ymax, xmax]}
  ],
  "reasoning": "<|bbox_0|> [Detailed analysis of region 0]
               <|bbox_1|> [Detailed analysis of region 1] ...
               <|global|> [Analysis of unedited regions and
                           global consistency]"
}
```"""

#: Appendix A.2, "Visual Quality Data Construction Template", as printed ({score}).
PAPER_VQ_TEACHER = """You are an expert visual quality inspector. Your task is to generate a detailed critique of an AI-generated image based on a pre-assigned quality score.

****Inputs:****

- **Assigned Score:** {score} / 4

- **Image:** [Edited Image]

****Job Description:**

Analyze the image strictly for **Visual Quality** (Physics, Lighting, Artifacts) to justify the score of {score}.

- Do NOT discuss the text instruction.
- **Score 4 details:** Mention perfect lighting, realistic textures, and no artifacts.
- **Score 3 details:** Mention high quality but verify a specific minor flaw (e.g., “slight noise in shadow”).
- **Score 2 details:** Point out obvious flaws like “distorted face,” “blurred edges,” or “inconsistent shadows.”
- **Score 1 details:** Describe severe failure (garbage output).

****Output Format (JSON Only):**

```
{
  "reasoning": "[Detailed reasoning text describing
                the style, lighting, and any artifacts.
                Be specific about why it receives
                a score of {score}.]"
}
```"""

#: The teacher templates (``template`` of :func:`build_teacher_prompt` and of the annotation job).
TEACHER_TEMPLATES: tuple[str, ...] = ("project", "paper")


def _scale_text(meanings: dict[int, str]) -> str:
    return "\n".join(f"  {k} = {v}" for k, v in sorted(meanings.items()))


def check_score(score: int) -> int:
    """The pre-assigned score as an int in 1-4 (a float must already be integral)."""
    if isinstance(score, bool) or int(score) != score or not 1 <= int(score) <= 4:
        raise ValueError(f"teacher prompts take an integer score in 1-4, got {score!r}")
    return int(score)


def teacher_shows_source(dimension: Dimension, template: str = "project") -> bool:
    """Whether the teacher is shown the source image (before the edited one): not for the paper's VQ prompt."""
    _check_template(template)
    return not (template == "paper" and dimension == "VQ")


def _check_template(template: str) -> None:
    if template not in TEACHER_TEMPLATES:
        raise ValueError(f"unknown teacher template {template!r} (expected one of {list(TEACHER_TEMPLATES)})")


def build_teacher_prompt(dimension: Dimension, instruction: str, score: int, template: str = "project") -> str:
    """The full teacher prompt for one dimension ("IF" or "VQ"), instruction and pre-assigned 1-4 score, in
    ``template`` ("project" or "paper")."""
    score = check_score(score)
    _check_template(template)
    if template == "paper" and dimension in ("IF", "VQ"):
        text = PAPER_IF_TEACHER if dimension == "IF" else PAPER_VQ_TEACHER
        return text.replace("{instruction}", instruction).replace("{score}", str(score))
    if dimension == "IF":
        return _IF_TEMPLATE.format(instruction=instruction, score=score, scale=_scale_text(SCORE_MEANINGS_IF))
    if dimension == "VQ":
        return _VQ_TEMPLATE.format(instruction=instruction, score=score, scale=_scale_text(SCORE_MEANINGS_VQ))
    raise ValueError(f"unknown rationale dimension {dimension!r} (expected 'IF' or 'VQ')")
