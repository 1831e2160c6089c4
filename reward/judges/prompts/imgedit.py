"""ImgEdit-Bench (basic) judge prompts: one rubric per edit type, three 1-5 criteria each.

Protocol facts (PKU-YuanGroup/ImgEdit, Benchmark/Basic): nine edit types (add, remove, replace, adjust,
style, action, extract, background, compose); the judge sees the prompt, then the original and the edited
image; it answers with a brief reasoning line and three ``<Criterion>: <1-5>`` lines; the item score is the
mean of the three. The release ships its exact rubric texts as ``prompts.json`` (type -> text with an
``<edit_prompt>`` slot); :func:`load_imgedit_prompts` reads that file so that numbers are comparable with
published ones. :func:`default_imgedit_prompts` is this project's own rendition of the same rubrics, used
when the file is not given.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reward.judges.parsing import ParsingMode, ScoreFormat

IMGEDIT_EDIT_TYPES: tuple[str, ...] = (
    "add", "remove", "replace", "adjust", "style", "action", "extract", "background", "compose",
)
EDIT_PROMPT_SLOT = "<edit_prompt>"
IMGEDIT_FORMAT = ScoreFormat(style="labelled_lines", num_scores=3, low=1, high=5)
#: ImgEdit-Bench's official judge model (``Benchmark/Basic/basic_bench.py`` of the release).
IMGEDIT_OFFICIAL_JUDGE_MODEL = "gpt-4o"


def imgedit_format(parsing: ParsingMode = "strict") -> ScoreFormat:
    """ImgEdit's answer format read ``strict`` (three labelled 1-5 lines) or as the ``official`` script reads it."""
    return dataclasses.replace(IMGEDIT_FORMAT, parsing=parsing)

