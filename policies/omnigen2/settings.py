"""Settings shared by the pipeline and its config: the sampling defaults and the official negative prompt."""

from __future__ import annotations

from policies.settings import SamplingSettings as SamplingSettings

# The negative prompt of OmniGen2's official inference script (the pipeline's own default is "").
OFFICIAL_NEGATIVE_PROMPT = (
    "(((deformed))), blurry, over saturation, bad anatomy, disfigured, poorly drawn face, mutation, mutated, "
    "(extra_limb), (ugly), (poorly drawn hands), fused fingers, messy drawing, broken legs censor, censored, "
    "censor_bar"
)
