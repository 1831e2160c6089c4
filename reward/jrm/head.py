"""JRM's reward head f(h): a small fp32 MLP from the ``<|reward|>`` hidden state to a mean and log-std per dimension."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: log-std is clamped to this range so exp() never overflows or collapses to zero.
LOG_SIGMA_RANGE = (-7.0, 7.0)


@dataclass
class HeadOutput:
    """Per-dimension Gaussian score of a batch of B edits over D dimensions.

    mu:        (B, D) float32 mean.
    log_sigma: (B, D) float32 log standard deviation (clamped to LOG_SIGMA_RANGE).
    """

    mu: torch.Tensor
    log_sigma: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        """(B, D) standard deviation."""
        return self.log_sigma.exp()


class RewardHead(nn.Module):
    """MLP ``Linear(H, M) -> GELU -> Dropout -> Linear(M, 2D)``, always run in float32.

    The backbone may run in bf16; ``h`` is cast to fp32 before the head so the scores and their gradients
    keep full precision (DESIGN.md section 1). Autocast is switched off inside the head: under a bf16 autocast
    (the trainer's ``precision: bf16``) ``nn.Linear`` would otherwise run in bf16 whatever its input dtype.
    """

    def __init__(self, hidden_size: int, num_dimensions: int = 2, mlp_size: int = 1024, dropout: float = 0.0):
        super().__init__()
        self.num_dimensions = num_dimensions
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_size, 2 * num_dimensions),
        )
        self.float()

    def forward(self, h: torch.Tensor) -> HeadOutput:
        """h: (B, H) any float dtype -> HeadOutput with (B, D) fp32 fields."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            out = self.mlp(h.float())
        mu, log_sigma = out.split(self.num_dimensions, dim=-1)
        return HeadOutput(mu=mu, log_sigma=log_sigma.clamp(*LOG_SIGMA_RANGE))
