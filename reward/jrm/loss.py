"""JRM's losses as pure functions: the two uncertainty-aware ranking losses and the masked rationale LM loss.

Ranking (DESIGN.md section 2.5): each score is Gaussian, ``r ~ N(mu, sigma^2)``, so the margin is
``z ~ N(m, s^2)`` with ``m = mu_w - mu_l``, ``s^2 = sigma_w^2 + sigma_l^2``. Two objectives are in use
(``jrm.rank_loss``, :data:`RANK_LOSSES`):

- ``paper``: the JRM paper's Eq. 4-5, ``-mean log E[sigmoid(z)]`` (the log of the expected win probability);
- ``hpsv3``: what HPSv3's and EditReward's released trainers compute (``loss_type == "uncertainty"``, by Monte
  Carlo there), ``mean E[-log sigmoid(z)] = mean E[softplus(-z)]`` (the expected log-loss). By Jensen it is
  never smaller than ``paper``; at ``m = 0`` ``paper`` is log 2 for every ``s`` while ``hpsv3`` grows with ``s``
  (1.3354 nats at sigma_w = sigma_l = 2), so its gradient always pushes sigma down.

Both expectations are one-dimensional and computed here by deterministic quadrature, exact to float precision,
noise-free and differentiable in all four inputs:

- spread ``s < 3``: Gauss-Hermite with 100 nodes on the Gaussian (``paper``: summed in log space, stable for
  tiny P);
- spread ``s >= 3``: the integrand is split into a kink that has a closed form and a fast-decaying remainder,
  the remainder by Gauss-Laguerre with 64 nodes (Gauss-Hermite alone needs thousands of nodes once the
  Gaussian is much wider than the sigmoid's transition):
  ``paper``: ``sigmoid = H(z) + remainder``, ``P = Phi(m/s) + int_0^inf e^-z [N(-z; m, s) - N(z; m, s)] / (1 + e^-z) dz``;
  ``hpsv3``: ``softplus(-z) = max(0, -z) + log(1 + e^-|z|)``, ``E[max(0, -z)] = s phi(m/s) - m Phi(-m/s)``,
  ``E[log(1 + e^-|z|)] = int_0^inf log(1 + e^-u) [N(u; m, s) + N(-u; m, s)] du``.
Both branches agree with a fine trapezoid reference to ~1e-9 relative error over the ranges tested.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.polynomial.hermite import hermgauss
from numpy.polynomial.laguerre import laggauss

#: ``jrm.rank_loss``: ``paper`` = -log E[sigmoid(z)] (Eq. 4-5); ``hpsv3`` = E[-log sigmoid(z)] (released trainers).
RANK_LOSSES = ("paper", "hpsv3")
RankLoss = Literal["paper", "hpsv3"]
#: ``jrm.lm_reduction``: mean over all rationale tokens of the batch, or Eq. 6's sum per sequence (mean over sequences).
LM_REDUCTIONS = ("token_mean", "sequence_sum")
LMReduction = Literal["token_mean", "sequence_sum"]

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
    margin, spread, out_dtype, shape = _margin_spread(mu_w, sigma_w, mu_l, sigma_l)
    use_wide = (spread >= WIDE_SPREAD) & (margin.abs() <= LAGUERRE_MAX_MARGIN)
    narrow = _log_p_hermite(margin, spread)
    wide = _log_p_step_plus_remainder(
        margin.clamp(-LAGUERRE_MAX_MARGIN, LAGUERRE_MAX_MARGIN), spread.clamp(min=WIDE_SPREAD)
    )
    return torch.where(use_wide, wide, narrow).reshape(shape).to(out_dtype)


def _margin_spread(
    mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype, torch.Size]:
    """Broadcast, then flat float64 margin ``mu_w - mu_l`` and spread ``sqrt(sigma_w^2 + sigma_l^2)``, (N,) each."""
    mu_w, sigma_w, mu_l, sigma_l = torch.broadcast_tensors(mu_w, sigma_w, mu_l, sigma_l)
    margin = (mu_w - mu_l).reshape(-1).double()
    spread = torch.sqrt(sigma_w.reshape(-1).double() ** 2 + sigma_l.reshape(-1).double() ** 2)
    return margin, spread, mu_w.dtype, mu_w.shape


def _expected_softplus_hermite(margin: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """E[softplus(-z)], z ~ N(margin, spread^2), by Gauss-Hermite. Shapes: (N,) -> (N,), float64."""
    x, log_w = (torch.tensor(v, dtype=torch.float64, device=margin.device) for v in _hermite(HERMITE_NODES))
    z = margin[:, None] + math.sqrt(2.0) * spread[:, None] * x[None, :]
    return (log_w.exp()[None, :] * F.softplus(-z)).sum(dim=1)


def _expected_softplus_kink_plus_remainder(margin: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """E[softplus(-z)] as the closed-form E[max(0, -z)] plus a Gauss-Laguerre remainder; for spread >= 3."""
    u, w = (torch.tensor(v, dtype=torch.float64, device=margin.device) for v in _laguerre(LAGUERRE_NODES))
    m, s = margin[:, None], spread[:, None]
    ratio = margin / spread
    standard_pdf = torch.exp(-0.5 * ratio**2) / math.sqrt(2.0 * math.pi)
    kink = spread * standard_pdf - margin * torch.special.ndtr(-ratio)
    norm = 1.0 / (s * math.sqrt(2.0 * math.pi))
    density_sum = norm * (torch.exp(-((u - m) ** 2) / (2.0 * s**2)) + torch.exp(-((u + m) ** 2) / (2.0 * s**2)))
    # int_0^inf e^-u [e^u log(1 + e^-u)] density_sum(u) du; e^u log1p(e^-u) is smooth, log 2 at 0 and -> 1
    smooth = torch.exp(u) * torch.log1p(torch.exp(-u))
    return kink + (w * smooth * density_sum).sum(dim=1)


def expected_log_loss(
    mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> torch.Tensor:
    """E[-log sigmoid(z)], z ~ N(mu_w - mu_l, sigma_w^2 + sigma_l^2): HPSv3's per-pair ranking loss, exact.

    All inputs (N,) (or broadcastable to a common shape), sigmas > 0; returns that shape in the promoted input
    dtype. With sigma -> 0 this is -log sigmoid(mu_w - mu_l); it is >= -log P(w > l) (Jensen).
    """
    margin, spread, out_dtype, shape = _margin_spread(mu_w, sigma_w, mu_l, sigma_l)
    narrow = _expected_softplus_hermite(margin, spread)
    wide = _expected_softplus_kink_plus_remainder(margin, spread.clamp(min=WIDE_SPREAD))
    return torch.where(spread >= WIDE_SPREAD, wide, narrow).reshape(shape).to(out_dtype)


def _empty_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero that still carries a graph to the inputs (an empty batch)."""
    return sum(t.sum() for t in tensors) * 0.0  # type: ignore[return-value]


