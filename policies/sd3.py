"""The SD3 time convention of FLUX.1 Kontext's and Qwen-Image-Edit's schedulers, mapped onto the project's one
SDE step, and the σ grid those pipelines sample on.

Both families ship as diffusers pipelines with a ``FlowMatchEulerDiscreteScheduler`` in the SD3 convention:
σ runs from 1 (noise) to 0 (data), ``x_σ = (1 − σ)·x_data + σ·ε``, and the transformer predicts
``v_sd3 = ε − x_data``. The project's SDE step (:func:`policies.omnigen2.sde.sde_step_with_logprob`, DESIGN §2.2)
is written in OmniGen2's convention, ``t = 1 − σ`` and ``v = −v_sd3``; :func:`sd3_sde_step` is that mapping and
nothing else, so sampling and the learner's re-scoring share the one step function (Flow-GRPO's SD3 step is
the same SDE).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from policies.base import Generators
from policies.omnigen2.sde import SDEStepOutput, sde_step_with_logprob


def sd3_sde_step(
    model_output: torch.Tensor,
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    sample: torch.Tensor,
    noise_level: float,
    *,
    prev_sample: torch.Tensor | None = None,
    generator: Generators = None,
) -> SDEStepOutput:
    """One Flow-GRPO SDE step σ -> σ' (σ' < σ) in the SD3 convention: the project's step with t = 1 − σ, v ↦ −v.

    model_output: (B, C, H, W) the SD3 velocity ``ε − x_data`` (after guidance); sigma, sigma_next: floats or
    (B,) tensors in [0, 1]; sample: (B, C, H, W) x_σ. noise_level 0 is the scheduler's Euler step
    ``x_σ' = x_σ + (σ' − σ)·v``. See :func:`policies.omnigen2.sde.sde_step_with_logprob` for the rest.
    """
    t = 1.0 - torch.as_tensor(sigma, dtype=torch.float32)
    t_next = 1.0 - torch.as_tensor(sigma_next, dtype=torch.float32)
    return sde_step_with_logprob(
        -model_output.float(), t, t_next, sample, noise_level, prev_sample=prev_sample, generator=generator
    )


def sd3_sigmas(
    scheduler: FlowMatchEulerDiscreteScheduler, num_inference_steps: int, image_seq_len: int, device: torch.device
) -> torch.Tensor:
    """The family's σ grid as its pipeline builds it: ``linspace(1, 1/N, N)`` shifted by the scheduler (dynamic
    shift ``mu`` from the packed image sequence length, terminal shift if configured), then 0 appended.

    Returns (N+1,) float32 on ``device``, strictly decreasing from 1 to 0.
    """
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    config = scheduler.config
    mu = calculate_shift(
        image_seq_len,
        config.get("base_image_seq_len", 256),
        config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5),
        config.get("max_shift", 1.15),
    )
    sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
    scheduler.set_timesteps(sigmas=sigmas, mu=mu, device=device)
    return scheduler.sigmas.to(device=device, dtype=torch.float32)
