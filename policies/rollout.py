"""Typed rollouts: what a policy sampler returns and what the learner needs to re-score a trajectory."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from policies.settings import SamplingSettings


@dataclass
class EditConditions:
    """Everything the transformer needs besides x_t and t, for B samples (kept on CPU between actors).

    text_hidden_states:           (B, L, D_text) positive prompt embeddings (instruction).
    text_attention_mask:          (B, L) bool.
    negative_text_hidden_states:  (B, L_neg, D_text) negative prompt embeddings (for CFG), or None.
    negative_text_attention_mask: (B, L_neg) bool, or None.
    ref_latents:                  per sample, a list of reference-image latents, each (C, h_j, w_j).
    pooled_text_embeds:           (B, D_pool) pooled prompt embedding (FLUX's CLIP), or None.
    negative_pooled_text_embeds:  (B, D_pool) pooled negative prompt embedding, or None.
    """

    text_hidden_states: torch.Tensor
    text_attention_mask: torch.Tensor
    negative_text_hidden_states: torch.Tensor | None
    negative_text_attention_mask: torch.Tensor | None
    ref_latents: list[list[torch.Tensor]]
    pooled_text_embeds: torch.Tensor | None = None
    negative_pooled_text_embeds: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> EditConditions:
        """A copy with every tensor on ``device``."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return EditConditions(
            text_hidden_states=self.text_hidden_states.to(device),
            text_attention_mask=self.text_attention_mask.to(device),
            negative_text_hidden_states=move(self.negative_text_hidden_states),
            negative_text_attention_mask=move(self.negative_text_attention_mask),
            ref_latents=[[r.to(device) for r in refs] for refs in self.ref_latents],
            pooled_text_embeds=move(self.pooled_text_embeds),
            negative_pooled_text_embeds=move(self.negative_pooled_text_embeds),
        )

    def select(self, indices: list[int]) -> EditConditions:
        """The conditions of samples ``indices`` (repeats allowed), in that order."""
        index = torch.tensor(indices, dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index.to(t.device)]

        return EditConditions(
            text_hidden_states=pick(self.text_hidden_states),
            text_attention_mask=pick(self.text_attention_mask),
            negative_text_hidden_states=pick(self.negative_text_hidden_states),
            negative_text_attention_mask=pick(self.negative_text_attention_mask),
            ref_latents=[list(self.ref_latents[i]) for i in indices],
            pooled_text_embeds=pick(self.pooled_text_embeds),
            negative_pooled_text_embeds=pick(self.negative_pooled_text_embeds),
        )


@dataclass
class Rollout:
    """A batch of B SDE trajectories with T steps each.

    latents:         (B, T+1, C, H, W) float32, x at t_0 (noise) ... t_T (final clean latent).
    log_probs:       (B, T) float32, log-prob of each transition x_i -> x_{i+1} under the sampling weights.
    timesteps:       (T+1,) float32, the time grid t_0 = 0 ... t_T = 1 (OmniGen2 convention, shifted).
    conditions:      the conditioning needed to re-run the transformer on any step.
    images:          (B, 3, H_px, W_px) float32 in [0, 1], decoded final edits.
    noise_level:     the SDE noise coefficient c (sigma in the papers); 0 = ODE.
    sde_window:      (start, end): the steps sampled with the SDE (the others are ODE steps, log-prob 0, and
                     cannot be re-scored); None = every step.
    text_guidance_scale / image_guidance_scale / cfg_range: CFG settings used while sampling (re-used when
                     re-scoring so that log-probs are comparable).
    adapter_version: version of the adapter weights that sampled this rollout (a record of the policy's
                     ``adapter_version`` at sampling time; the policy owns the version).
    instructions:    the B edit instructions.
    group_ids:       (B,) int64, samples with the same id share an instruction (a GRPO group).
    """

    latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    conditions: EditConditions
    images: torch.Tensor
    noise_level: float
    sde_window: tuple[int, int] | None = None
    text_guidance_scale: float = 1.0
    image_guidance_scale: float = 1.0
    cfg_range: tuple[float, float] = (0.0, 1.0)
    adapter_version: int = 0
    instructions: list[str] = field(default_factory=list)
    group_ids: torch.Tensor | None = None


def rollout_from_steps(
    latents: list[torch.Tensor],
    log_probs: list[torch.Tensor],
    timesteps: torch.Tensor,
    conditions: EditConditions,
    images: torch.Tensor,
    settings: SamplingSettings,
    adapter_version: int,
    instructions: list[str],
) -> Rollout:
    """Stack a sampled trajectory into a CPU :class:`Rollout`, refusing non-finite latents or log-probs.

    latents: T+1 tensors (B, C, H, W), x_0 (noise) ... x_T; log_probs: T tensors (B,); timesteps: (T+1,).
    """
    trajectory, step_log_probs = torch.stack(latents, dim=1), torch.stack(log_probs, dim=1)
    if not (torch.isfinite(trajectory).all() and torch.isfinite(step_log_probs).all()):
        raise FloatingPointError("sampling produced non-finite latents or log-probs")
    return Rollout(
        latents=trajectory.cpu(),
        log_probs=step_log_probs.cpu(),
        timesteps=timesteps.cpu(),
        conditions=conditions.to("cpu"),
        images=images.cpu(),
        noise_level=float(settings.noise_level),
        sde_window=settings.sde_window,
        text_guidance_scale=float(settings.text_guidance_scale),
        image_guidance_scale=float(settings.image_guidance_scale),
        cfg_range=settings.cfg_range,
        adapter_version=adapter_version,
        instructions=list(instructions),
    )


@dataclass
class StepLogProbs:
    """Re-scored transitions for K chosen steps of each of B trajectories (differentiable w.r.t. the policy).

    log_prob: (B, K) float32, log-prob of x_{i+1} given x_i under the current (or reference) weights.
    mean:     (B, K, C, H, W) float32, the SDE transition means (for the KL to the reference policy).
    std:      (B, K) float32, the transition stds σ_t·sqrt(dt) (same for policy and reference).
    sigma:    (B, K) float32, the SDE noise scale σ_t of each step (the KL divides by σ_t² or σ_t²·dt).
    dt:       (B, K) float32, t_{i+1} − t_i of each step.
    """

    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    sigma: torch.Tensor
    dt: torch.Tensor


def check_step_indices(rollout: Rollout, step_indices: torch.Tensor) -> None:
    """Refuse step indices (B, K) that cannot be re-scored: wrong shape, out of [0, T), or on an ODE step.

    An ODE step (noise level 0, or outside the rollout's SDE window) is deterministic and has no density.
    """
    batch, num_steps = rollout.log_probs.shape
    if step_indices.ndim != 2 or step_indices.shape[0] != batch:
        raise ValueError(f"step_indices must be (B={batch}, K), got {tuple(step_indices.shape)}")
    if rollout.noise_level <= 0:
        raise ValueError("the rollout was sampled without noise (ODE); it has no log-probs to re-score")
    if step_indices.numel() == 0:
        return
    first, last = int(step_indices.min()), int(step_indices.max())
    if first < 0 or last >= num_steps:
        raise ValueError(f"step_indices must lie in [0, {num_steps - 1}]")
    window = rollout.sde_window
    if window is not None and (first < window[0] or last >= window[1]):
        raise ValueError(
            f"step_indices must lie in the rollout's SDE window [{window[0]}, {window[1]}): the other steps were "
            f"sampled with the ODE and have no log-prob; got {sorted(set(step_indices.reshape(-1).tolist()))}"
        )