def uncertainty_rank_loss(
    mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> torch.Tensor:
    """The paper's ranking loss ``-mean log P(w > l)``, ``P = E[sigmoid(z)]`` (Eq. 4-5, DESIGN.md 2.5), exact.

    mu_w, sigma_w: (N,) preferred side's mean and std; mu_l, sigma_l: (N,) rejected side's. Returns a
    scalar; an empty batch gives a zero that still carries a graph to the inputs.
    """
    if mu_w.numel() == 0:
        return _empty_loss(mu_w, sigma_w, mu_l, sigma_l)
    return -log_prob_preferred(mu_w, sigma_w, mu_l, sigma_l).mean()


def hpsv3_rank_loss(
    mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> torch.Tensor:
    """HPSv3's / EditReward's ranking loss ``mean E[-log sigmoid(z)]``, exact (their trainers sample z).

    Same shapes and empty-batch behaviour as :func:`uncertainty_rank_loss`.
    """
    if mu_w.numel() == 0:
        return _empty_loss(mu_w, sigma_w, mu_l, sigma_l)
    return expected_log_loss(mu_w, sigma_w, mu_l, sigma_l).mean()


def rank_loss(
    kind: str, mu_w: torch.Tensor, sigma_w: torch.Tensor, mu_l: torch.Tensor, sigma_l: torch.Tensor
) -> torch.Tensor:
    """``jrm.rank_loss`` by name (:data:`RANK_LOSSES`): ``paper`` or ``hpsv3``; (N,) inputs -> scalar."""
    if kind == "paper":
        return uncertainty_rank_loss(mu_w, sigma_w, mu_l, sigma_l)
    if kind == "hpsv3":
        return hpsv3_rank_loss(mu_w, sigma_w, mu_l, sigma_l)
    raise ValueError(f"rank_loss must be one of {RANK_LOSSES}, got {kind!r}")


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


def lm_target_sequences(target_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) bool target mask -> (N,) the sequence index of each target, in :func:`select_lm_targets`' order."""
    return target_mask[:, 1:].nonzero()[:, 0]


def rationale_lm_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor, reduction: str = "token_mean"
) -> torch.Tensor:
    """Next-token cross-entropy on the rationale tokens only, reduced by ``reduction`` (:func:`reduce_token_nll`).

    logits: (B, L, V) language-head logits at every position; input_ids, target_mask: (B, L) as in
    :func:`select_lm_targets`. Returns a scalar (a graph-connected zero when no position is a target).
    """
    predicted, targets = select_lm_targets(logits, input_ids, target_mask)
    return reduce_token_nll(token_nll(predicted, targets), lm_target_sequences(target_mask), reduction)


def token_nll(predicted_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, V) logits, (N,) ids -> (N,) per-token cross-entropy in fp32."""
    return F.cross_entropy(predicted_logits.float(), targets, reduction="none")


def reduce_token_nll(nll: torch.Tensor, sequence: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-token losses -> the LM loss (``jrm.lm_reduction``, :data:`LM_REDUCTIONS`).

    nll: (N,) per-token cross-entropy; sequence: (N,) the sequence each token belongs to.
    ``token_mean``:   ``sum(nll) / N`` (every rationale token of the batch weighs the same);
    ``sequence_sum``: Eq. 6, ``-sum_t log p(y_t | ...)`` per sequence, then the mean over the sequences that
                      have at least one target token.
    A graph-connected zero when N = 0.
    """
    if reduction not in LM_REDUCTIONS:
        raise ValueError(f"lm_reduction must be one of {LM_REDUCTIONS}, got {reduction!r}")
    if nll.numel() == 0:
        return nll.sum() * 0.0
    if reduction == "token_mean":
        return nll.mean()
    _, per_token_group = torch.unique(sequence, return_inverse=True)
    groups = int(per_token_group.max()) + 1
    sums = torch.zeros(groups, dtype=nll.dtype, device=nll.device).index_add(0, per_token_group, nll)
    return sums.mean()


def token_cross_entropy(predicted_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, V) logits against (N,) ids in fp32; a graph-connected zero when N = 0."""
    if targets.numel() == 0:
        return predicted_logits.sum() * 0.0
    return F.cross_entropy(predicted_logits.float(), targets)
