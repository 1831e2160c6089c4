"""JRM's training objective on a batch of preference pairs: ``(1-alpha) L_rank + alpha L_LM``.

One forward over both sides of every pair (2B sequences). Ranking terms (uncertainty-aware, DESIGN.md 2.5):

- per dimension, on the pairs whose human scores for that dimension differ (the higher-scored side wins,
  which need not be ``preferred``); equal scores are ties, skipped and counted;
- the overall preference (``preferred`` beats ``rejected``) on the combined Gaussian score, skipped on ``tie``.

``L_rank`` is the mean over all these comparisons of the chosen objective (``rank_loss``: ``paper`` or
``hpsv3``, :mod:`reward.jrm.loss`). ``L_LM`` is the cross-entropy on the rationale tokens of the sides that
have one (prompt, image and special tokens are never targets), reduced by ``lm_reduction`` (``token_mean`` or
Eq. 6's ``sequence_sum``). A pair without rationales contributes ranking terms only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from reward.base import INSTRUCTION_FOLLOWING, VISUAL_QUALITY
from reward.jrm.loss import lm_target_sequences, rank_loss, reduce_token_nll, token_nll
from reward.jrm.model import JRM
from reward.jrm.pairs import EditScores, LoadedPair

OVERALL = "overall"
#: How each head dimension reads its human score from a record.
SCORE_FIELDS: dict[str, Callable[[EditScores], float]] = {
    INSTRUCTION_FOLLOWING: lambda s: s.instruction_following,
    VISUAL_QUALITY: lambda s: s.visual_quality,
}


@dataclass
class LossBreakdown:
    """Losses of one batch and what went into them.

    total, rank, lm: scalar tensors (``total`` carries the graph; ``rank``/``lm`` are zero when absent).
    compared:        comparisons used per dimension name and ``"overall"``.
    ties_skipped:    comparisons skipped as ties, same keys.
    lm_tokens:       rationale tokens supervised; lm_sequences: sides that had a rationale.
    overall_correct: pairs (non-tie) whose combined mean ranks ``preferred`` strictly higher.
    """

    total: torch.Tensor
    rank: torch.Tensor
    lm: torch.Tensor
    compared: dict[str, int] = field(default_factory=dict)
    ties_skipped: dict[str, int] = field(default_factory=dict)
    lm_tokens: int = 0
    lm_sequences: int = 0
    overall_correct: int = 0


def combined_gaussian(
    mu: torch.Tensor, sigma: torch.Tensor, dimensions: Sequence[str], combine: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) independent per-dimension Gaussians -> (B,) mean and std of their mean / sum / one column."""
    if combine == "mean":
        return mu.mean(dim=1), torch.sqrt((sigma**2).sum(dim=1)) / mu.shape[1]
    if combine == "sum":
        return mu.sum(dim=1), torch.sqrt((sigma**2).sum(dim=1))
    column = list(dimensions).index(combine)
    return mu[:, column], sigma[:, column]


def compute_loss(
    model: JRM,
    pairs: Sequence[LoadedPair],
    alpha: float | None = None,
    rank_objective: str | None = None,
    lm_reduction: str | None = None,
) -> LossBreakdown:
    """The JRM loss of ``pairs``; non-finite -> error naming records.

    alpha, rank_objective (``paper`` | ``hpsv3``), lm_reduction (``token_mean`` | ``sequence_sum``) default to
    the model's ``config.alpha`` / ``config.rank_loss`` / ``config.lm_reduction``.
    """
    if not pairs:
        raise ValueError("compute_loss needs at least one pair")
    alpha = model.config.alpha if alpha is None else float(alpha)
    rank_objective = model.config.rank_loss if rank_objective is None else rank_objective
    lm_reduction = model.config.lm_reduction if lm_reduction is None else lm_reduction
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    unknown = [d for d in model.dimensions if d not in SCORE_FIELDS]
    if unknown:
        raise ValueError(f"no human score field for model dimensions {unknown}; known: {sorted(SCORE_FIELDS)}")
    ids = [p.pair.record_id for p in pairs]
    n = len(pairs)
    rationales = [p.pair.rationales.get("preferred") for p in pairs] + [p.pair.rationales.get("rejected") for p in pairs]
    with_lm = alpha > 0.0 and any(r is not None for r in rationales)
    batch = model.build_inputs(
        sources=[p.source for p in pairs] * 2,
        edits=[p.preferred for p in pairs] + [p.rejected for p in pairs],
        instructions=[p.pair.instruction for p in pairs] * 2,
        rationales=rationales if with_lm else None,
    )
    out = model(batch, with_lm=with_lm)
    mu, sigma = out.scores.mu, out.scores.sigma  # (2n, D)
    bad_rows = (~torch.isfinite(mu).all(dim=1) | ~torch.isfinite(sigma).all(dim=1)).nonzero().flatten().tolist()
    if bad_rows:
        raise FloatingPointError(f"non-finite JRM scores for records {sorted({ids[r % n] for r in bad_rows})}")

    winners, losers = [], []
    compared: dict[str, int] = {}
    ties: dict[str, int] = {}
    for col, name in enumerate(model.dimensions):
        read = SCORE_FIELDS[name]
        pref = torch.tensor([read(p.pair.scores_preferred) for p in pairs])
        rej = torch.tensor([read(p.pair.scores_rejected) for p in pairs])
        rows = torch.arange(n)
        decided = pref != rej
        win_rows = torch.where(pref > rej, rows, rows + n)[decided]
        lose_rows = torch.where(pref > rej, rows + n, rows)[decided]
        winners.append((mu[win_rows, col], sigma[win_rows, col]))
        losers.append((mu[lose_rows, col], sigma[lose_rows, col]))
        compared[name], ties[name] = int(decided.sum()), int((~decided).sum())

    overall_mu, overall_sigma = combined_gaussian(mu, sigma, model.dimensions, model.config.combine)
    decided = torch.tensor([not p.pair.tie for p in pairs])
    rows = torch.arange(n)[decided]
    winners.append((overall_mu[rows], overall_sigma[rows]))
    losers.append((overall_mu[rows + n], overall_sigma[rows + n]))
    compared[OVERALL], ties[OVERALL] = int(decided.sum()), int((~decided).sum())
    overall_correct = int((overall_mu[rows] > overall_mu[rows + n]).sum())

    rank = rank_loss(
        rank_objective,
        torch.cat([w[0] for w in winners]),
        torch.cat([w[1] for w in winners]),
        torch.cat([lo[0] for lo in losers]),
        torch.cat([lo[1] for lo in losers]),
    )
    if with_lm:
        sequences = lm_target_sequences(batch.continuation_mask)  # matches the order of out.lm_targets
        lm = reduce_token_nll(token_nll(out.lm_logits, out.lm_targets), sequences.to(out.lm_logits.device), lm_reduction)
        lm_tokens, lm_sequences = int(out.lm_targets.numel()), sum(r is not None for r in rationales)
    else:
        lm, lm_tokens, lm_sequences = torch.zeros((), device=rank.device), 0, 0
    total = (1.0 - alpha) * rank + alpha * lm if with_lm else (1.0 - alpha) * rank
    if not torch.isfinite(total):
        raise FloatingPointError(f"non-finite JRM loss (rank={rank.item()}, lm={lm.item()}) for records {ids}")
    return LossBreakdown(
        total=total,
        rank=rank.detach(),
        lm=lm.detach(),
        compared=compared,
        ties_skipped=ties,
        lm_tokens=lm_tokens,
        lm_sequences=lm_sequences,
        overall_correct=overall_correct,
    )
