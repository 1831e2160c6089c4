"""Input checks and reference-image preprocessing as in OmniGen2.

A reference image is scaled by ``min(sqrt(max_pixels/(W·H)), max_side_length/max(W, H), 1)`` (never
upscaled, aspect kept) and each side is floored to a multiple of ``align`` (vae_scale_factor · patch_size = 16
for OmniGen2), with a Lanczos resize; pixels go to [-1, 1]. Images whose short side would fall below
``min_side`` are upscaled to it first (the official code would produce a zero-size image there).

Every input is turned into 8-bit RGB first: grayscale (L, 1), palette (P), CMYK, YCbCr, LAB, HSV, and
alpha images (RGBA, LA, PA, P with transparency — composited on white) are converted; 16/32-bit integer
("I;16*", "I") and float ("F") images are rescaled to 0..255 (16-bit range if any value exceeds 255).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from policies.images import tensor_to_pil as tensor_to_pil

MAX_REFERENCE_IMAGES = 5


def to_rgb8(image: Image.Image) -> Image.Image:
    """Return ``image`` as an 8-bit RGB PIL image (see the module docstring for the conversions)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.size and np.nanmax(values) <= 1.0:
            scale = 255.0
        else:
            scale = 255.0 / 65535.0 if values.size and np.nanmax(values) > 255 else 1.0
        gray = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def reference_size(
    width: int, height: int, *, max_pixels: int, max_side_length: int, align: int = 16, min_side: int | None = None
) -> tuple[int, int]:
    """(new_width, new_height) for a reference image, per OmniGen2's rule (module docstring).

    Both sides end as multiples of ``align`` and at least ``min_side`` (default ``align``).
    """
    if width < 1 or height < 1:
        raise ValueError(f"image has an empty size {width}x{height}")
    min_side = align if min_side is None else min_side
    ratio = min(math.sqrt(max_pixels / (width * height)), max_side_length / max(width, height), 1.0)
    if min(width, height) * ratio < min_side:
        ratio = min_side / min(width, height)
    new_width = max(int(width * ratio) // align * align, align * math.ceil(min_side / align))
    new_height = max(int(height * ratio) // align * align, align * math.ceil(min_side / align))
    return new_width, new_height


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (3, H, W) float32 in [-1, 1]."""
    array = np.asarray(to_rgb8(image), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def preprocess_reference(
    image: Image.Image, *, max_pixels: int, max_side_length: int, align: int = 16, min_side: int | None = None
) -> torch.Tensor:
    """One reference image -> (3, H, W) float32 in [-1, 1], resized per :func:`reference_size`."""
    rgb = to_rgb8(image)
    size = reference_size(
        rgb.width, rgb.height, max_pixels=max_pixels, max_side_length=max_side_length, align=align, min_side=min_side
    )
    if size != rgb.size:
        rgb = rgb.resize(size, resample=Image.Resampling.LANCZOS)
    return pil_to_tensor(rgb)


def normalize_edit_inputs(
    sources: Sequence[Image.Image | Sequence[Image.Image]], instructions: Sequence[str]
) -> tuple[list[list[Image.Image]], list[str]]:
    """Check a batch of edit requests: one source (a PIL image or a list of 1..5) per non-empty instruction.

    Returns (per-sample lists of reference images, stripped instructions). Raises ``ValueError`` naming the
    sample on any violation.
    """
    if isinstance(instructions, str):
        raise TypeError("instructions must be a sequence of strings, not one string")
    if len(sources) != len(instructions):
        raise ValueError(f"got {len(sources)} sources for {len(instructions)} instructions")
    if not instructions:
        raise ValueError("empty batch: no instructions given")
    references: list[list[Image.Image]] = []
    cleaned: list[str] = []
    for index, (source, instruction) in enumerate(zip(sources, instructions)):
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"sample {index}: the instruction is empty")
        images = [source] if isinstance(source, Image.Image) else list(source)
        if not images:
            raise ValueError(f"sample {index}: no reference image")
        if len(images) > MAX_REFERENCE_IMAGES:
            raise ValueError(f"sample {index}: {len(images)} reference images, at most {MAX_REFERENCE_IMAGES} allowed")
        for position, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise ValueError(f"sample {index}: reference {position} is a {type(image).__name__}, not a PIL image")
        references.append(images)
        cleaned.append(instruction.strip())
    return references, cleaned
