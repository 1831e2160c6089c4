"""Edit tasks: a seeded source scene, an instruction of one of six edit types, and the exact target scene.

Seeds are split into disjoint ranges per use (:data:`SPLIT_OFFSETS`), so held-out tasks are never seen by
pretraining, pair building or RL. A task is rebuilt exactly from its seed and image size.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from editrl.io import atomic_write_bytes
from world.render import mask_bbox, render, shape_mask, to_pil
from world.scene import (
    BACKGROUND_COLOURS,
    KINDS,
    PLACES,
    SHAPE_COLOURS,
    SIZES,
    Scene,
    Shape,
    random_scene,
    random_shape,
)

EDIT_TYPES: tuple[str, ...] = ("recolour", "remove", "add", "move", "background", "resize")

#: Every word of the instruction templates after the first (colours, kinds, sizes, places and the verbs and
#: prepositions between them): a tiny tokenizer built with them keeps each word whole.
INSTRUCTION_WORDS: tuple[str, ...] = tuple(sorted({
    *SHAPE_COLOURS, *BACKGROUND_COLOURS, *KINDS, *SIZES, *(w for place in PLACES for w in place.split()),
    "a", "the", "to", "of", "at", "in", "background", "colour", "away", "bigger", "smaller",
}))

#: First seed of each split; splits are 1e6 seeds wide and never overlap.
SPLIT_OFFSETS: dict[str, int] = {
    "pretrain": 0,
    "pairs": 1_000_000,
    "rl": 2_000_000,
    "pairs_eval": 3_000_000,
    "heldout": 9_000_000,
}
SPLIT_WIDTH = 1_000_000


@dataclass(frozen=True, eq=False)
class EditRegion:
    """A named part of the image the instruction asks to change.

    mask: (H, W) bool, the pixels of the region.
    """

    label: str
    mask: np.ndarray

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Pixel bbox ``(ymin, xmin, ymax, xmax)``, max exclusive."""
        return mask_bbox(self.mask)


@dataclass(frozen=True, eq=False)
class EditTask:
    """One editing task; ``target`` is the scene a perfect edit produces."""

    task_id: str
    seed: int
    size: int
    edit_type: str
    instruction: str
    source: Scene
    target: Scene
    edit_regions: tuple[EditRegion, ...]

    @cached_property
    def source_image(self) -> np.ndarray:
        """(H, W, 3) float32 rendering of the source scene."""
        return render(self.source, self.size)

    @cached_property
    def target_image(self) -> np.ndarray:
        """(H, W, 3) float32 rendering of the target scene."""
        return render(self.target, self.size)

    @cached_property
    def changed_mask(self) -> np.ndarray:
        """(H, W) bool, pixels where the target differs from the source."""
        return np.any(self.source_image != self.target_image, axis=-1)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _region(label: str, shape: Shape, size: int) -> EditRegion:
    return EditRegion(label, shape_mask(shape, size))


def _build(edit_type: str, rng: np.random.Generator, size: int) -> tuple[str, Scene, Scene, tuple[EditRegion, ...]]:
    """(instruction, source, target, edit regions) for one edit type."""
    scene = random_scene(rng, min_shapes=0 if edit_type == "add" else 1, max_shapes=3)
    if edit_type == "add":
        new = random_shape(rng, scene)
        template = _pick(rng, ("add a {size} {name} at the {place}", "put a {size} {name} in the {place}"))
        text = template.format(size=new.size, name=new.name, place=new.place)
        return text, scene, scene.with_shape(new), (_region(new.name, new, size),)
    if edit_type == "background":
        colour = _pick(rng, [c for c in BACKGROUND_COLOURS if c != scene.background])
        text = _pick(rng, ("change the background to {c}", "make the background {c}")).format(c=colour)
        covered = np.zeros((size, size), dtype=bool)
        for shape in scene.shapes:
            covered |= shape_mask(shape, size)
        return text, scene, scene.with_background(colour), (EditRegion("background", ~covered),)
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    if edit_type == "recolour":
        taken = {s.colour for s in scene.shapes if s.kind == shape.kind}
        colour = _pick(rng, [c for c in SHAPE_COLOURS if c not in taken])
        template = _pick(rng, ("make the {name} {c}", "change the colour of the {name} to {c}", "paint the {name} {c}"))
        new = shape.with_(colour=colour)
        return template.format(name=shape.name, c=colour), scene, scene.replace_shape(shape, new), (_region(shape.name, shape, size),)
    if edit_type == "remove":
        text = _pick(rng, ("remove the {name}", "delete the {name}", "take away the {name}")).format(name=shape.name)
        return text, scene, scene.replace_shape(shape, None), (_region(shape.name, shape, size),)
    if edit_type == "move":
        place = _pick(rng, scene.free_places())
        new = shape.with_(place=place)
        text = f"move the {shape.name} to the {place}"
        regions = (_region(f"{shape.name} (old place)", shape, size), _region(f"{shape.name} (new place)", new, size))
        return text, scene, scene.replace_shape(shape, new), regions
    if edit_type == "resize":
        bigger = shape.size == "small"
        new = shape.with_(size="large" if bigger else "small")
        words = ("make the {name} bigger", "enlarge the {name}") if bigger else ("make the {name} smaller", "shrink the {name}")
        region = _region(shape.name, new if bigger else shape, size)
        return _pick(rng, words).format(name=shape.name), scene, scene.replace_shape(shape, new), (region,)
    raise ValueError(f"unknown edit type {edit_type!r}; expected one of {EDIT_TYPES}")


