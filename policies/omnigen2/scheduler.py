"""OmniGen2's flow-matching Euler scheduler: t from 0 (noise) to 1 (data) with a dynamic time shift.

Loads the official ``scheduler/scheduler_config.json`` (keys ``num_train_timesteps``,
``dynamic_time_shift``). The grid is ``t_i = i/N`` (i = 0..N−1) shifted by ``t ← t/(m − m·t + t)`` with
``m = sqrt(num_tokens)/40`` (DESIGN §2.1), then 1.0 appended as the end point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin


def time_shift_grid(num_inference_steps: int, num_tokens: int | None) -> torch.Tensor:
    """The N start times ``t_i = i/N`` shifted by ``m = sqrt(num_tokens)/40``; unshifted if num_tokens is None.

    Returns (N,) float32. m = 1 at 320² pixels (a 40×40 latent); m > 1 spends more steps near noise.
    """
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    grid = torch.arange(num_inference_steps, dtype=torch.float64) / num_inference_steps
    if num_tokens is not None:
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        m = num_tokens**0.5 / 40.0
        grid = grid / (m - m * grid + grid)
    return grid.to(torch.float32)


@dataclass
class EulerStepOutput:
    """prev_sample: (B, C, H, W) the latent after one Euler step (named as in diffusers)."""

    prev_sample: torch.Tensor


class OmniGen2FlowMatchScheduler(SchedulerMixin, ConfigMixin):
    """Euler ODE scheduler of OmniGen2 as a diffusers scheduler object.

    After ``set_timesteps``: ``timesteps`` (N,) are the model inputs, ``grid`` (N+1,) adds the end point 1.0.
    ``step`` advances one step in order (call ``set_timesteps`` before every trajectory).
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, dynamic_time_shift: bool = True):
        self.timesteps = torch.linspace(0, 1, num_train_timesteps + 1, dtype=torch.float32)[:-1]
        self.grid = torch.cat([self.timesteps, torch.ones(1)])
        self.num_inference_steps: int | None = None
        self._step_index = 0

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        *,
        num_tokens: int | None = None,
    ) -> None:
        """Build the shifted grid; ``num_tokens`` is the output latent's H·W (as OmniGen2 passes it)."""
        shift_tokens = num_tokens if self.config.dynamic_time_shift else None
        timesteps = time_shift_grid(num_inference_steps, shift_tokens).to(device)
        self.num_inference_steps = num_inference_steps
        self.timesteps = timesteps
        self.grid = torch.cat([timesteps, torch.ones(1, device=timesteps.device)])
        self._step_index = 0

    @property
    def step_index(self) -> int:
        """Index of the next step ``step`` will take."""
        return self._step_index

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> EulerStepOutput | tuple[torch.Tensor]:
        """Euler step ``x_{t'} = x_t + (t' − t)·v̂`` in fp32; ``timestep`` must be the current grid point."""
        if self.num_inference_steps is None or self._step_index >= self.num_inference_steps:
            raise RuntimeError("call set_timesteps() before step(), and no more than num_inference_steps times")
        t = self.grid[self._step_index]
        if abs(float(timestep) - float(t)) > 1e-6:
            raise ValueError(f"step() expected timestep {float(t):.6f} (index {self._step_index}), got {float(timestep)}")
        t_next = self.grid[self._step_index + 1]
        prev_sample = (sample.float() + (t_next - t) * model_output.float()).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return EulerStepOutput(prev_sample=prev_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
