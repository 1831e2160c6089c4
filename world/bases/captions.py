"""The backbone base's vision-language texts: describe a scene, say what changed, and (optionally) match an
instruction to an edit; for the second pretraining phase the same questions worded in several ways.

Describe and what-changed texts are functions of :class:`world.scene.Scene` objects and nothing else. A
what-changed text compares two scenes object by object (an object is its colour and kind), so it is the same
whichever edit produced the second scene. Edit-instruction matching (``match_fraction``) is image-text matching
(BLIP's ITM) for edits: does this instruction say what turned the first image into the second? Its positives are a
task's exact edit with its own instruction; its negatives the unchanged source with that instruction, or the exact
edit with another task's instruction. No edit type, oracle score, preference pair, corrupted edit or teacher
rationale is read: the JRM learns those later, from its own data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from world.scene import KINDS, PALETTE, PLACES, Scene, Shape
from world.tasks import EditTask

DESCRIBE_PROMPT = "Describe the image."
CHANGE_PROMPT = "What changed from the first image to the second?"
NOTHING_CHANGED = "nothing changed."
MATCH_PROMPT = "Instruction: {instruction}. Does it say what turned the first image into the second?"
MATCH_ANSWERS = {True: "yes.", False: "no."}
#: Wordings of the describe and what-changed questions (``paraphrase``; the first of each is the one used without).
DESCRIBE_PROMPTS = (DESCRIBE_PROMPT, "What is in this image?", "List the objects in the image and the background.")
CHANGE_PROMPTS = (
    CHANGE_PROMPT,
    "Describe the difference between the two images.",
    "How was the first image edited to get the second?",
    "Compare the two images. What is different in the second one?",
)
#: A question after an edit instruction (``context_fraction``), as the JRM's prompts put one before theirs.
CONTEXT_TEMPLATE = 'Edit: "{instruction}" {prompt}'


def _in_grid_order(shapes: Sequence[Shape]) -> list[Shape]:
    order = list(PLACES)
    return sorted(shapes, key=lambda s: order.index(s.place))


def describe_shape(shape: Shape) -> str:
    """``"a large red circle at the top left"``."""
    return f"a {shape.size} {shape.colour} {shape.kind} at the {shape.place}"


def describe_scene(scene: Scene) -> str:
    """``"a gray background with a large red circle at the top left, a small blue square at the center."``
    (objects in grid order: rows top to bottom, each left to right)."""
    if not scene.shapes:
        return f"a {scene.background} background with no objects."
    return f"a {scene.background} background with " + ", ".join(describe_shape(s) for s in _in_grid_order(scene.shapes)) + "."


def describe_change(before: Scene, after: Scene) -> str:
    """What turns ``before`` into ``after``, one clause per change (``"nothing changed."`` if none).

    Objects are matched by (colour, kind). An unmatched object of ``before`` and one of ``after`` with the same
    kind, size and place are one recoloured object; other unmatched objects were removed or added.
    """
    clauses: list[str] = []
    if before.background != after.background:
        clauses.append(f"the background changed from {before.background} to {after.background}")
    after_by_key = {(s.colour, s.kind): s for s in after.shapes}
    before_keys = {(s.colour, s.kind) for s in before.shapes}
    added = [s for s in after.shapes if (s.colour, s.kind) not in before_keys]
    for old in _in_grid_order(before.shapes):
        new = after_by_key.get((old.colour, old.kind))
        if new is not None:
            if new.place != old.place:
                clauses.append(f"the {old.name} moved from the {old.place} to the {new.place}")
            if new.size != old.size:
                clauses.append(f"the {old.name} became {'larger' if new.size == 'large' else 'smaller'}")
            continue
        same = [s for s in added if (s.kind, s.size, s.place) == (old.kind, old.size, old.place)]
        if same:
            added.remove(same[0])
            clauses.append(f"the {old.name} turned {same[0].colour}")
        else:
            clauses.append(f"the {old.name} at the {old.place} was removed")
    clauses.extend(f"{describe_shape(s)} was added" for s in _in_grid_order(added))
    return "; ".join(clauses) + "." if clauses else NOTHING_CHANGED


@dataclass(frozen=True)
class CaptionExample:
    """One training example: the scenes of its images in order (1 or 2), the user's prompt and the answer."""

    scenes: tuple[Scene, ...]
    prompt: str
    answer: str


def describe_example(scene: Scene) -> CaptionExample:
    return CaptionExample((scene,), DESCRIBE_PROMPT, describe_scene(scene))


def change_example(before: Scene, after: Scene) -> CaptionExample:
    return CaptionExample((before, after), CHANGE_PROMPT, describe_change(before, after))


def match_example(before: Scene, after: Scene, instruction: str, matches: bool) -> CaptionExample:
    return CaptionExample((before, after), MATCH_PROMPT.format(instruction=instruction), MATCH_ANSWERS[matches])


#: The one-word names :func:`content_words` keeps: colours, shape kinds and "background".
_CONTENT_NAMES = frozenset({*PALETTE, *KINDS, "background"})


