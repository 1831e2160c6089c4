"""FLUX.1 Kontext [dev] as an RL editing policy, through diffusers' ``FluxKontextPipeline``.

Prompt encoding is the pipeline's own ``encode_prompt`` (CLIP pooled embedding + T5 sequence); the reference
latent is its ``_encode_vae_image`` (VAE mode, ``(z − shift)·scale``), packed into 2x2 patches and appended to
the noisy latent's sequence with position ids whose first axis is 1 (as the pipeline does). Guidance is
Kontext's distilled guidance embedding: the transformer takes ``guidance = text_guidance_scale`` as an input
(one forward per step, no CFG branches; ``image_guidance_scale`` and ``cfg_range`` are unused).

Policy kind ``flux_kontext``; config: the shared policy keys plus the ``flux_kontext`` section
(:class:`FluxKontextConfig`); ``checkpoint`` is a local folder in the diffusers layout (``model_index.json``,
transformer/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/) or None for the tiny
random pipeline of :mod:`policies.diffusers_tiny`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import FluxKontextPipeline
from PIL import Image

from editrl.config import ConfigError, validate_tree
from policies.diffusers_policy import DiffusersEditPolicy, configure_adapter, load_local_pipeline
from policies.diffusers_tiny import build_tiny_flux_kontext
from policies.rollout import EditConditions


@dataclass
class FluxKontextConfig:
    """The ``policy.flux_kontext`` section: what only FLUX.1 Kontext needs.

    max_sequence_length: T5 tokens of the prompt (the pipeline pads to it; at most 512).
    """

    max_sequence_length: int = 512

    def validate(self) -> None:
        if not 1 <= self.max_sequence_length <= 512:
            raise ConfigError(f"max_sequence_length: must be in [1, 512], got {self.max_sequence_length}")


class FluxKontextPolicy(DiffusersEditPolicy):
    """FLUX.1 Kontext editing policy (``policies.base.RLPolicy``) around a ``FluxKontextPipeline``."""

    family = "FLUX.1 Kontext"

    def __init__(self, pipe: FluxKontextPipeline, *, max_sequence_length: int = 512, **kwargs: Any):
        super().__init__(pipe, **kwargs)
        self.max_sequence_length = max_sequence_length

    @torch.no_grad()
    def encode_conditions(self, references: Sequence[Image.Image], instructions: Sequence[str], height: int,
                          width: int) -> EditConditions:
        """T5 sequence (B, L, D) and CLIP pooled (B, D_pool) embeddings; reference latents (C, h, w)."""
        prompt_embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=list(instructions), prompt_2=None, device=self.device,
            max_sequence_length=self.max_sequence_length,
        )
        ref_latents = []
        for image in references:
            pixels = self.reference_pixels(self.resize_reference(image, height, width), height, width)
            latent = self.pipe._encode_vae_image(pixels, generator=None)[0]
            ref_latents.append([latent.to(self.dtype)])
        return EditConditions(
            text_hidden_states=prompt_embeds.to(self.dtype),
            text_attention_mask=torch.ones(prompt_embeds.shape[:2], dtype=torch.bool, device=prompt_embeds.device),
            negative_text_hidden_states=None,
            negative_text_attention_mask=None,
            ref_latents=ref_latents,
            pooled_text_embeds=pooled.to(self.dtype),
        )

    def _position_ids(self, h: int, w: int, ref_h: int, ref_w: int) -> torch.Tensor:
        """(h/2·w/2 + ref_h/2·ref_w/2, 3) position ids: the output's, then the reference's with axis 0 set to 1."""
        latent_ids = self.pipe._prepare_latent_image_ids(1, h // 2, w // 2, self.device, self.dtype)
        image_ids = self.pipe._prepare_latent_image_ids(1, ref_h // 2, ref_w // 2, self.device, self.dtype)
        image_ids[..., 0] = 1
        return torch.cat([latent_ids, image_ids], dim=0)

    def velocity(self, latents: torch.Tensor, sigmas: torch.Tensor, conditions: EditConditions,
                 guided: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """SD3 velocity (N, C, h, w) float32 with the distilled guidance embedding (``guided`` is unused)."""
        n, _, h, w = latents.shape
        refs = torch.stack([r[0] for r in conditions.ref_latents]).to(self.dtype)
        packed = self.pack(latents.to(self.dtype))
        hidden = torch.cat([packed, self.pack(refs)], dim=1)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((n,), float(guidance_scale), device=self.device, dtype=torch.float32)
        text = conditions.text_hidden_states.to(self.dtype)
        output = self.transformer(
            hidden_states=hidden,
            timestep=sigmas.to(self.dtype),
            guidance=guidance,
            pooled_projections=conditions.pooled_text_embeds.to(self.dtype),
            encoder_hidden_states=text,
            txt_ids=torch.zeros(text.shape[1], 3, device=self.device, dtype=self.dtype),
            img_ids=self._position_ids(h, w, refs.shape[2], refs.shape[3]),
            return_dict=False,
        )[0]
        return self.unpack(output[:, : packed.shape[1]].float(), h, w)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 3, H, W) float32 in [0, 1]: ``z/scale + shift`` through the VAE decoder."""
        vae = self.pipe.vae
        z = latents.to(device=self.device, dtype=vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        images = vae.decode(z, return_dict=False)[0].float()
        return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def build_flux_kontext(cfg: Any) -> FluxKontextPolicy:
    """The policy of kind ``flux_kontext`` a policy config describes (shared keys + ``flux_kontext`` section):
    load (or build tiny), move and cast, add or load LoRA, sampling defaults from ``cfg.sampling_settings()``."""
    cfg.validate()
    section = getattr(cfg, "flux_kontext", None) or FluxKontextConfig()
    validate_tree(section, "flux_kontext.")
    if cfg.checkpoint is None:
        pipe = build_tiny_flux_kontext(cfg.tiny_seed)
    else:
        pipe = load_local_pipeline(FluxKontextPipeline, cfg.checkpoint, cfg.torch_dtype)
    policy = FluxKontextPolicy(pipe, sampling=cfg.sampling_settings(), max_sequence_length=section.max_sequence_length)
    policy.to(cfg.device, cfg.torch_dtype)
    return configure_adapter(policy, cfg)
