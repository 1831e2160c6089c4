"""OmniGen2 attention: the variable-length (flash-attn style) path equals the masked SDPA path."""

import torch
from diffusers.models.attention_processor import Attention

from policies.omnigen2.attention import OmniGen2AttnProcessor, varlen_attention
from tests.policies.test_transformer import freqs, text_batch, tiny_model


def reference_varlen_kernel(
    q, k, v, *, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, causal, softmax_scale
):
    """Plain softmax attention run separately on each packed segment (what flash_attn_varlen_func computes)."""
    assert dropout_p == 0.0 and not causal and torch.equal(cu_seqlens_q, cu_seqlens_k)
    out = torch.empty_like(q)
    bounds = cu_seqlens_q.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        assert end - start <= max_seqlen_q
        scores = torch.einsum("qhd,khd->hqk", q[start:end], k[start:end]) * softmax_scale
        out[start:end] = torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v[start:end])
    return out


def test_varlen_attention_matches_masked_softmax_per_sequence():
    q, k, v = (torch.randn(2, 5, 3, 4) for _ in range(3))
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    out = varlen_attention(q, k, v, mask, 0.5, reference_varlen_kernel)
    for b, n in enumerate([3, 5]):
        scores = torch.einsum("qhd,khd->hqk", q[b, :n], k[b, :n]) * 0.5
        expected = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v[b, :n])
        torch.testing.assert_close(out[b, :n], expected)
    assert torch.equal(out[0, 3:], torch.zeros(2, 3, 4))


def test_model_outputs_equal_with_varlen_and_sdpa_attention():
    model = tiny_model()
    text, mask = text_batch([6, 2])
    args = (
        [torch.randn(4, 8, 6), torch.randn(4, 4, 4)],
        torch.tensor([0.2, 0.9]),
        text,
        freqs(),
        mask,
        [[torch.randn(4, 4, 6), torch.randn(4, 6, 6)], None],
    )
    with torch.no_grad():
        sdpa = model(*args)
        for module in model.modules():
            if isinstance(module, Attention):
                module.set_processor(OmniGen2AttnProcessor(varlen_kernel=reference_varlen_kernel))
        varlen = model(*args)
    for a, b in zip(sdpa, varlen):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