def content_words(instruction: str) -> frozenset[str]:
    """The colours, shape kinds, places and "background" an instruction names: two instructions that name the
    same ones may be paraphrases of one edit ("make the background white", "change the background to white")."""
    words = instruction.lower().replace(".", " ").split()
    places = {place for place in PLACES if f" {place} " in f" {instruction.lower()} "}
    return frozenset({w for w in words if w in _CONTENT_NAMES} | places)


def match_examples(
    tasks: Sequence[EditTask], words: Sequence[frozenset[str]], index: int, rng: np.random.Generator
) -> list[CaptionExample]:
    """Edit-instruction matching for ``tasks[index]``: its exact edit with its instruction ("yes"), and one
    negative ("no"): the unchanged source with that instruction, or the edit with another task's instruction
    that names other colours, kinds, places (``words[i]`` is :func:`content_words` of ``tasks[i]``), each half of
    the time (the source when no other instruction qualifies)."""
    task = tasks[index]
    examples = [match_example(task.source, task.target, task.instruction, True)]
    others = [t.instruction for t, w in zip(tasks, words) if w != words[index]]
    if others and rng.random() < 0.5:
        examples.append(match_example(task.source, task.target, others[int(rng.integers(len(others)))], False))
    else:
        examples.append(match_example(task.source, task.source, task.instruction, False))
    return examples


def vary_prompts(
    examples: Sequence[CaptionExample], instructions: Sequence[str], paraphrase: bool, context_fraction: float,
    rng: np.random.Generator,
) -> list[CaptionExample]:
    """Describe and what-changed examples with their question reworded (``paraphrase``: one of
    :data:`DESCRIBE_PROMPTS` / :data:`CHANGE_PROMPTS` at random) and, with probability ``context_fraction``, put
    after a random one of ``instructions`` (:data:`CONTEXT_TEMPLATE`); matching examples are kept as they are.

    Why: a tiny backbone pretrained on one fixed wording learns to compare the two images only at that exact
    prompt (a linear probe on its last state separates an edit from the unchanged source 0.99 after its own
    question, 0.56 after the JRM's compact prompt; issue 13). The instruction put before the question is another
    task's, so the answer can never be copied from it and has to come from the images.
    """
    varied: list[CaptionExample] = []
    for example in examples:
        if example.prompt not in (DESCRIBE_PROMPT, CHANGE_PROMPT):
            varied.append(example)
            continue
        pool = CHANGE_PROMPTS if example.prompt == CHANGE_PROMPT else DESCRIBE_PROMPTS
        prompt = pool[int(rng.integers(len(pool)))] if paraphrase else example.prompt
        if instructions and rng.random() < context_fraction:
            prompt = CONTEXT_TEMPLATE.format(instruction=instructions[int(rng.integers(len(instructions)))], prompt=prompt)
        varied.append(CaptionExample(example.scenes, prompt, example.answer))
    return varied


def caption_examples(
    tasks: Sequence[EditTask], no_change_fraction: float, seed: int, match_fraction: float = 0.0
) -> list[CaptionExample]:
    """Per task: describe its source and its target scene, and what changed from one to the other (in a
    random direction); with probability ``no_change_fraction`` one more example shows a scene twice; with
    probability ``match_fraction`` its two edit-instruction matching examples (:func:`match_examples`).

    Only the tasks' scenes and, for matching, their instructions are read. Deterministic in ``seed`` and the
    tasks; with ``match_fraction`` 0 the examples are those of a build without matching.
    """
    rng = np.random.default_rng(seed)
    match_rng = np.random.default_rng([seed, 1])
    words = [content_words(t.instruction) for t in tasks] if match_fraction > 0 else []
    examples: list[CaptionExample] = []
    for index, task in enumerate(tasks):
        source, target = task.source, task.target
        examples.append(describe_example(source))
        examples.append(describe_example(target))
        examples.append(change_example(source, target) if rng.random() < 0.5 else change_example(target, source))
        if rng.random() < no_change_fraction:
            scene = source if rng.random() < 0.5 else target
            examples.append(change_example(scene, scene))
        if match_fraction > 0 and match_rng.random() < match_fraction:
            examples.extend(match_examples(tasks, words, index, match_rng))
    return examples


def comparison_examples(
    tasks: Sequence[EditTask], seed: int, describe_fraction: float, context_fraction: float
) -> list[CaptionExample]:
    """The prompt-variety phase's examples: per task, what changed in both directions and one scene shown twice
    ("nothing changed"), with probability ``describe_fraction`` a description of one of its scenes; every
    question reworded and, with probability ``context_fraction``, put after another task's instruction
    (:func:`vary_prompts`). Reads the tasks' scenes and instructions only; deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 3])
    examples: list[CaptionExample] = []
    for task in tasks:
        source, target = task.source, task.target
        examples.append(change_example(source, target))
        examples.append(change_example(target, source))
        shown_twice = source if rng.random() < 0.5 else target
        examples.append(change_example(shown_twice, shown_twice))
        if rng.random() < describe_fraction:
            examples.append(describe_example(source if rng.random() < 0.5 else target))
    return vary_prompts(examples, [t.instruction for t in tasks], True, context_fraction, rng)
