"""Settings shared by the pipeline and its config: the sampling defaults and the official negative prompt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling defaults a pipeline falls back on when a call leaves an argument as None."""

    num_inference_steps: int = 20
    noise_level: float = 0.9
    text_guidance_scale: float = 4.0
    image_guidance_scale: float = 2.0
    cfg_range: tuple[float, float] = (0.0, 0.6)
    height: int = 512
    width: int = 512

# The negative prompt of OmniGen2's official inference script (the pipeline's own default is "").
OFFICIAL_NEGATIVE_PROMPT = (
    "(((deformed))), blurry, over saturation, bad anatomy, disfigured, poorly drawn face, mutation, mutated, "
    "(extra_limb), (ugly), (poorly drawn hands), fused fingers, messy drawing, broken legs censor, censored, "
    "censor_bar"
)
