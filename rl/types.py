"""Typed records that cross actor boundaries in the Flow-GRPO pipeline (no dicts, no tuples of tensors).

Flow of one round: controller -> :class:`SampleRequest` -> sampler -> (``Rollout``, :class:`ScoringInput`)
-> reward actor -> :class:`RewardResult` -> controller -> :class:`RoundAdvantages` (a :class:`LearnChunk` per
chunk) -> learner -> :class:`LearnerStats` + :class:`WeightSyncPayload` -> samplers; the controller sums it up
in a :class:`RoundSummary` with a :class:`RoundTiming`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from PIL import Image

from reward.base import RewardScores


@dataclass(frozen=True)
class InstructionRecord:
    """One line of the instruction JSONL: an id, the instruction and 1-5 reference image paths (absolute)."""

    record_id: str
    instruction: str
    sources: tuple[Path, ...]


@dataclass
class SampleRequest:
    """Work for one sampler call: ``samples_per_group`` SDE samples for each of ``len(instructions)`` groups.

    A group of G samples may be split over several requests (same group id, different seeds); advantages are
    normalised over the whole round by group id, so the split does not change them.

    record_ids / instructions / sources: one entry per group; ``sources[g]`` holds the reference images.
    group_ids:        (n_groups,) int64, round-unique id of each group (advantages are normalised per id).
    seed:             seeds the SDE noise of this chunk, so re-issuing the work reproduces it.
    learner_version:  the newest adapter version the learner has produced; the sampler refuses to run if its
                      own version lags it by more than its configured maximum.
    sde_window:       (start, end): the steps sampled with the SDE this round (the rest with the ODE); None = all.
    """

    record_ids: list[str]
    instructions: list[str]
    sources: list[list[Image.Image]]
    group_ids: torch.Tensor
    samples_per_group: int
    seed: int
    learner_version: int
    sde_window: tuple[int, int] | None = None

    @property
    def num_samples(self) -> int:
        return len(self.instructions) * self.samples_per_group


@dataclass
class ScoringInput:
    """What the reward actor needs for B = n_groups * samples_per_group samples (no latents, so it ships small).

    sources:      B source images (the first reference image of each sample's instruction).
    edits:        B edited images.
    instructions: B instructions.
    """

    sources: list[Image.Image]
    edits: list[Image.Image]
    instructions: list[str]


@dataclass
class RewardResult:
    """Scores of one chunk; samples whose reward failed carry NaN and are dropped later.

    reward:     (B,) float32, NaN where scoring failed or the model returned a non-finite value.
    mu:         (B, D) float32 per-dimension means (NaN rows where failed).
    dimensions: the D dimension names.
    n_failed:   samples whose reward is not finite (model NaN/inf or an exception while scoring).
    error:      the exception text if the whole chunk failed to score, else "".
    """

    reward: torch.Tensor
    mu: torch.Tensor
    dimensions: tuple[str, ...]
    n_failed: int
    error: str = ""

    @staticmethod
    def from_scores(scores: RewardScores) -> RewardResult:
        reward = scores.reward.detach().float().cpu()
        mu = scores.mu.detach().float().cpu()
        bad = ~torch.isfinite(reward) | ~torch.isfinite(mu).all(dim=1)
        reward = torch.where(bad, torch.full_like(reward, float("nan")), reward)
        return RewardResult(reward, mu, tuple(scores.dimensions), int(bad.sum()))

    @staticmethod
    def failed(num_samples: int, dimensions: tuple[str, ...], error: str) -> RewardResult:
        nan = float("nan")
        return RewardResult(
            torch.full((num_samples,), nan), torch.full((num_samples, len(dimensions)), nan), dimensions,
            num_samples, error,
        )


@dataclass
class LearnChunk:
    """Per-sample training targets for one sampled chunk (the rollout itself travels as a Ray object).

    advantages:   (B,) float32, 0 where ``valid`` is False.
    valid:        (B,) bool, samples that enter the loss.
    step_indices: (B, K) int64, the trained SDE steps of each sample.
    minibatch:    (B,) int64, the round's minibatch (optimizer step) each kept sample belongs to, -1 where not
                  kept (:func:`rl.algorithms.assign_minibatches`, over the whole round).
    """

    advantages: torch.Tensor
    valid: torch.Tensor
    step_indices: torch.Tensor
    minibatch: torch.Tensor


@dataclass
class RoundAdvantages:
    """The learner's targets for one round, one :class:`LearnChunk` per sampled chunk, and what was kept.

    chunks:        one per chunk, in chunk order; N = sum of their B samples.
    n_samples:     N, samples drawn in the round.
    n_kept:        samples that enter the loss (finite reward and a non-zero spread in their group).
    n_zero_spread: samples dropped because every sample of their group scored the same.
    n_nonfinite:   samples dropped because their reward is not finite (scoring failed).
    mean / std / abs_max: statistics of the kept samples' advantages (0.0 when none is kept).
    minibatch_elements: kept (sample, trained step) elements of each of the round's ``num_updates_per_step``
                   minibatches, over all chunks (the loss denominator of each optimizer step).
    """

    chunks: list[LearnChunk]
    n_samples: int
    n_kept: int
    n_zero_spread: int
    n_nonfinite: int
    mean: float
    std: float
    abs_max: float
    minibatch_elements: list[int] = field(default_factory=list)


@dataclass
class LearnerStats:
    """What one learner round reports (averaged over its optimizer steps' elements, all workers).

    policy_loss / kl / loss: the loss terms (loss = policy_loss + beta * kl).
    clip_fraction / approx_kl: ratio statistics of the trained steps.
    ratio_mean / ratio_max_dev: mean ratio and max |ratio - 1| over all optimizer steps.
    first_update_ratio_max_dev: max |ratio - 1| in the first optimizer step (first minibatch of the first
                   epoch; exactly 0 on fresh on-policy rollouts).
    grad_norm: total LoRA gradient norm before clipping (mean over the optimizer steps).
    compute_seconds: wall time inside the learner's round (slowest worker), fetching rollouts included.
    n_samples / n_elements: kept samples and (sample, step) elements of one pass over the round, all workers.
    optimizer_steps: optimizer steps taken (non-empty minibatches x ``num_epochs_per_step``).
    version: adapter version after the round.
    """

    policy_loss: float
    kl: float
    loss: float
    clip_fraction: float
    approx_kl: float
    ratio_mean: float
    ratio_max_dev: float
    first_update_ratio_max_dev: float
    compute_seconds: float
    grad_norm: float
    n_samples: int
    n_elements: int
    version: int
    optimizer_steps: int


@dataclass
class WeightSyncPayload:
    """LoRA adapter tensors (only those) sent from the learner to every sampler after a round.

    tensors: adapter parameter name -> tensor (CPU, the learner's dtype).
    version: the learner's adapter version these weights are.
    """

    tensors: dict[str, torch.Tensor]
    version: int

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


@dataclass
class RoundTiming:
    """Wall-clock seconds of one round, split by stage (driver's view; overlap shows as a smaller total).

    sample / reward: time the driver waited for rollouts / scores not yet ready.
    learn / sync:    time waiting for the learner and for samplers to load the new weights.
    idle:            the rest of the round (controller bookkeeping, serialisation, scheduling).
    total:           the round from waiting for its samples to queueing the weight sync (logging, eval hooks
                     and checkpoints are not in it).
    """

    sample: float = 0.0
    reward: float = 0.0
    learn: float = 0.0
    sync: float = 0.0
    idle: float = 0.0
    total: float = 0.0

    @staticmethod
    def from_phases(timings: dict[str, float]) -> RoundTiming:
        """From :func:`editrl.timing.phase_timer` seconds keyed by this class's field names (absent: 0.0).

        ``idle`` is derived: ``total`` less the other phases, at least 0. An unknown or an ``idle`` key is an
        error (a misspelt phase would otherwise be lost silently).
        """
        names = {f.name for f in fields(RoundTiming)} - {"idle"}
        unknown = sorted(set(timings) - names)
        if unknown:
            raise ValueError(f"unknown round phases {unknown}; known: {sorted(names)}")
        timing = RoundTiming(**timings)
        timing.idle = max(0.0, timing.total - timing.sample - timing.reward - timing.learn - timing.sync)
        return timing


@dataclass
class RoundSummary:
    """Everything the controller logs about one round.

    reward_mean / reward_std: per dimension name (plus ``"reward"`` for the combined scalar), finite only.
    advantage stats over kept samples; dropped-sample counts; learner stats; timing; bytes synced.
    """

    step: int
    reward_mean: dict[str, float]
    reward_std: dict[str, float]
    advantage_mean: float
    advantage_std: float
    advantage_abs_max: float
    n_samples: int
    n_kept: int
    n_zero_spread: int
    n_reward_failed: int
    learner: LearnerStats | None
    timing: RoundTiming
    sync_bytes: int
    sampler_restarts: int = 0
    extra: dict[str, float] = field(default_factory=dict)
