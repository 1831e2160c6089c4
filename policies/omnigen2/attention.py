"""Self-attention of OmniGen2 blocks: diffusers `Attention` modules driven by our processor.

The modules keep diffusers' submodule names (`to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k`), which
are both the official checkpoint's parameter names and the LoRA targets of the RL recipe. The processor
applies grouped-query attention with per-head RMS q/k norms and complex RoPE, masking padded keys. It uses
PyTorch SDPA; on CUDA with half-precision inputs and `flash_attn` importable it switches to flash-attn's
variable-length kernel, which skips padded tokens entirely.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from policies.omnigen2.rotary import apply_rotary_emb

VarlenAttention = Callable[..., torch.Tensor]


def _flash_attn_varlen() -> VarlenAttention | None:
    """flash-attn's `flash_attn_varlen_func` if the package is installed, else None."""
    if importlib.util.find_spec("flash_attn") is None:
        return None
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func


def build_attention(dim: int, num_heads: int, num_kv_heads: int) -> Attention:
    """A bias-free GQA self-attention module with RMS q/k norms (eps 1e-5), as in OmniGen2 blocks."""
    return Attention(
        query_dim=dim,
        cross_attention_dim=None,
        dim_head=dim // num_heads,
        qk_norm="rms_norm",
        heads=num_heads,
        kv_heads=num_kv_heads,
        eps=1e-5,
        bias=False,
        out_bias=False,
        processor=OmniGen2AttnProcessor(),
    )


def varlen_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor,
    scale: float,
    kernel: VarlenAttention,
) -> torch.Tensor:
    """Attention over the valid tokens only, through a flash-attn style variable-length kernel.

    query, key, value: (B, L, heads, head_dim) with key/value heads already repeated; key_mask: (B, L) bool,
    True for valid tokens (queries use the same mask). Returns (B, L, heads, head_dim) with zeros at padded
    positions. `kernel(q, k, v, cu_seqlens_q=, cu_seqlens_k=, max_seqlen_q=, max_seqlen_k=, dropout_p=,
    causal=, softmax_scale=)` takes packed (total_tokens, heads, head_dim) tensors.
    """
    batch, length = key_mask.shape
    flat_index = key_mask.reshape(-1).nonzero().squeeze(1)  # (total,)
    seqlens = key_mask.sum(dim=1, dtype=torch.int32)  # (B,)
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))  # (B + 1,)
    max_seqlen = int(seqlens.max())

    def pack(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch * length, *t.shape[2:]).index_select(0, flat_index)

    packed = kernel(
        pack(query),
        pack(key),
        pack(value),
        cu_seqlens_q=cu_seqlens,
        cu_seqlens_k=cu_seqlens,
        max_seqlen_q=max_seqlen,
        max_seqlen_k=max_seqlen,
        dropout_p=0.0,
        causal=False,
        softmax_scale=scale,
    )
    out = packed.new_zeros(batch * length, *packed.shape[1:])
    out = out.index_copy(0, flat_index, packed)
    return out.reshape(batch, length, *packed.shape[1:])


class OmniGen2AttnProcessor:
    """Joint self-attention with RoPE and key-padding masks (SDPA; flash-attn varlen on CUDA when present).

    `varlen_kernel` forces the variable-length path with the given kernel (used to test it on CPU).
    """

    def __init__(self, varlen_kernel: VarlenAttention | None = None) -> None:
        self.varlen_kernel = varlen_kernel
        self._flash_kernel = _flash_attn_varlen()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states: (B, L, dim); attention_mask: (B, L) bool, True = valid token; image_rotary_emb:
        (B, L, head_dim // 2) complex. Returns (B, L, dim). Padded query rows hold unspecified values."""
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, length, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        key = attn.to_k(context)
        value = attn.to_v(context)
        head_dim = query.shape[-1] // attn.heads
        kv_heads = key.shape[-1] // head_dim
        dtype = query.dtype

        query = query.view(batch, -1, attn.heads, head_dim)
        key = key.view(batch, -1, kv_heads, head_dim)
        value = value.view(batch, -1, kv_heads, head_dim)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb)
            key = apply_rotary_emb(key, image_rotary_emb)
        query, key = query.to(dtype), key.to(dtype)

        groups = attn.heads // kv_heads
        key = key.repeat_interleave(groups, dim=2)
        value = value.repeat_interleave(groups, dim=2)

        kernel = self.varlen_kernel
        if kernel is None and query.is_cuda and dtype in (torch.float16, torch.bfloat16):
            kernel = self._flash_kernel
        if kernel is not None and attention_mask is not None:
            out = varlen_attention(query, key, value, attention_mask.bool(), attn.scale, kernel)
        else:
            sdpa_mask = None if attention_mask is None else attention_mask.bool().view(batch, 1, 1, -1)
            out = F.scaled_dot_product_attention(
                query.transpose(1, 2),
                key.transpose(1, 2),
                value.transpose(1, 2),
                attn_mask=sdpa_mask,
                scale=attn.scale,
            ).transpose(1, 2)
        out = out.reshape(batch, length, attn.heads * head_dim).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)
