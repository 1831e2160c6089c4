"""Image conversions shared by every policy family (independent of any model's preprocessing)."""

from __future__ import annotations

import torch
from PIL import Image


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) float in [0, 1] -> list of B 8-bit RGB PIL images (e.g. ``Rollout.images``)."""
    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, mode="RGB") for a in array]
