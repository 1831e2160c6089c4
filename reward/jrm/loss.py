"""JRM's two losses as pure functions: HPSv3's uncertainty-aware ranking loss and the masked rationale LM loss.

Ranking (DESIGN.md section 2.5): each score is Gaussian, ``r ~ N(mu, sigma^2)``; the probability that the
preferred edit wins is ``P = E[sigmoid(z)]`` with ``z ~ N(mu_w - mu_l, sigma_w^2 + sigma_l^2)``, and the loss
is ``-mean log P``. HPSv3 estimates the expectation with 1000 random samples; here it is a deterministic
quadrature, exact to float precision, noise-free and differentiable in all four inputs:

- spread ``s < 3``: Gauss-Hermite with 100 nodes on the Gaussian, summed in log space (stable for tiny P);
- spread ``s >= 3``: the sigmoid is a step ``H(z)`` plus a fast-decaying remainder, so
  ``P = Phi(m/s) + int_0^inf e^-z [N(-z; m, s) - N(z; m, s)] / (1 + e^-z) dz``, the integral by
  Gauss-Laguerre with 64 nodes (Gauss-Hermite alone needs thousands of nodes once the Gaussian is much wider
  than the sigmoid's transition).
Both branches agree with a fine trapezoid reference to ~1e-9 relative error over the ranges tested.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from numpy.polynomial.hermite import hermgauss
from numpy.polynomial.laguerre import laggauss

HERMITE_NODES = 100
LAGUERRE_NODES = 64
#: Spread of z above which the step-plus-remainder (Laguerre) form is used.
WIDE_SPREAD = 3.0
#: Beyond this |mu_w - mu_l| the Laguerre form could underflow; Gauss-Hermite is used there instead.
LAGUERRE_MAX_MARGIN = 200.0


@lru_cache(maxsize=4)
def _hermite(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes x and log-weights log(w / sqrt(pi)) for E over N(0, 1) after the substitution u = sqrt(2) x."""
    x, w = hermgauss(n)
    return tuple(x.tolist()), tuple((np.log(w) - 0.5 * math.log(math.pi)).tolist())


@lru_cache(maxsize=4)
def _laguerre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of int_0^inf e^-z f(z) dz."""
    z, w = laggauss(n)
    return tuple(z.tolist()), tuple(w.tolist())


def _log_p_hermite(margin: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """log E[sigmoid(z)], z ~ N(margin, spread^2), by Gauss-Hermite. Shapes: (N,) -> (N,), float64."""
    x, log_w = (torch.tensor(v, dtype=torch.float64, device=margin.device) for v in _hermite(HERMITE_NODES))
    z = margin[:, None] + math.sqrt(2.0) * spread[:, None] * x[None, :]
    return torch.logsumexp(log_w[None, :] + F.logsigmoid(z), dim=1)


def _log_p_step_plus_remainder(margin: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """log E[sigmoid(z)] as Phi(m/s) + Gauss-Laguerre remainder; accurate for spread >= 3. (N,) -> (N,)."""
    z, w = (torch.tensor(v, dtype=torch.float64, device=margin.device) for v in _laguerre(LAGUERRE_NODES))
    m, s = margin[:, None], spread[:, None]
    norm = 1.0 / (s * math.sqrt(2.0 * math.pi))
    density_neg = norm * torch.exp(-((z + m) ** 2) / (2.0 * s**2))
    density_pos = norm * torch.exp(-((z - m) ** 2) / (2.0 * s**2))
    remainder = (w * (density_neg - density_pos) / (1.0 + torch.exp(-z))).sum(dim=1)
    return torch.log(torch.special.ndtr(margin / spread) + remainder)


def log_prob_preferred(
    mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> torch.Tensor:
    """log P(w > l) = log E[sigmoid(z)], z ~ N(mu_w - mu_l, sigma_w^2 + sigma_l^2).

    All inputs (N,) (or broadcastable to a common shape), sigmas > 0; returns that shape in the promoted
    input dtype. With sigma -> 0 this is log sigmoid(mu_w - mu_l); with mu_w = mu_l it is log(1/2).
    """
    mu_w, sigma_w, mu_l, sigma_l = torch.broadcast_tensors(mu_w, sigma_w, mu_l, sigma_l)
    out_dtype = mu_w.dtype
    shape = mu_w.shape
    margin = (mu_w - mu_l).reshape(-1).double()
    spread = torch.sqrt(sigma_w.reshape(-1).double() ** 2 + sigma_l.reshape(-1).double() ** 2)
    use_wide = (spread >= WIDE_SPREAD) & (margin.abs() <= LAGUERRE_MAX_MARGIN)
    narrow = _log_p_hermite(margin, spread)
    wide = _log_p_step_plus_remainder(
        margin.clamp(-LAGUERRE_MAX_MARGIN, LAGUERRE_MAX_MARGIN), spread.clamp(min=WIDE_SPREAD)
    )
    return torch.where(use_wide, wide, narrow).reshape(shape).to(out_dtype)


def uncertainty_rank_loss(
    mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> torch.Tensor:
    """HPSv3 ranking loss ``-mean log P(w > l)`` (DESIGN.md 2.5), deterministic.

    mu_w, sigma_w: (N,) preferred side's mean and std; mu_l, sigma_l: (N,) rejected side's. Returns a
    scalar; an empty batch gives a zero that still carries a graph to the inputs.
    """
    if mu_w.numel() == 0:
        return (mu_w.sum() + sigma_w.sum() + mu_l.sum() + sigma_l.sum()) * 0.0
    return -log_prob_preferred(mu_w, sigma_w, mu_l, sigma_l).mean()


def select_lm_targets(
    per_position: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the positions that predict a target token (next-token shift) and those targets.

    per_position: (B, L, X) anything computed per position (logits, or hidden states before a linear LM head).
    input_ids:    (B, L) token ids.
    target_mask:  (B, L) bool, True at tokens to be predicted; position t is predicted from position t-1, so
                  position 0 is never a target.
    Returns (N, X) rows of ``per_position`` at the predicting positions and (N,) target ids, row-major order.
    """
    targets = target_mask[:, 1:]
    return per_position[:, :-1][targets], input_ids[:, 1:][targets]


def rationale_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the rationale tokens only, averaged over those tokens.

    logits: (B, L, V) language-head logits at every position; input_ids, target_mask: (B, L) as in
    :func:`select_lm_targets`. Returns a scalar (a graph-connected zero when no position is a target).
    """
    predicted, targets = select_lm_targets(logits, input_ids, target_mask)
    return token_cross_entropy(predicted, targets)


def token_cross_entropy(predicted_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, V) logits against (N,) ids in fp32; a graph-connected zero when N = 0."""
    if targets.numel() == 0:
        return predicted_logits.sum() * 0.0
    return F.cross_entropy(predicted_logits.float(), targets)
