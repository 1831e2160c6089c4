"""OmniGen2's dual classifier-free guidance (DESIGN §2.4), as small pure functions.

Three branches: ``cond`` (instruction + reference images), ``ref`` (negative prompt + reference images),
``uncond`` (negative prompt, no reference image). As in the official pipeline:
- text scale > 1 and image scale > 1: ``uncond + s_img·(ref − uncond) + s_txt·(cond − ref)``;
- only text scale > 1: ``uncond + s_txt·(cond − uncond)`` (the ``ref`` branch is not run);
- otherwise: ``cond`` alone (one forward).
Guidance is applied at step i of T only when ``cfg_range[0] <= i/T <= cfg_range[1]``.
"""

from __future__ import annotations

import enum

import torch


class GuidanceMode(enum.Enum):
    """Which transformer branches a guided step needs."""

    NONE = "none"
    TEXT = "text"
    DUAL = "dual"


def guidance_mode(text_guidance_scale: float, image_guidance_scale: float) -> GuidanceMode:
    """The branches the two scales call for (module docstring)."""
    if text_guidance_scale > 1.0 and image_guidance_scale > 1.0:
        return GuidanceMode.DUAL
    if text_guidance_scale > 1.0:
        return GuidanceMode.TEXT
    return GuidanceMode.NONE


def cfg_active(step_index: torch.Tensor, num_steps: int, cfg_range: tuple[float, float]) -> torch.Tensor:
    """(N,) bool: whether CFG applies at each step index, i.e. ``cfg_range[0] <= i/T <= cfg_range[1]``."""
    fraction = step_index.double() / num_steps
    return (fraction >= cfg_range[0]) & (fraction <= cfg_range[1])


def combine_guidance(
    cond: torch.Tensor,
    ref: torch.Tensor | None,
    uncond: torch.Tensor,
    text_guidance_scale: float,
    image_guidance_scale: float,
) -> torch.Tensor:
    """Guided velocity from the branch outputs, all (N, C, H, W); ``ref`` is None in text-only mode."""
    if ref is None:
        return uncond + text_guidance_scale * (cond - uncond)
    return uncond + image_guidance_scale * (ref - uncond) + text_guidance_scale * (cond - ref)
