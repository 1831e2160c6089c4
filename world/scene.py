"""Scenes: a background colour and a few non-overlapping shapes placed on a 3x3 grid of named places.

A scene is pure data (no pixels); :mod:`world.render` draws it. Every (colour, kind) pair occurs at
most once per scene so an instruction like "the red circle" names exactly one object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: Shape colours (RGB in [0, 1]), at least 0.3 apart (RGB distance / sqrt 3) from each
#: other and from the backgrounds, so a blurred or noisy pixel still has one nearest colour.
SHAPE_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.1),
    "blue": (0.1, 0.2, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "purple": (0.6, 0.1, 0.8),
    "cyan": (0.0, 0.85, 0.85),
}
#: Background colours, disjoint from the shape colours.
BACKGROUND_COLOURS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "gray": (0.45, 0.45, 0.45),
    "black": (0.0, 0.0, 0.0),
}
#: Every colour the renderer can produce (the visual-quality check snaps pixels to it).
PALETTE: dict[str, tuple[float, float, float]] = {**SHAPE_COLOURS, **BACKGROUND_COLOURS}

KINDS: tuple[str, ...] = ("square", "circle", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
#: Named places: (row, column) on a 3x3 grid.
PLACES: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (0, 1),
    "top right": (0, 2),
    "left": (1, 0),
    "center": (1, 1),
    "right": (1, 2),
    "bottom left": (2, 0),
    "bottom": (2, 1),
    "bottom right": (2, 2),
}


@dataclass(frozen=True)
class Shape:
    """One object: its kind, colour name, size name and place name."""

    kind: str
    colour: str
    size: str
    place: str

    @property
    def name(self) -> str:
        """How instructions refer to it, e.g. ``"red circle"``."""
        return f"{self.colour} {self.kind}"

    def with_(self, **changes: str) -> Shape:
        """A copy with some attributes changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Scene:
    """A background colour name and a tuple of shapes in distinct places (drawn in order)."""

    background: str
    shapes: tuple[Shape, ...]

    def find(self, name: str) -> Shape:
        """The shape called ``name`` (e.g. ``"red circle"``)."""
        for shape in self.shapes:
            if shape.name == name:
                return shape
        raise KeyError(f"scene has no shape named {name!r}")

    def free_places(self) -> list[str]:
        """Place names not occupied by any shape, in grid order."""
        taken = {s.place for s in self.shapes}
        return [p for p in PLACES if p not in taken]

    def replace_shape(self, old: Shape, new: Shape | None) -> Scene:
        """A scene with ``old`` replaced by ``new`` (or removed when ``new`` is None)."""
        kept: list[Shape] = []
        for shape in self.shapes:
            if shape != old:
                kept.append(shape)
            elif new is not None:
                kept.append(new)
        return Scene(self.background, tuple(kept))

    def with_background(self, background: str) -> Scene:
        return Scene(background, self.shapes)

    def with_shape(self, shape: Shape) -> Scene:
        return Scene(self.background, (*self.shapes, shape))


def random_shape(rng: np.random.Generator, scene: Scene) -> Shape:
    """A new shape whose (colour, kind) is not yet in ``scene``, in a free place (scene must have one)."""
    used = {(s.colour, s.kind) for s in scene.shapes}
    options = [(c, k) for c in SHAPE_COLOURS for k in KINDS if (c, k) not in used]
    colour, kind = options[rng.integers(len(options))]
    free = scene.free_places()
    return Shape(kind=kind, colour=colour, size=SIZES[rng.integers(len(SIZES))], place=free[rng.integers(len(free))])


def random_scene(rng: np.random.Generator, min_shapes: int = 1, max_shapes: int = 3) -> Scene:
    """A background and ``min_shapes..max_shapes`` shapes with unique (colour, kind) in distinct places."""
    names = list(BACKGROUND_COLOURS)
    scene = Scene(names[rng.integers(len(names))], ())
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        scene = scene.with_shape(random_shape(rng, scene))
    return scene
