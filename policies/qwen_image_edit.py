"""Qwen-Image-Edit as an RL editing policy, through diffusers' ``QwenImageEditPipeline``.

Prompt encoding is the pipeline's own ``encode_prompt``: Qwen2.5-VL reads the edit template with the reference
image (so the negative prompt's embedding depends on the image too). The reference latent is its
``_encode_vae_image`` (the Qwen-Image VAE, normalised by ``latents_mean``/``latents_std``), packed and appended
to the noisy latent's sequence with ``img_shapes`` as the pipeline builds them. Guidance is Qwen-Image-Edit's
true CFG with a negative prompt, ``uncond + s·(cond − uncond)`` rescaled per token to the norm of ``cond``
(:func:`true_cfg`), with ``s = text_guidance_scale``, applied at the steps inside ``cfg_range`` when s > 1; the
two branches go through one transformer call.

Policy kind ``qwen_image_edit``; config: the shared policy keys plus the ``qwen_image_edit`` section
(:class:`QwenImageEditConfig`); ``checkpoint`` is a local folder in the diffusers layout (``model_index.json``,
transformer/, vae/, text_encoder/, tokenizer/, processor/, scheduler/) or None for the tiny random pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import QwenImageEditPipeline
from PIL import Image

from editrl.config import ConfigError, validate_tree
from policies.diffusers_policy import DiffusersEditPolicy, configure_adapter, load_local_pipeline
from policies.diffusers_tiny import build_tiny_qwen_image_edit
from policies.rollout import EditConditions


@dataclass
class QwenImageEditConfig:
    """The ``policy.qwen_image_edit`` section: what only Qwen-Image-Edit needs.

    negative_prompt:     text of the true-CFG negative branch (the released examples use " ").
    max_sequence_length: prompt tokens after the template (the pipeline's limit is 1024).
    """

    negative_prompt: str = " "
    max_sequence_length: int = 1024

    def validate(self) -> None:
        if not 1 <= self.max_sequence_length <= 1024:
            raise ConfigError(
                f"max_sequence_length: must be in [1, 1024], got {self.max_sequence_length}"
            )
        if not self.negative_prompt:
            raise ConfigError("negative_prompt: must be a non-empty string (e.g. ' ')")


def true_cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Qwen-Image's true CFG: ``uncond + scale·(cond − uncond)``, rescaled so each token keeps ``cond``'s norm.

    cond, uncond: (N, S, D) packed predictions. Returns (N, S, D).
    """
    combined = uncond + scale * (cond - uncond)
    return combined * (torch.norm(cond, dim=-1, keepdim=True) / torch.norm(combined, dim=-1, keepdim=True))


def _pad_to(hidden: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (N, L, D) states and their (N, L) mask on the right to ``length`` tokens."""
    extra = length - hidden.shape[1]
    if extra == 0:
        return hidden, mask
    return (torch.cat([hidden, hidden.new_zeros(hidden.shape[0], extra, hidden.shape[2])], dim=1),
            torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1))


class QwenImageEditPolicy(DiffusersEditPolicy):
    """Qwen-Image-Edit policy (``policies.base.RLPolicy``) around a ``QwenImageEditPipeline``."""

    family = "Qwen-Image-Edit"

    def __init__(self, pipe: QwenImageEditPipeline, *, negative_prompt: str = " ", max_sequence_length: int = 1024,
                 **kwargs: Any):
        super().__init__(pipe, **kwargs)
        self.negative_prompt = negative_prompt
        self.max_sequence_length = max_sequence_length

    @property
    def latent_channels(self) -> int:
        return self.pipe.latent_channels

    def _encode(self, prompts: list[str], images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = self.pipe.encode_prompt(prompt=prompts, image=images, device=self.device,
                                               max_sequence_length=self.max_sequence_length)
        if mask is None:  # the pipeline drops an all-ones mask
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return embeds.to(self.dtype), mask.bool()

    @torch.no_grad()
    def encode_conditions(self, references: Sequence[Image.Image], instructions: Sequence[str], height: int,
                          width: int) -> EditConditions:
        """Instruction and negative prompt embeddings (each read with the reference), reference latents (C, h, w)."""
        resized = [self.resize_reference(image, height, width) for image in references]
        positive, positive_mask = self._encode(list(instructions), resized)
        negative, negative_mask = self._encode([self.negative_prompt] * len(resized), resized)
        ref_latents = []
        for image in resized:
            pixels = self.reference_pixels(image, height, width).unsqueeze(2)  # (1, 3, 1, H, W): one frame
            latent = self.pipe._encode_vae_image(pixels, generator=None)[0, :, 0]
            ref_latents.append([latent.to(self.dtype)])
        return EditConditions(positive, positive_mask, negative, negative_mask, ref_latents)

    def velocity(self, latents: torch.Tensor, sigmas: torch.Tensor, conditions: EditConditions,
                 guided: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """SD3 velocity (N, C, h, w) float32; true CFG on the ``guided`` rows when ``guidance_scale`` > 1."""
        n, _, h, w = latents.shape
        rows = torch.nonzero(guided).flatten().tolist() if guidance_scale > 1.0 else []
        if rows and conditions.negative_text_hidden_states is None:
            raise ValueError("true CFG needs negative prompt embeddings, but the conditions have none")
        refs = torch.stack([r[0] for r in conditions.ref_latents]).to(self.dtype)
        packed = self.pack(latents.to(self.dtype))
        hidden = torch.cat([packed, self.pack(refs)], dim=1)
        texts = [(conditions.text_hidden_states, conditions.text_attention_mask)]
        if rows:
            texts.append((conditions.negative_text_hidden_states[rows], conditions.negative_text_attention_mask[rows]))
            hidden = torch.cat([hidden, hidden[rows]])
            sigmas = torch.cat([sigmas, sigmas[rows]])
        length = max(t.shape[1] for t, _ in texts)
        padded = [_pad_to(t, m, length) for t, m in texts]
        shapes = [(1, h // 2, w // 2), (1, refs.shape[2] // 2, refs.shape[3] // 2)]
        output = self.transformer(
            hidden_states=hidden,
            timestep=sigmas.to(self.dtype),
            encoder_hidden_states=torch.cat([p[0] for p in padded]).to(self.dtype),
            encoder_hidden_states_mask=torch.cat([p[1] for p in padded]),
            img_shapes=[shapes] * hidden.shape[0],
            return_dict=False,
        )[0][:, : packed.shape[1]].float()
        velocity = output[:n]
        if rows:
            velocity = velocity.clone()
            velocity[rows] = true_cfg(velocity[rows], output[n:], guidance_scale)
        return self.unpack(velocity, h, w)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 3, H, W) float32 in [0, 1]: ``z·std + mean`` through the (one-frame) VAE decoder."""
        vae = self.pipe.vae
        shape = (1, self.latent_channels, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(self.device, vae.dtype)
        std = torch.tensor(vae.config.latents_std).view(shape).to(self.device, vae.dtype)
        z = latents.to(device=self.device, dtype=vae.dtype).unsqueeze(2) * std + mean
        images = vae.decode(z, return_dict=False)[0][:, :, 0].float()
        return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def build_qwen_image_edit(cfg: Any) -> QwenImageEditPolicy:
    """The policy of kind ``qwen_image_edit`` a policy config describes (shared keys + ``qwen_image_edit``
    section): load (or build tiny), move and cast, add or load LoRA, sampling defaults from the config."""
    cfg.validate()
    section = getattr(cfg, "qwen_image_edit", None) or QwenImageEditConfig()
    validate_tree(section, "qwen_image_edit.")
    if cfg.checkpoint is None:
        pipe = build_tiny_qwen_image_edit(cfg.tiny_seed)
    else:
        pipe = load_local_pipeline(QwenImageEditPipeline, cfg.checkpoint, cfg.torch_dtype)
    policy = QwenImageEditPolicy(pipe, sampling=cfg.sampling_settings(), negative_prompt=section.negative_prompt,
                                 max_sequence_length=section.max_sequence_length)
    policy.to(cfg.device, cfg.torch_dtype)
    return configure_adapter(policy, cfg)