def generate_task(seed: int, size: int = 32, edit_types: Sequence[str] = EDIT_TYPES, task_id: str | None = None) -> EditTask:
    """The task for ``seed``: same seed, size and edit types give the same task."""
    for edit_type in edit_types:
        if edit_type not in EDIT_TYPES:
            raise ValueError(f"unknown edit type {edit_type!r}; expected one of {EDIT_TYPES}")
    edit_type = _pick(np.random.default_rng([seed, 0]), tuple(edit_types))
    return build_task(seed, size, edit_type, task_id)


def build_task(seed: int, size: int, edit_type: str, task_id: str | None = None) -> EditTask:
    """The task of ``edit_type`` for ``seed`` (the scene is drawn independently of how the type was chosen)."""
    instruction, source, target, regions = _build(edit_type, np.random.default_rng([seed, 1]), size)
    return EditTask(
        task_id=task_id or f"task-{seed:08d}",
        seed=seed,
        size=size,
        edit_type=edit_type,
        instruction=instruction,
        source=source,
        target=target,
        edit_regions=regions,
    )


def make_tasks(split: str, n: int, size: int = 32, edit_types: Sequence[str] = EDIT_TYPES, start: int = 0) -> list[EditTask]:
    """Tasks ``start .. start+n-1`` of a split (ids ``"<split>-<index>"``)."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_OFFSETS)}")
    if start < 0 or start + n > SPLIT_WIDTH:
        raise ValueError(f"task indices {start}..{start + n} fall outside split {split!r}")
    offset = SPLIT_OFFSETS[split]
    return [generate_task(offset + i, size, edit_types, task_id=f"{split}-{i:06d}") for i in range(start, start + n)]


def write_instruction_jsonl(tasks: Sequence[EditTask], out_dir: str | Path, name: str = "instructions.jsonl") -> Path:
    """Write the RL instruction format: ``<out_dir>/<name>`` plus ``images/<task_id>.png`` sources.

    Each line is ``{"id", "instruction", "source"}`` with the path relative to the JSONL's directory, plus
    the extra keys ``seed``, ``size`` and ``edit_type`` that rebuild the task (:func:`task_from_record`).
    """
    out_dir = Path(out_dir)
    lines = []
    for task in tasks:
        rel = f"images/{task.task_id}.png"
        buffer = _png_bytes(task.source_image)
        atomic_write_bytes(out_dir / rel, buffer)
        record = {"id": task.task_id, "instruction": task.instruction, "source": rel, "seed": task.seed, "size": task.size, "edit_type": task.edit_type}
        lines.append(json.dumps(record))
    path = out_dir / name
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def task_from_record(record: dict) -> EditTask:
    """Rebuild the task of an instruction record written by :func:`write_instruction_jsonl`."""
    for key in ("id", "seed", "size", "edit_type"):
        if key not in record:
            raise ValueError(f"instruction record {record.get('id', '?')!r} lacks key {key!r} needed to rebuild its task")
    task = build_task(int(record["seed"]), int(record["size"]), str(record["edit_type"]), task_id=str(record["id"]))
    if "instruction" in record and record["instruction"] != task.instruction:
        raise ValueError(f"instruction record {record['id']!r}: instruction does not match the one its seed generates")
    return task


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()
