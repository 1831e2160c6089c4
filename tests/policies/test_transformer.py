"""OmniGen2 transformer: shapes, batching/padding invariance, checkpoints, key names, checkpointing, LoRA."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from policies.omnigen2 import OmniGen2RotaryPosEmbed, OmniGen2Transformer2DModel

TINY = dict(
    patch_size=2,
    in_channels=4,
    hidden_size=48,
    num_layers=2,
    num_refiner_layers=1,
    num_attention_heads=4,
    num_kv_heads=2,
    multiple_of=16,
    axes_dim_rope=(4, 4, 4),
    axes_lens=(64, 32, 32),
    text_feat_dim=24,
    timestep_scale=1000.0,
)
TEXT_DIM = TINY["text_feat_dim"]

# Parameter names of the official OmniGen2 transformer (VectorSpaceLab/OmniGen2,
# omnigen2/models/transformers/transformer_omnigen2.py), written out as data.
OFFICIAL_TOP_LEVEL_KEYS = [
    "image_index_embedding",
    "x_embedder.weight",
    "x_embedder.bias",
    "ref_image_patch_embedder.weight",
    "ref_image_patch_embedder.bias",
    "time_caption_embed.timestep_embedder.linear_1.weight",
    "time_caption_embed.timestep_embedder.linear_1.bias",
    "time_caption_embed.timestep_embedder.linear_2.weight",
    "time_caption_embed.timestep_embedder.linear_2.bias",
    "time_caption_embed.caption_embedder.0.weight",
    "time_caption_embed.caption_embedder.1.weight",
    "time_caption_embed.caption_embedder.1.bias",
    "norm_out.linear_1.weight",
    "norm_out.linear_1.bias",
    "norm_out.linear_2.weight",
    "norm_out.linear_2.bias",
]
OFFICIAL_ATTENTION_FFN_KEYS = [
    "attn.norm_q.weight",
    "attn.norm_k.weight",
    "attn.to_q.weight",
    "attn.to_k.weight",
    "attn.to_v.weight",
    "attn.to_out.0.weight",
    "feed_forward.linear_1.weight",
    "feed_forward.linear_2.weight",
    "feed_forward.linear_3.weight",
    "ffn_norm1.weight",
    "norm2.weight",
    "ffn_norm2.weight",
]
OFFICIAL_MODULATED_BLOCK_KEYS = [
    *OFFICIAL_ATTENTION_FFN_KEYS,
    "norm1.linear.weight",
    "norm1.linear.bias",
    "norm1.norm.weight",
]
OFFICIAL_PLAIN_BLOCK_KEYS = [*OFFICIAL_ATTENTION_FFN_KEYS, "norm1.weight"]


def tiny_model(seed: int = 0) -> OmniGen2Transformer2DModel:
    """Tiny model with every parameter random (the fresh output head is zero, which would hide errors)."""
    torch.manual_seed(seed)
    model = OmniGen2Transformer2DModel(**TINY).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    return model


def freqs():
    return OmniGen2RotaryPosEmbed.get_freqs_cis(TINY["axes_dim_rope"], TINY["axes_lens"], 10000)


def text_batch(lengths, padded_len=None, seed=1):
    """Right-padded text features (B, L, D) and mask (B, L) with the given valid lengths."""
    gen = torch.Generator().manual_seed(seed)
    length = padded_len or max(lengths)
    text = torch.randn(len(lengths), length, TEXT_DIM, generator=gen)
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return text, mask


def test_output_shapes_tensor_and_list_inputs_with_and_without_references():
    model = tiny_model()
    text, mask = text_batch([5, 3])
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        out = model(torch.randn(2, 4, 8, 6), t, text, freqs(), mask)
        out_refs = model(torch.randn(2, 4, 8, 6), t, text, freqs(), mask, [[torch.randn(4, 4, 6)], None])
        out_list = model(
            [torch.randn(4, 8, 6), torch.randn(4, 4, 10)],
            t,
            text,
            freqs(),
            mask,
            [[torch.randn(4, 6, 4), torch.randn(4, 4, 4)], [torch.randn(4, 8, 8)]],
        )
    assert out.shape == out_refs.shape == (2, 4, 8, 6)
    assert isinstance(out_list, list) and [tuple(o.shape) for o in out_list] == [(4, 8, 6), (4, 4, 10)]
    assert torch.isfinite(out).all() and torch.isfinite(out_refs).all()
    assert not torch.allclose(out, out_refs)  # references change the prediction


def test_batch_equals_samples_run_one_by_one():
    model = tiny_model()
    latents = [torch.randn(4, 8, 6), torch.randn(4, 4, 10), torch.randn(4, 6, 6)]
    refs = [[torch.randn(4, 6, 4), torch.randn(4, 4, 4)], None, [torch.randn(4, 8, 8)]]
    lengths = [6, 2, 4]
    text, mask = text_batch(lengths)
    t = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        batched = model(latents, t, text, freqs(), mask, refs)
        for i, length in enumerate(lengths):
            single = model(
                [latents[i]],
                t[i : i + 1],
                text[i : i + 1, :length],
                freqs(),
                mask[i : i + 1, :length],
                [refs[i]],
            )
            torch.testing.assert_close(batched[i], single[0], rtol=1e-5, atol=1e-5)


def test_padded_positions_do_not_change_valid_outputs():
    model = tiny_model()
    text, mask = text_batch([5, 3], padded_len=9)
    latents = torch.randn(2, 4, 8, 6)
    refs = [[torch.randn(4, 4, 6)], [torch.randn(4, 8, 4)]]
    t = torch.tensor([0.3, 0.6])
    garbage = text.clone()
    garbage[~mask] = 1e4 * torch.randn(int((~mask).sum()), TEXT_DIM)
    with torch.no_grad():
        reference = model(latents, t, text, freqs(), mask, refs)
        with_garbage = model(latents, t, garbage, freqs(), mask, refs)
        shorter_padding = model(latents, t, text[:, :5], freqs(), mask[:, :5], refs)
    torch.testing.assert_close(with_garbage, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(shorter_padding, reference, rtol=1e-5, atol=1e-5)


def test_save_and_load_strict_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "transformer")
    loaded = OmniGen2Transformer2DModel.from_pretrained(tmp_path / "transformer").eval()
    text, mask = text_batch([4, 2])
    args = (
        torch.randn(2, 4, 4, 4),
        torch.tensor([0.4, 0.4]),
        text,
        freqs(),
        mask,
        [[torch.randn(4, 4, 4)], None],
    )
    with torch.no_grad():
        assert torch.equal(model(*args), loaded(*args))

    weights_file = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights_file)
    missing = {k: v for k, v in state.items() if k != "x_embedder.weight"}
    save_file(missing, weights_file)
    with pytest.raises(ValueError, match="x_embedder.weight"):
        OmniGen2Transformer2DModel.from_pretrained(tmp_path / "transformer")
    save_file({**state, "layers.9.attn.to_q.weight": torch.zeros(1)}, weights_file)
    with pytest.raises(ValueError, match="layers.9.attn.to_q.weight"):
        OmniGen2Transformer2DModel.from_pretrained(tmp_path / "transformer")


def test_state_dict_names_match_the_official_architecture():
    model = OmniGen2Transformer2DModel(**TINY)
    expected = set(OFFICIAL_TOP_LEVEL_KEYS)
    for stack, count, block_keys in [
        ("noise_refiner", TINY["num_refiner_layers"], OFFICIAL_MODULATED_BLOCK_KEYS),
        ("ref_image_refiner", TINY["num_refiner_layers"], OFFICIAL_MODULATED_BLOCK_KEYS),
        ("context_refiner", TINY["num_refiner_layers"], OFFICIAL_PLAIN_BLOCK_KEYS),
        ("layers", TINY["num_layers"], OFFICIAL_MODULATED_BLOCK_KEYS),
    ]:
        expected |= {f"{stack}.{i}.{key}" for i in range(count) for key in block_keys}
    assert set(model.state_dict()) == expected


def test_gradient_checkpointing_gives_same_outputs_and_gradients():
    model = tiny_model().train()
    text, mask = text_batch([5, 3])
    latents = torch.randn(2, 4, 6, 6)
    refs = [[torch.randn(4, 4, 4)], None]
    t = torch.tensor([0.3, 0.8])
    weights = torch.randn(2, 4, 6, 6)

    def outputs_and_grads():
        model.zero_grad()
        out = model(latents, t, text, freqs(), mask, refs)
        (out * weights).sum().backward()
        return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    plain_out, plain_grads = outputs_and_grads()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    ckpt_out, ckpt_grads = outputs_and_grads()
    torch.testing.assert_close(ckpt_out, plain_out, rtol=0, atol=1e-6)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_lora_targets_the_attention_projections():
    from peft import LoraConfig

    model = tiny_model()
    model.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora_modules = {
        name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name
    }
    num_blocks = 3 * TINY["num_refiner_layers"] + TINY["num_layers"]
    assert len(lora_modules) == 4 * num_blocks
    assert "layers.0.attn.to_out.0" in lora_modules

    text, mask = text_batch([3, 3])
    args = (torch.randn(2, 4, 4, 4), torch.tensor([0.5, 0.5]), text, freqs(), mask)
    with torch.no_grad():
        base = model(*args, attention_kwargs={"scale": 0.0})
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0.0, 0.5)
        unscaled = model(*args, attention_kwargs={"scale": 0.0})
        adapted = model(*args)
    torch.testing.assert_close(unscaled, base, rtol=0, atol=1e-6)  # scale 0 switches the adapter off
    assert not torch.allclose(adapted, base, atol=1e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("left_padding", "right-padded"),
        ("channels", "channels"),
        ("odd_size", "multiple of patch_size"),
        ("too_many_refs", "at most 5"),
    ],
)
def test_bad_inputs_are_rejected_with_clear_errors(change, message):
    model = tiny_model()
    text, mask = text_batch([4, 2])
    latents, refs = torch.randn(2, 4, 4, 4), None
    if change == "left_padding":
        mask = mask.flip(1)
    elif change == "channels":
        latents = torch.randn(2, 3, 4, 4)
    elif change == "odd_size":
        latents = torch.randn(2, 4, 5, 4)
    else:
        refs = [[torch.randn(4, 2, 2)] * 6, None]
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(latents, torch.tensor([0.5, 0.5]), text, freqs(), mask, refs)


def test_released_configuration_has_the_released_parameter_count():
    from accelerate import init_empty_weights

    released = dict(
        hidden_size=2520,
        num_layers=32,
        num_refiner_layers=2,
        num_attention_heads=21,
        num_kv_heads=7,
        multiple_of=256,
        axes_dim_rope=(40, 40, 40),
        axes_lens=(1024, 1664, 1664),
        text_feat_dim=2048,
        timestep_scale=1000.0,
    )
    with init_empty_weights():
        model = OmniGen2Transformer2DModel(**released)
    d, head, kv, cond, patch = 2520, 120, 7 * 120, 1024, 2 * 2 * 16
    inner = 256 * -(-4 * d // 256)  # 4d rounded up to a multiple of 256
    shared = 2 * d * d + 2 * d * kv + 2 * head + 3 * d * inner + 3 * d  # attention, SwiGLU, three RMS norms
    modulated = shared + (cond * 4 * d + 4 * d) + d
    plain = shared + d
    top = (
        2 * (patch * d + d)  # x_embedder, ref_image_patch_embedder
        + (256 * cond + cond)
        + (cond * cond + cond)  # timestep MLP
        + 2048
        + (2048 * d + d)  # caption RMSNorm + projection
        + (cond * d + d)
        + (d * patch + patch)  # norm_out
        + 5 * d  # image_index_embedding
    )
    expected = top + 36 * modulated + 2 * plain
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 3.9e9 < expected < 4.0e9
