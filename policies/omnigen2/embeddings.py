"""Timestep and caption embeddings of the OmniGen2 transformer."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from policies.omnigen2.blocks import conditioning_dim


class Lumina2CombinedTimestepCaptionEmbedding(nn.Module):
    """Sinusoidal timestep -> MLP (width `min(hidden, 1024)`); text-encoder features -> RMSNorm -> Linear."""

    def __init__(
        self,
        hidden_size: int,
        text_feat_dim: int,
        frequency_embedding_size: int = 256,
        norm_eps: float = 1e-5,
        timestep_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.time_proj = Timesteps(
            num_channels=frequency_embedding_size,
            flip_sin_to_cos=True,
            downscale_freq_shift=0.0,
            scale=timestep_scale,
        )
        self.timestep_embedder = TimestepEmbedding(
            in_channels=frequency_embedding_size, time_embed_dim=conditioning_dim(hidden_size)
        )
        self.caption_embedder = nn.Sequential(
            nn.RMSNorm(text_feat_dim, eps=norm_eps),
            nn.Linear(text_feat_dim, hidden_size, bias=True),
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Small-normal timestep MLP and caption projection, zero biases."""
        nn.init.normal_(self.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.zeros_(self.timestep_embedder.linear_1.bias)
        nn.init.normal_(self.timestep_embedder.linear_2.weight, std=0.02)
        nn.init.zeros_(self.timestep_embedder.linear_2.bias)
        nn.init.trunc_normal_(self.caption_embedder[1].weight, std=0.02)
        nn.init.zeros_(self.caption_embedder[1].bias)

    def forward(
        self, timestep: torch.Tensor, text_hidden_states: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """timestep: (B,) in [0, 1] (1 = clean data); text_hidden_states: (B, Lt, text_feat_dim).
        Returns temb (B, min(hidden, 1024)) and caption tokens (B, Lt, hidden)."""
        temb = self.timestep_embedder(self.time_proj(timestep).to(dtype=dtype))
        return temb, self.caption_embedder(text_hidden_states)
