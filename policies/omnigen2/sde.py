"""Flow-GRPO's SDE step with log-probability, in OmniGen2's time convention (DESIGN §2.2).

OmniGen2 integrates ``x_t = t·x1 + (1−t)·x0`` from t=0 (noise) to t=1 (data) with velocity ``v = x1 − x0``.
Flow-GRPO replaces the Euler ODE step by a Gaussian transition with the same marginals; its log-density
is what the policy gradient needs. This single function serves both sampling (draws x_{t'}) and re-scoring
in the learner (given x_{t'}, returns its log-prob under the current model output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class SDEStepOutput:
    """One SDE transition x_t -> x_{t'} for a batch of B latents.

    prev_sample: (B, C, H, W) float32, x_{t'} (drawn, or the one given for scoring).
    log_prob:    (B,) float32, mean Gaussian log-density per (masked) latent element; 0 when the step is
                 deterministic (noise_level 0), where no density exists.
    mean:        (B, C, H, W) float32, the transition mean μ.
    std:         (B,) float32, the transition std σ_t·sqrt(dt).
    """

    prev_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def _per_sample(value: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """A time given as a float, a 0-d tensor or a (B,) tensor, as a (B,) float32 tensor."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.ndim == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t


def draw_noise(
    shape: tuple[int, ...], generator: torch.Generator | Sequence[torch.Generator] | None, device: torch.device
) -> torch.Tensor:
    """Standard normal noise of ``shape`` (float32) on ``device``, drawn on the generator's device.

    A list of B generators draws each sample's noise from its own generator, so a sample's draw does not
    depend on the rest of the batch.
    """
    if generator is None or isinstance(generator, torch.Generator):
        source = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=source, dtype=torch.float32).to(device)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]}")
    return torch.cat([draw_noise((1, *shape[1:]), g, device) for g in generators])


def sde_noise_std(timestep: torch.Tensor, next_timestep: torch.Tensor, noise_level: float) -> torch.Tensor:
    """σ_t = c·sqrt((1 − t)/t), with t' in the denominator at t = 0 (where the formula diverges).

    timestep, next_timestep: (B,) float32 in [0, 1]. Returns (B,) float32.
    """
    denominator = torch.where(timestep == 0, next_timestep, timestep)
    return noise_level * torch.sqrt((1.0 - timestep) / denominator)


def sde_step_with_logprob(
    model_output: torch.Tensor,
    timestep: float | torch.Tensor,
    next_timestep: float | torch.Tensor,
    sample: torch.Tensor,
    noise_level: float,
    *,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    mask: torch.Tensor | None = None,
) -> SDEStepOutput:
    """One Flow-GRPO SDE step t -> t' (t' > t) and the log-prob of its result, computed in fp32.

    model_output: (B, C, H, W) predicted velocity v̂ (after CFG).
    timestep, next_timestep: floats or (B,) tensors, t and t' in [0, 1].
    sample: (B, C, H, W) x_t.
    noise_level: the coefficient c ≥ 0; c = 0 is the Euler ODE step exactly (log_prob then 0).
    prev_sample: (B, C, H, W) if given, it is scored instead of drawing a new sample (learner path).
    generator: a generator, or one per sample, for the draw (ignored when prev_sample is given).
    mask: optional bool/0-1 tensor broadcastable to (B, C, H, W); the log-prob averages over its ones.

    mean = x_t·(1 − σ_t²·dt/(2(1−t))) + v̂·(1 + σ_t²·t/(2(1−t)))·dt,  x_{t'} = mean + σ_t·sqrt(dt)·ε.
    """
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")
    if model_output.shape != sample.shape:
        raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} differ")
    batch, device = sample.shape[0], sample.device
    x = sample.float()
    velocity = model_output.float()
    t = _per_sample(timestep, batch, device)
    t_next = _per_sample(next_timestep, batch, device)
    dt = t_next - t
    if not bool((dt > 0).all()) or not bool(((t >= 0) & (t_next <= 1)).all()):
        raise ValueError(f"need 0 <= t < t' <= 1, got t={t.tolist()} t'={t_next.tolist()}")

    shape = (batch,) + (1,) * (x.ndim - 1)
    sigma = sde_noise_std(t, t_next, noise_level)
    sigma_b, t_b, dt_b = sigma.view(shape), t.view(shape), dt.view(shape)
    one_minus_t = 1.0 - t_b
    mean = x * (1.0 - sigma_b**2 * dt_b / (2.0 * one_minus_t)) + velocity * (
        1.0 + sigma_b**2 * t_b / (2.0 * one_minus_t)
    ) * dt_b
    std = sigma * torch.sqrt(dt)

    if prev_sample is None:
        if noise_level == 0:
            prev_sample = mean
        else:
            noise = draw_noise(tuple(x.shape), generator, device)
            prev_sample = mean + std.view(shape) * noise
    prev_sample = prev_sample.float()

    if noise_level == 0:
        log_prob = torch.zeros(batch, dtype=torch.float32, device=device)
        return SDEStepOutput(prev_sample=prev_sample, log_prob=log_prob, mean=mean, std=std)

    std_b = std.view(shape)
    element_log_prob = (
        -((prev_sample.detach() - mean) ** 2) / (2.0 * std_b**2) - torch.log(std_b) - _LOG_SQRT_2PI
    )
    reduce_dims = tuple(range(1, x.ndim))
    if mask is None:
        log_prob = element_log_prob.mean(dim=reduce_dims)
    else:
        weights = torch.broadcast_to(mask.to(device=device, dtype=torch.float32), x.shape)
        count = weights.sum(dim=reduce_dims)
        if not bool((count > 0).all()):
            raise ValueError("mask selects no latent element for some sample")
        log_prob = (element_log_prob * weights).sum(dim=reduce_dims) / count
    return SDEStepOutput(prev_sample=prev_sample, log_prob=log_prob, mean=mean, std=std)
