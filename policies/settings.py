"""Sampling settings: the one carrier of sampling knobs from a config to a policy's sampler and ODE editor."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class SamplingSettings:
    """How a flow-matching editing policy samples (what ``cfg.sampling_settings()`` hands to the pipeline).

    num_inference_steps: T, denoising steps (the rollout has T transitions).
    noise_level:         SDE noise coefficient c (sigma in the papers); 0 = the ODE. ``edit`` always uses 0.
    text_guidance_scale / image_guidance_scale: dual CFG scales (DESIGN.md section 2.4).
    cfg_range:           (start, end): CFG applies at step i when start <= i/T <= end.
    height / width:      output size in pixels.
    """

    num_inference_steps: int = 20
    noise_level: float = 0.9
    text_guidance_scale: float = 4.0
    image_guidance_scale: float = 2.0
    cfg_range: tuple[float, float] = (0.0, 0.6)
    height: int = 512
    width: int = 512

    def override(self, **changes: Any) -> SamplingSettings:
        """A copy with the non-None ``changes`` applied (an unknown name is a TypeError naming it).

        For partial overrides such as a benchmark config's (null = keep this policy's default).
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"SamplingSettings got an unexpected keyword argument {unknown[0]!r}; known: {sorted(known)}")
        out = replace(self, **{k: v for k, v in changes.items() if v is not None})
        if "cfg_range" in changes and changes["cfg_range"] is not None:
            out = replace(out, cfg_range=(float(out.cfg_range[0]), float(out.cfg_range[1])))
        return out