# edit type -> (what is graded, [(criterion, five anchors from 1 to 5)] x 3)
_RUBRICS: dict[str, tuple[str, list[tuple[str, tuple[str, str, str, str, str]]]]] = {
    "add": ("object addition edits", [
        ("Prompt Compliance", ("Nothing added, or the wrong object added.", "Right class but wrong attributes, count or place.", "Mostly right object and place with clear inaccuracies.", "Correct object, attributes and place with small inaccuracies.", "Exactly the requested object, attributes, count and place.")),
        ("Visual Naturalness", ("Added object looks pasted, heavy artefacts.", "Obvious seams, wrong scale or lighting.", "Acceptable but noticeable disharmony.", "Blends well; flaws only on close look.", "Indistinguishable from a real part of the scene.")),
        ("Physical & Detail Coherence", ("Floating, interpenetrating, background destroyed.", "Missing shadows or contact; background visibly changed.", "Largely plausible; small physical flaws; minor background change.", "Believable shadows and reflections; original details kept.", "Physically flawless; background untouched.")),
    ]),
    "remove": ("object removal edits", [
        ("Prompt Compliance", ("Target not removed, or the wrong object removed.", "Target partly removed or other objects removed too.", "Target mostly removed with visible remnants.", "Target removed; tiny remnants or collateral changes.", "Exactly and only the target removed.")),
        ("Visual Naturalness", ("Large smears, holes or blur where the object was.", "Clear inpainting marks or texture breaks.", "Acceptable fill with noticeable inconsistencies.", "Clean fill; traces only when zoomed.", "No trace of the edit.")),
        ("Physical & Detail Integrity", ("Shadows or reflections of the removed object remain; scene warped.", "Lighting or perspective of the fill clearly wrong.", "Mostly coherent; small physical flaws.", "Coherent light, texture and perspective; details kept.", "Physically flawless reconstruction; rest untouched.")),
    ]),
    "replace": ("object replacement edits", [
        ("Prompt Compliance", ("Target not replaced, or the wrong object changed.", "Replacement of the wrong class or only partial.", "Right replacement with clear attribute or placement errors.", "Correct replacement; small inaccuracies.", "Exactly the requested replacement, in place, nothing else changed.")),
        ("Visual Naturalness", ("New object looks pasted, heavy artefacts.", "Obvious seams, wrong scale or tone.", "Acceptable but noticeable disharmony.", "Blends well; flaws only on close look.", "Indistinguishable from a real part of the scene.")),
        ("Physical & Detail Integrity", ("Floating or interpenetrating; background destroyed.", "Missing shadows or contact; background visibly changed.", "Largely plausible; minor flaws.", "Believable interaction with the scene; details kept.", "Physically flawless; background untouched.")),
    ]),
    "adjust": ("attribute alteration edits", [
        ("Prompt Compliance", ("Target not adjusted, wrong object touched, or geometry changed.", "Right object but wrong attribute value or only partly edited.", "Mostly correct with large colour, brightness or texture error.", "All requested attributes changed; small inaccuracy.", "Exactly and only the requested attributes changed; shape intact.")),
        ("Visual Seamlessness", ("Massive colour spill, mosaics or heavy noise.", "Clear smears or bleeding on edges; abrupt tone shifts.", "Palette fine but local tone or grain conflicts.", "Unified style; slight edge artefacts when zoomed.", "No detectable edit traces.")),
        ("Physical & Detail Fidelity", ("Severe light or perspective mismatch; background warped.", "Missing highlights or shadows; background discoloured.", "Largely correct; minor acceptable flaws.", "Material interacts believably with the scene; details kept.", "High physical realism throughout.")),
    ]),
    "style": ("style transfer edits", [
        ("Style Fidelity", ("Target style absent or clearly wrong.", "Style in a few areas only or mixed with others.", "Key traits present but patchy.", "Style across almost the whole image.", "Full, faithful transfer over the entire image.")),
        ("Content Preservation", ("Layout lost; scene barely recognisable.", "Main subject recognisable but key parts wrong or missing.", "Structure correct; some local warping.", "Nearly all geometry intact.", "All objects and spatial relations kept.")),
        ("Rendering Quality", ("Heavy noise, banding or blur; unusable.", "Visible seams, aliasing or colour drift.", "Moderate quality with local blur or noise.", "Sharp and coherent; tiny artefacts when zoomed.", "No artefacts; fully natural strokes and transitions.")),
    ]),
    "action": ("action or pose change edits", [
        ("Action Fidelity", ("Action unchanged or wrong.", "Partial or ambiguous action.", "Requested action recognisable with clear errors.", "Correct action; small pose inaccuracies.", "Exactly the requested action, clearly conveyed.")),
        ("Identity Preservation", ("Subject replaced or unrecognisable.", "Identity clearly altered.", "Identity mostly kept with noticeable changes.", "Identity kept; minor differences.", "Same subject, clothing and scene, unmistakably.")),
        ("Visual & Anatomical Coherence", ("Broken anatomy or heavy artefacts.", "Visible distortions of limbs or body.", "Plausible with minor joint or shading issues.", "Clean render; flaws only on close look.", "Flawless anatomy, lighting and texture.")),
    ]),
    "extract": ("object extraction (cut-out on a white background) edits", [
        ("Object Identity", ("Wrong object or several objects extracted.", "Correct class but only part of it, or intrusions.", "Largely correct; small pieces missing or extra.", "Full object; tiny mis-crop.", "Exactly the requested object, complete, same instance.")),
        ("Mask Precision", ("Large background remnants or non-white backdrop.", "Jagged edges, colour fringes, grey patches.", "Acceptable mask; soft edges or faint halo.", "Clean edges; uniform white background.", "Crisp contour, no halo, pure white background.")),
        ("Visual Quality", ("Severe blur, deformation or missing parts.", "Noise, colour shift or warping.", "Intact with minor softness.", "Sharp detail, accurate colours.", "Pristine, no artefacts.")),
    ]),
    "background": ("background change edits", [
        ("Instruction Compliance", ("Background unchanged or wrong.", "Partly changed or wrong kind of background.", "Requested background with clear errors; foreground touched.", "Correct background; small inaccuracies.", "Exactly the requested background; foreground intact.")),
        ("Visual Seamlessness", ("Cut-out edges, halos or heavy artefacts.", "Obvious seams or mismatched resolution.", "Acceptable with noticeable edge or tone issues.", "Smooth blend; flaws only when zoomed.", "No visible boundary between subject and background.")),
        ("Physical Consistency", ("Lighting, scale and perspective clearly mismatched.", "Wrong shadows or depth.", "Mostly consistent; shadow length or colour off.", "Light, scale and depth well matched.", "Physically flawless integration.")),
    ]),
    "compose": ("multi-step (composed) edits", [
        ("Instruction Compliance", ("None of the requested changes made.", "Only a minority of the changes made.", "Most changes made with clear errors.", "All changes made; small inaccuracies.", "Every requested change made exactly, nothing else.")),
        ("Visual Naturalness", ("Pasted look, heavy artefacts.", "Obvious seams or disharmony.", "Acceptable with noticeable issues.", "Blends well; flaws only on close look.", "Indistinguishable from a real photo of the scene.")),
        ("Physical Consistency & Fine Detail", ("Severe physical errors; background destroyed.", "Missing shadows or reflections; details lost.", "Largely plausible; minor flaws.", "Coherent light and material; details kept.", "Physically flawless; fine details intact.")),
    ]),
}


