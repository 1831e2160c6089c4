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
    sde_window:          (start, end): only steps start <= i < end take the SDE, the others the ODE (Flow-GRPO-Fast,
                         MixGRPO): the group's spread then comes from those steps alone, which are the ones trained.
                         None = the SDE on every step (Flow-GRPO).
    """

    num_inference_steps: int = 20
    noise_level: float = 0.9
    text_guidance_scale: float = 4.0
    image_guidance_scale: float = 2.0
    cfg_range: tuple[float, float] = (0.0, 0.6)
    height: int = 512
    width: int = 512
    sde_window: tuple[int, int] | None = None

    def step_noise_level(self, step: int) -> float:
        """The SDE coefficient of step ``step`` (0-based): ``noise_level`` inside the SDE window, else 0 (ODE)."""
        return self.noise_level if in_sde_window(step, self.sde_window) else 0.0

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
        if changes.get("sde_window") is not None:
            out = replace(out, sde_window=(int(out.sde_window[0]), int(out.sde_window[1])))
        return out


def in_sde_window(step: int, window: tuple[int, int] | None) -> bool:
    """Whether step ``step`` takes the SDE under ``window`` ((start, end), end exclusive; None = every step)."""
    return window is None or window[0] <= step < window[1]


def check_sde_window(window: tuple[int, int] | None, num_steps: int) -> None:
    """Raise ValueError unless ``window`` is None or a non-empty (start, end) within ``[0, num_steps]``."""
    if window is not None and not 0 <= window[0] < window[1] <= num_steps:
        raise ValueError(f"sde_window must satisfy 0 <= start < end <= T={num_steps}, got {tuple(window)}")
