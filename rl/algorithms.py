"""Flow-GRPO algorithm functions (DESIGN.md section 2.3): small, pure, shapes in every docstring.

Nothing here touches a model, a device placement or Ray; the learner and the controller call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ADVANTAGE_EPS = 1e-4


@dataclass
class GroupAdvantages:
    """Advantages of B samples.

    advantages:   (B,) float32, normalised and clipped; 0 where ``valid`` is False.
    valid:        (B,) bool, samples that enter the loss (finite reward, group with non-zero spread).
    n_zero_spread: samples dropped because every finite reward of their group is equal.
    n_nonfinite:  samples dropped because their reward is NaN/inf.
    """

    advantages: torch.Tensor
    valid: torch.Tensor
    n_zero_spread: int
    n_nonfinite: int


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    std_over_batch: bool = False,
    clip: float = 5.0,
    eps: float = ADVANTAGE_EPS,
) -> GroupAdvantages:
    """GRPO advantages ``A_i = (r_i - mean_g) / (std_g + eps)`` clipped to ``[-clip, clip]``.

    rewards:   (B,) float, may hold NaN/inf (those samples are dropped and counted, never normalised).
    group_ids: (B,) int64, samples sharing an id form a group (one instruction).
    std_over_batch: use the std of all finite rewards of the batch instead of the group's.
    The std is the population std (``unbiased=False``), as in the public Flow-GRPO code. A group whose
    finite rewards are all equal (including a group of one) carries no signal: its samples are masked out.
    Returns :class:`GroupAdvantages` with (B,) tensors.
    """
    if rewards.ndim != 1 or group_ids.shape != rewards.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be (B,)")
    rewards = rewards.to(torch.float64)
    finite = torch.isfinite(rewards)
    advantages = torch.zeros_like(rewards)
    valid = torch.zeros_like(finite)
    batch_std = rewards[finite].std(unbiased=False) if finite.sum() > 1 else torch.tensor(0.0, dtype=torch.float64)
    n_zero_spread = 0
    for gid in torch.unique(group_ids):
        members = (group_ids == gid) & finite
        r = rewards[members]
        if r.numel() < 2 or bool((r == r[0]).all()):
            n_zero_spread += int(members.sum())
            continue
        std = batch_std if std_over_batch else r.std(unbiased=False)
        advantages[members] = (r - r.mean()) / (std + eps)
        valid[members] = True
    advantages = advantages.clamp(-clip, clip).to(torch.float32)
    return GroupAdvantages(advantages, valid, n_zero_spread, int((~finite).sum()))


def num_trained_steps(num_steps: int, fraction: float) -> int:
    """K = max(1, round(fraction * T)): how many of the T SDE steps of each sample are trained."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * num_steps))


def trained_step_indices(
    batch_size: int, num_steps: int, fraction: float, generator: torch.Generator, *, offset: int = 0
) -> torch.Tensor:
    """A random subset of ``K = max(1, round(fraction * T))`` of ``T = num_steps`` steps per sample, sorted,
    without repeats, shifted by ``offset`` (the first step of an SDE window; 0 = steps ``[0, T)``).

    Returns (B, K) int64 in ``[offset, offset + T)``; each row is drawn independently from ``generator``.
    """
    k = num_trained_steps(num_steps, fraction)
    rows = [torch.randperm(num_steps, generator=generator)[:k].sort().values + offset for _ in range(batch_size)]
    return torch.stack(rows) if rows else torch.zeros(0, k, dtype=torch.long)


def draw_sde_window(
    num_steps: int, size: int, window_range: tuple[int, int] | None, generator: torch.Generator
) -> tuple[int, int] | None:
    """The round's SDE window ``(start, start + size)`` of the T steps, its start uniform over the positions
    that keep it inside ``window_range`` ((start, end), end exclusive; None = ``(0, T)``), as Flow-GRPO-Fast
    draws it. ``size`` 0 = no window (None: the SDE on every step).
    """
    if size == 0:
        return None
    low, high = window_range if window_range is not None else (0, num_steps)
    if not (0 <= low and low + size <= high <= num_steps):
        raise ValueError(f"an SDE window of {size} steps does not fit [{low}, {high}) of T={num_steps} steps")
    start = low + int(torch.randint(high - size - low + 1, (1,), generator=generator))
    return start, start + size


def clipped_surrogate(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float = 1e-4,
    eps_high: float = 5e-4,
) -> torch.Tensor:
    """Per-element asymmetric clipped policy loss ``max(-A*rho, -A*clip(rho, 1-eps_low, 1+eps_high))``.

    log_prob, old_log_prob: (B, K) log-probs of the trained steps under the current / sampling weights.
    advantages: (B,) per-sample advantage, broadcast over K.
    Returns (B, K); the caller averages (``mean`` over the kept elements is the DESIGN loss).
    """
    ratio = torch.exp(log_prob - old_log_prob)
    adv = advantages[:, None]
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return torch.maximum(unclipped, clipped)