def _render(kind: str, criteria: list[tuple[str, tuple[str, str, str, str, str]]], edit_type: str) -> str:
    lines = [
        f"You are a data rater specialising in grading {kind}. You will be given two images (before and after editing) "
        "and the editing instruction. Evaluate the edit on a 5-point scale from three perspectives:",
        "",
    ]
    for name, anchors in criteria:
        lines.append(name)
        lines.extend(f"{score}  {text}" for score, text in enumerate(anchors, start=1))
        lines.append("")
    lines.append("The second and third scores must not be higher than the first score.")
    lines.append("")
    lines.append("Answer in exactly this format:")
    lines.append("Brief reasoning: a short explanation of the scores, at most 20 words.")
    lines.extend(f"{name}: a number from 1 to 5." for name, _ in criteria)
    image_line = "Below is the original image, then the extracted object image:" if edit_type == "extract" else (
        "Below are the images before and after editing:"
    )
    lines.append(f"Editing instruction: {EDIT_PROMPT_SLOT}.")
    lines.append("")
    lines.append(image_line)
    return "\n".join(lines)


def default_imgedit_prompts() -> dict[str, str]:
    """This project's rubric text per edit type (each with an ``<edit_prompt>`` slot)."""
    return {t: _render(kind, criteria, t) for t, (kind, criteria) in _RUBRICS.items()}


def load_imgedit_prompts(path: str | Path) -> dict[str, str]:
    """Read ImgEdit's ``prompts.json`` (edit type -> rubric text with ``<edit_prompt>``), validated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImgEdit judge prompts not found: expected {path} (Benchmark/Basic/prompts.json of the release)")
    try:
        prompts = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(prompts, dict):
        raise ValueError(f"{path}: expected a JSON object mapping edit type to prompt text")
    missing = [t for t in IMGEDIT_EDIT_TYPES if t not in prompts]
    if missing:
        raise ValueError(f"{path}: no prompt for edit type(s) {missing}")
    for t in IMGEDIT_EDIT_TYPES:
        if not isinstance(prompts[t], str) or EDIT_PROMPT_SLOT not in prompts[t]:
            raise ValueError(f"{path}: prompt for {t!r} must be text containing {EDIT_PROMPT_SLOT!r}")
    return {t: prompts[t] for t in IMGEDIT_EDIT_TYPES}


def imgedit_prompt(template: str, instruction: str) -> str:
    """Fill the instruction into a rubric template."""
    return template.replace(EDIT_PROMPT_SLOT, instruction)
