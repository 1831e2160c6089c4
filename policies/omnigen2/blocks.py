"""Building blocks of the OmniGen2 transformer (Lumina-2 style): adaptive norms, SwiGLU MLP, the block.

Parameter names follow the official checkpoint (`norm1.linear`, `feed_forward.linear_1`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from policies.omnigen2.attention import build_attention


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """`silu(gate) * up`, the SiLU taken in float32."""
    return F.silu(gate.float()).to(gate.dtype) * up


def conditioning_dim(hidden_size: int) -> int:
    """Width of the timestep embedding that modulates every block: `min(hidden_size, 1024)`."""
    return min(hidden_size, 1024)


class LuminaRMSNormZero(nn.Module):
    """RMS norm scaled by the timestep embedding; also returns the attention gate and the MLP scale/gate."""

    def __init__(self, embedding_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(conditioning_dim(embedding_dim), 4 * embedding_dim, bias=True)
        self.norm = nn.RMSNorm(embedding_dim, eps=norm_eps)

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, L, D), temb: (B, Dc) -> normed x (B, L, D), gate_msa, scale_mlp, gate_mlp: (B, D)."""
        scale_msa, gate_msa, scale_mlp, gate_mlp = self.linear(self.silu(temb)).chunk(4, dim=1)
        return self.norm(x) * (1 + scale_msa[:, None]), gate_msa, scale_mlp, gate_mlp


class LuminaLayerNormContinuous(nn.Module):
    """Final adaptive layer norm (no affine) followed by the projection to patch pixels."""

    def __init__(self, embedding_dim: int, conditioning_embedding_dim: int, out_dim: int, eps: float = 1e-6):
        super().__init__()
        self.silu = nn.SiLU()
        self.linear_1 = nn.Linear(conditioning_embedding_dim, embedding_dim, bias=True)
        self.norm = nn.LayerNorm(embedding_dim, eps, elementwise_affine=False)
        self.linear_2 = nn.Linear(embedding_dim, out_dim, bias=True)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D), temb: (B, Dc) -> (B, L, out_dim)."""
        scale = self.linear_1(self.silu(temb).to(x.dtype))
        return self.linear_2(self.norm(x) * (1 + scale)[:, None, :])


class LuminaFeedForward(nn.Module):
    """SwiGLU MLP; the inner width is `ffn_dim_multiplier * inner_dim` rounded up to `multiple_of`."""

    def __init__(
        self, dim: int, inner_dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None
    ):
        super().__init__()
        if ffn_dim_multiplier is not None:
            inner_dim = int(ffn_dim_multiplier * inner_dim)
        inner_dim = multiple_of * ((inner_dim + multiple_of - 1) // multiple_of)
        self.linear_1 = nn.Linear(dim, inner_dim, bias=False)
        self.linear_2 = nn.Linear(inner_dim, dim, bias=False)
        self.linear_3 = nn.Linear(dim, inner_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.linear_2(swiglu(self.linear_1(x), self.linear_3(x)))


class OmniGen2TransformerBlock(nn.Module):
    """Pre/post-normed self-attention + SwiGLU block; with `modulation` the timestep embedding scales the
    norms and tanh-gates both residual branches (image and joint blocks), without it the block is plain
    (text refiner)."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        num_kv_heads: int,
        multiple_of: int,
        ffn_dim_multiplier: float | None,
        norm_eps: float,
        modulation: bool = True,
    ) -> None:
        super().__init__()
        self.head_dim = dim // num_attention_heads
        self.modulation = modulation
        self.attn = build_attention(dim, num_attention_heads, num_kv_heads)
        self.feed_forward = LuminaFeedForward(dim, 4 * dim, multiple_of, ffn_dim_multiplier)
        self.norm1 = LuminaRMSNormZero(dim, norm_eps) if modulation else nn.RMSNorm(dim, eps=norm_eps)
        self.ffn_norm1 = nn.RMSNorm(dim, eps=norm_eps)
        self.norm2 = nn.RMSNorm(dim, eps=norm_eps)
        self.ffn_norm2 = nn.RMSNorm(dim, eps=norm_eps)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform projections; zero modulation so that a fresh block starts ungated."""
        for linear in (self.attn.to_q, self.attn.to_k, self.attn.to_v, self.attn.to_out[0]):
            nn.init.xavier_uniform_(linear.weight)
        for linear in (self.feed_forward.linear_1, self.feed_forward.linear_2, self.feed_forward.linear_3):
            nn.init.xavier_uniform_(linear.weight)
        if self.modulation:
            nn.init.zeros_(self.norm1.linear.weight)
            nn.init.zeros_(self.norm1.linear.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        image_rotary_emb: torch.Tensor,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states: (B, L, D); attention_mask: (B, L) bool; image_rotary_emb: (B, L, head_dim // 2)
        complex; temb: (B, Dc), required with modulation. Returns (B, L, D)."""
        if self.modulation:
            if temb is None:
                raise ValueError("temb must be given to a block with modulation")
            normed, gate_msa, scale_mlp, gate_mlp = self.norm1(hidden_states, temb)
        else:
            normed = self.norm1(hidden_states)
        attn_out = self.attn(
            hidden_states=normed,
            encoder_hidden_states=normed,
            attention_mask=attention_mask,
            image_rotary_emb=image_rotary_emb,
        )
        if self.modulation:
            hidden_states = hidden_states + gate_msa.unsqueeze(1).tanh() * self.norm2(attn_out)
            mlp_out = self.feed_forward(self.ffn_norm1(hidden_states) * (1 + scale_mlp.unsqueeze(1)))
            return hidden_states + gate_mlp.unsqueeze(1).tanh() * self.ffn_norm2(mlp_out)
        hidden_states = hidden_states + self.norm2(attn_out)
        return hidden_states + self.ffn_norm2(self.feed_forward(self.ffn_norm1(hidden_states)))
