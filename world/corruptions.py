"""Deliberately wrong edits of a task, for preference pairs and oracle tests.

Scene-level mistakes (wrong attribute, wrong object, over-editing, partial edit) re-render an altered target
scene; pixel-level ones (blur, noise, artifacts) damage the correct target; a no-op returns the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import ImageFilter

from world.render import from_pil, render, to_pil
from world.scene import BACKGROUND_COLOURS, SHAPE_COLOURS, Scene, Shape
from world.tasks import EditTask


@dataclass(frozen=True, eq=False)
class Candidate:
    """One edit of a task: ``kind`` names how it was made ("correct", "blur", ...); image (H, W, 3) in [0, 1]."""

    kind: str
    image: np.ndarray


def _choice(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))] if options else None


def _edited_shapes(task: EditTask) -> tuple[Shape | None, Shape | None]:
    """(source shape the instruction acts on, its counterpart in the target); None where absent."""
    before = [s for s in task.source.shapes if s not in task.target.shapes]
    after = [s for s in task.target.shapes if s not in task.source.shapes]
    return (before[0] if before else None), (after[0] if after else None)


def _other_colour(rng: np.random.Generator, scene: Scene, shape: Shape, avoid: set[str]) -> str | None:
    taken = {s.colour for s in scene.shapes if s.kind == shape.kind} | avoid
    return _choice(rng, [c for c in SHAPE_COLOURS if c not in taken])


def wrong_attribute(task: EditTask, rng: np.random.Generator) -> Scene | None:
    """The right object is edited, but with a wrong colour / place / kind / size, or the wrong operation."""
    before, after = _edited_shapes(task)
    target = task.target
    if task.edit_type == "background":
        colour = _choice(rng, [c for c in BACKGROUND_COLOURS if c not in (task.source.background, target.background)])
        return target.with_background(colour)
    if task.edit_type in ("recolour", "add") and after is not None:
        colour = _other_colour(rng, target, after, {before.colour} if before else set())
        return None if colour is None else target.replace_shape(after, after.with_(colour=colour))
    if task.edit_type == "move" and after is not None:
        place = _choice(rng, [p for p in target.free_places() if p != before.place])
        return None if place is None else target.replace_shape(after, after.with_(place=place))
    if before is not None:  # remove / resize: recolour the object instead
        colour = _other_colour(rng, task.source, before, set())
        return None if colour is None else task.source.replace_shape(before, before.with_(colour=colour))
    return None


def wrong_object(task: EditTask, rng: np.random.Generator) -> Scene | None:
    """The asked change is applied to a different object (shape edits with a second object only)."""
    before, after = _edited_shapes(task)
    if before is None or after is None and task.edit_type != "remove":
        return None
    others = [s for s in task.source.shapes if s != before]
    other = _choice(rng, others)
    if other is None:
        return None
    if task.edit_type == "remove":
        return task.source.replace_shape(other, None)
    if task.edit_type == "recolour":
        if any(s.colour == after.colour and s.kind == other.kind for s in task.source.shapes):
            return None
        return task.source.replace_shape(other, other.with_(colour=after.colour))
    if task.edit_type == "move":
        return task.source.replace_shape(other, other.with_(place=after.place))
    if task.edit_type == "resize":
        return task.source.replace_shape(other, other.with_(size="large" if other.size == "small" else "small"))
    return None


def over_edit(task: EditTask, rng: np.random.Generator) -> Scene | None:
    """The correct edit plus an unrequested change (another object recoloured or removed, or the background)."""
    _, after = _edited_shapes(task)
    untouched = [s for s in task.target.shapes if s in task.source.shapes and s != after]
    other = _choice(rng, untouched)
    if other is not None:
        if rng.random() < 0.5:
            return task.target.replace_shape(other, None)
        colour = _other_colour(rng, task.target, other, set())
        if colour is not None:
            return task.target.replace_shape(other, other.with_(colour=colour))
    if task.edit_type != "background":
        colour = _choice(rng, [c for c in BACKGROUND_COLOURS if c != task.target.background])
        return task.target.with_background(colour)
    return None


def partial_edit(task: EditTask, rng: np.random.Generator) -> Scene | None:
    """Half-done edits: a move that copies instead of moving, a resize or recolour left as is with a copy."""
    before, after = _edited_shapes(task)
    if task.edit_type == "move" and before is not None and after is not None:
        return task.target.with_shape(before)
    return None


def blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur with ``radius`` pixels."""
    return from_pil(to_pil(image).filter(ImageFilter.GaussianBlur(radius)))


def noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian pixel noise, clipped to [0, 1]."""
    return np.clip(image + rng.normal(0.0, std, image.shape).astype(np.float32), 0.0, 1.0)


def artifacts(image: np.ndarray, rng: np.random.Generator, n_blocks: int = 6, block: int = 3) -> np.ndarray:
    """Blocks of random off-palette colours and one smeared row, like decoder artifacts."""
    out = image.copy()
    h, w = out.shape[:2]
    for _ in range(n_blocks):
        y, x = int(rng.integers(0, h - block)), int(rng.integers(0, w - block))
        out[y : y + block, x : x + block] = rng.uniform(0.25, 0.75, 3)
    row = int(rng.integers(0, h))
    out[row] = 0.5 * out[row] + 0.5 * rng.uniform(0.2, 0.8, 3)
    return out


SceneMistake = Callable[[EditTask, np.random.Generator], "Scene | None"]
SCENE_MISTAKES: dict[str, SceneMistake] = {
    "wrong_attribute": wrong_attribute,
    "wrong_object": wrong_object,
    "over_edit": over_edit,
    "partial": partial_edit,
}


def candidates(task: EditTask, rng: np.random.Generator) -> list[Candidate]:
    """The correct edit, a no-op, every applicable scene-level mistake, and blurred / noisy / artifact edits."""
    target = task.target_image
    out = [Candidate("correct", target), Candidate("no_op", task.source_image)]
    for kind, mistake in SCENE_MISTAKES.items():
        scene = mistake(task, rng)
        if scene is not None:
            out.append(Candidate(kind, render(scene, task.size)))
    out.append(Candidate("blur", blur(target, float(rng.uniform(0.6, 1.5)))))
    out.append(Candidate("noise", noise(target, float(rng.uniform(0.06, 0.2)), rng)))
    out.append(Candidate("artifacts", artifacts(target, rng, n_blocks=int(rng.integers(3, 10)))))
    return out
