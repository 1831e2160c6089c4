"""A tiny random-config OmniGen2 editing pipeline for tests and the CPU toy world (no download).

Same component classes as the real model — OmniGen2Transformer2DModel, a Qwen2.5-VL ``mllm`` with the
locally built tiny tokenizer, a FLUX-style AutoencoderKL (scaling and shift factors, no quant convs) —
at about 0.1M parameters each, deterministic under ``seed``. By default the transformer's output head, which
the official init zeroes (as it does the blocks' modulation gates), gets small random weights instead, so the
velocity of an untrained model is not identically zero and every attention layer (hence LoRA) affects it.
A model that is about to be trained keeps the official init (``official_init=True``): adaLN-zero blocks start
as the identity, which is how DiT-style models train best.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from editrl.tiny_tokenizer import build_tiny_qwen_tokenizer
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from policies.omnigen2.scheduler import OmniGen2FlowMatchScheduler
from policies.omnigen2.transformer import OmniGen2Transformer2DModel
from policies.settings import SamplingSettings

TINY_SAMPLING = SamplingSettings(
    num_inference_steps=4,
    noise_level=0.9,
    text_guidance_scale=4.0,
    image_guidance_scale=2.0,
    cfg_range=(0.0, 0.6),
    height=32,
    width=32,
)


def randomize_zero_init(module: torch.nn.Module) -> None:
    """Give the all-zero parameters (adaLN-zero gates, output heads) small random values, so the velocity of an
    untrained tiny model is not identically zero and every attention layer (hence LoRA) affects it."""
    with torch.no_grad():
        for param in module.parameters():
            if not torch.any(param):
                param.normal_(0.0, 0.1)


def tiny_flux_vae(latent_channels: int) -> AutoencoderKL:
    """A tiny FLUX-style ``AutoencoderKL`` (3 levels of 8/16/16 channels, FLUX's scaling and shift factors)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _tiny_mllm(tokenizer, hidden_size: int) -> Qwen2_5_VLForConditionalGeneration:
    """A 2-layer Qwen2.5-VL with a 1-block vision tower, ids matching the tiny tokenizer."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                            "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    heads = 4
    half_head = hidden_size // heads // 2
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [half_head - 2 * (half_head // 4), half_head // 4, half_head // 4],
            },
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [0],
            "window_size": 56,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tiny_pipeline(
    seed: int = 0,
    *,
    text_hidden_size: int = 32,
    transformer_hidden_size: int = 32,
    latent_channels: int = 4,
    num_layers: int = 2,
    official_init: bool = False,
    sampling: SamplingSettings = TINY_SAMPLING,
    negative_prompt: str = "",
    max_input_pixels: int = 64 * 64,
    max_input_side_length: int = 64,
    max_sequence_length: int = 512,
    tokenizer_words: Sequence[str] = (),
) -> OmniGen2EditPipeline:
    """Build the tiny pipeline (fp32, CPU, eval mode). Outputs are multiples of 8 px (VAE ×4, patch 2).

    tokenizer_words: words the tiny tokenizer keeps whole (see :func:`build_tiny_qwen_tokenizer`)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        tokenizer = build_tiny_qwen_tokenizer(words=tokenizer_words)
        mllm = _tiny_mllm(tokenizer, text_hidden_size)
        heads = 2
        head_dim = transformer_hidden_size // heads
        side = (head_dim // 3) // 2 * 2
        transformer = OmniGen2Transformer2DModel(
            patch_size=2,
            in_channels=latent_channels,
            hidden_size=transformer_hidden_size,
            num_layers=num_layers,
            num_refiner_layers=1,
            num_attention_heads=heads,
            num_kv_heads=1,
            multiple_of=16,
            axes_dim_rope=(head_dim - 2 * side, side, side),
            axes_lens=(1024, 256, 256),
            text_feat_dim=text_hidden_size,
            timestep_scale=1000.0,
        )
        if not official_init:
            randomize_zero_init(transformer)
        vae = tiny_flux_vae(latent_channels)
    finally:
        torch.random.set_rng_state(generator_state)
    return OmniGen2EditPipeline(
        transformer,
        vae,
        OmniGen2FlowMatchScheduler(),
        mllm,
        tokenizer,
        sampling=sampling,
        negative_prompt=negative_prompt,
        max_input_pixels=max_input_pixels,
        max_input_side_length=max_input_side_length,
        max_sequence_length=max_sequence_length,
    )
