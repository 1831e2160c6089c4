"""Tiny random-config FLUX.1 Kontext and Qwen-Image-Edit diffusers pipelines, built locally (no download).

The same classes as the released models — ``FluxTransformer2DModel`` (with the distilled-guidance embedding),
``AutoencoderKL``, ``CLIPTextModel`` + ``T5EncoderModel``; ``QwenImageTransformer2DModel``,
``AutoencoderKLQwenImage``, ``Qwen2_5_VLForConditionalGeneration`` with a ``Qwen2VLProcessor`` — at a few
hundred thousand parameters, deterministic under ``seed``. The tokenizers are the local byte-level BPE of
:mod:`editrl.tiny_tokenizer` (CLIP and T5 see it as a generic fast tokenizer). Scheduler configs are the
released ones (dynamic shifting; Qwen's exponential shift with a terminal value). Outputs are multiples of
8 px (VAE x4, 2x2 packing).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxTransformer2DModel,
    QwenImageEditPipeline,
    QwenImageTransformer2DModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLProcessor,
    T5Config,
    T5EncoderModel,
)

from editrl.tiny_qwen_vl import build_tiny_qwen2_5_vl
from editrl.tiny_tokenizer import QWEN_VL_CHAT_TEMPLATE, build_tiny_qwen_tokenizer
from policies.omnigen2.tiny import randomize_zero_init, tiny_flux_vae

#: FLUX.1 Kontext's released scheduler config (``scheduler/scheduler_config.json``).
FLUX_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}

#: Qwen-Image-Edit's released scheduler config.
QWEN_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
}


class TinyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor: transformers checks each part's class, and the video
    processor's base class needs torchvision, which the CPU test environment lacks (images only here)."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument is None and argument_name == "video_processor":
            return None
        return super().check_argument_for_proper_class(argument_name, argument)


def build_tiny_flux_kontext(seed: int = 0, *, latent_channels: int = 4, text_dim: int = 32) -> FluxKontextPipeline:
    """A tiny ``FluxKontextPipeline`` (fp32, CPU): 1 double + 1 single block, head dim 16, guidance embeds."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        clip_tokenizer = build_tiny_qwen_tokenizer()
        clip_tokenizer.model_max_length = 77
        t5_tokenizer = build_tiny_qwen_tokenizer()
        pad = clip_tokenizer.pad_token_id
        clip = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(clip_tokenizer),
                hidden_size=text_dim,
                intermediate_size=2 * text_dim,
                num_hidden_layers=1,
                num_attention_heads=2,
                max_position_embeddings=77,
                projection_dim=text_dim,
                pad_token_id=pad,
                bos_token_id=pad,
                eos_token_id=pad,  # pooled output = the first padding position, i.e. the end of the text
            )
        )
        t5 = T5EncoderModel(
            T5Config(
                vocab_size=len(t5_tokenizer),
                d_model=text_dim,
                d_kv=8,
                d_ff=2 * text_dim,
                num_layers=1,
                num_heads=4,
                relative_attention_num_buckets=8,
                pad_token_id=pad,
                decoder_start_token_id=pad,
            )
        )
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=4 * latent_channels,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=text_dim,
            pooled_projection_dim=text_dim,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        )
        randomize_zero_init(transformer)
        vae = tiny_flux_vae(latent_channels)
    finally:
        torch.random.set_rng_state(state)
    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=clip,
        tokenizer=clip_tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def build_tiny_qwen_image_edit(seed: int = 0, *, latent_channels: int = 4, text_dim: int = 32) -> QwenImageEditPipeline:
    """A tiny ``QwenImageEditPipeline`` (fp32, CPU): 2 blocks, head dim 16, no guidance embeds (true CFG)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        parts = build_tiny_qwen2_5_vl(hidden_size=text_dim)
        parts.tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
        text_encoder = Qwen2_5_VLForConditionalGeneration(parts.config)
        processor = TinyQwen2VLProcessor(image_processor=parts.image_processor, tokenizer=parts.tokenizer)
        transformer = QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=4 * latent_channels,
            out_channels=latent_channels,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=text_dim,
            guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),
        )
        randomize_zero_init(transformer)
        vae = AutoencoderKLQwenImage(
            base_dim=8,
            z_dim=latent_channels,
            dim_mult=[1, 2, 2],
            num_res_blocks=1,
            temperal_downsample=[False, True],
            latents_mean=[0.1 * i for i in range(latent_channels)],
            latents_std=[1.0 + 0.5 * i for i in range(latent_channels)],
        )
    finally:
        torch.random.set_rng_state(state)
    return QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=parts.tokenizer,
        processor=processor,
        transformer=transformer,
    )
