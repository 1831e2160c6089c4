"""Crisp rendering of scenes to float RGB arrays (no anti-aliasing: every pixel is a palette colour).

Images are (H, W, 3) float32 arrays in [0, 1]; :func:`to_pil` / :func:`from_pil` convert at the boundary.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from world.scene import PALETTE, PLACES, Scene, Shape

#: Half extent of a shape as a fraction of the image side.
HALF_EXTENT = {"small": 0.09, "large": 0.15}


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """(size, size) bool mask of the pixels the shape covers."""
    row, col = PLACES[shape.place]
    cy, cx = (row + 0.5) * size / 3.0, (col + 0.5) * size / 3.0
    half = HALF_EXTENT[shape.size] * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = y - cy, x - cx
    if shape.kind == "square":
        return (np.abs(dy) <= half) & (np.abs(dx) <= half)
    if shape.kind == "circle":
        return dy**2 + dx**2 <= (half * 1.1) ** 2
    if shape.kind == "triangle":
        depth = (dy + half) / (2.0 * half)  # 0 at the apex, 1 at the base
        return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= half * depth + 0.5)
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def render(scene: Scene, size: int) -> np.ndarray:
    """(size, size, 3) float32 image of the scene; later shapes are drawn over earlier ones."""
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = PALETTE[scene.background]
    for shape in scene.shapes:
        image[shape_mask(shape, size)] = PALETTE[shape.colour]
    return image


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel bbox ``(ymin, xmin, ymax, xmax)`` of a non-empty (H, W) mask, max exclusive."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("mask_bbox of an empty mask")
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def to_pil(image: np.ndarray) -> Image.Image:
    """(H, W, 3) float array in [0, 1] -> RGB PIL image."""
    return Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def from_pil(image: Image.Image, size: int | None = None) -> np.ndarray:
    """RGB PIL image -> (H, W, 3) float32 in [0, 1], resized (bilinear) to ``size`` if given and different."""
    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0