def kl_to_reference(
    mean: torch.Tensor,
    ref_mean: torch.Tensor,
    sigma_t: torch.Tensor,
    dt: torch.Tensor,
    *,
    exact: bool = False,
) -> torch.Tensor:
    """KL between the SDE transitions of the policy and the reference (same x_t, same step).

    mean, ref_mean: (B, K, ...) transition means mu_theta and mu_ref.
    sigma_t:        (B, K) SDE diffusion coefficient sigma_t of each step (not multiplied by sqrt(dt)).
    dt:             (B, K) step size t' - t > 0.
    Default: ``mean((mu_theta - mu_ref)^2) / (2 sigma_t^2)`` (the public implementations, no dt); with
    ``exact`` the Gaussian KL ``... / (2 sigma_t^2 dt)``. The square is averaged over the latent elements.
    Returns (B, K).
    """
    sq = (mean.float() - ref_mean.float()).pow(2).flatten(2).mean(dim=2)
    denom = 2.0 * sigma_t.float().pow(2)
    if exact:
        denom = denom * dt.float()
    return sq / denom


def clip_fraction(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, *, eps_low: float = 1e-4, eps_high: float = 5e-4
) -> torch.Tensor:
    """Fraction of the (B, K) ratios outside ``[1 - eps_low, 1 + eps_high]``; a 0-d tensor."""
    ratio = torch.exp(log_prob.detach() - old_log_prob)
    return ((ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high)).float().mean()


def approx_kl(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.Tensor:
    """Approximate KL(old || new) ``0.5 * mean((logp - logp_old)^2)`` over (B, K) log-probs; a 0-d tensor."""
    return 0.5 * (log_prob.detach() - old_log_prob).pow(2).mean()


def assign_minibatches(valid: torch.Tensor, num_minibatches: int, generator: torch.Generator) -> torch.Tensor:
    """Split the kept samples of a round into ``num_minibatches`` disjoint, near-equal random minibatches.

    valid: (N,) bool, the samples that enter the loss (the whole round, every chunk, in chunk order).
    The kept samples are shuffled by ``generator`` and cut into contiguous parts whose sizes differ by at
    most one (OmniGen2-RL's / flow_grpo's ``num_updates_per_step`` minibatches: each kept sample lands in
    exactly one; with fewer kept samples than minibatches some minibatches stay empty).
    Returns (N,) int64: the minibatch of each kept sample in ``[0, num_minibatches)``, -1 where not kept.
    """
    if num_minibatches < 1:
        raise ValueError(f"num_minibatches must be >= 1, got {num_minibatches}")
    kept = valid.nonzero().flatten()
    order = kept[torch.randperm(kept.numel(), generator=generator)]
    ids = torch.full(valid.shape, -1, dtype=torch.long)
    ids[order] = torch.arange(kept.numel()) * num_minibatches // max(kept.numel(), 1)
    return ids


def minibatch_element_counts(minibatch: torch.Tensor, num_minibatches: int, steps_per_sample: int) -> list[int]:
    """Trained (sample, step) elements of each minibatch: the loss denominator of its optimizer step.

    minibatch: (N,) int64 minibatch ids of a round's samples (-1 = not kept), see :func:`assign_minibatches`.
    steps_per_sample: K, trained steps of every sample. Returns ``num_minibatches`` ints.
    """
    counts = torch.bincount(minibatch[minibatch >= 0], minlength=num_minibatches)
    return [int(c) * steps_per_sample for c in counts[:num_minibatches]]


def micro_batch_rows(samples: torch.Tensor, num_steps: int, micro_batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cut the (sample, trained step) rows of one chunk's minibatch into micro-batches for back-propagation.

    samples:    (n,) int64 positions of the minibatch's samples in their chunk.
    num_steps:  K, trained steps per sample; rows are ordered trained step first, then sample, so that
                ``micro_batch = n`` (or 0) is one trained step of every sample per graph (the public
                Flow-GRPO trainers' per-timestep back-propagation).
    micro_batch: rows per micro-batch; 0 = n (per trained step); >= n*K = one graph for everything.
    Returns a list of (owners (m,) int64 sample positions, columns (m,) int64 indices into the K trained steps).
    """
    if micro_batch < 0:
        raise ValueError(f"micro_batch must be >= 0, got {micro_batch}")
    n = samples.numel()
    size = micro_batch or n
    owners = samples.repeat(num_steps)
    columns = torch.arange(num_steps).repeat_interleave(n)
    return [(owners[s : s + size], columns[s : s + size]) for s in range(0, n * num_steps, size)] if n else []
