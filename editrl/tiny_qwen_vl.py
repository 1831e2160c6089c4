"""Tiny random-config Qwen3-VL and Qwen2.5-VL components, built locally for tests and the toy world (no hub).

Each builder returns the pieces a real checkpoint directory would hold: a tokenizer (the local byte-level BPE
of :mod:`editrl.tiny_tokenizer`, with the family's chat template), a Qwen2-VL-style image processor (PIL
backend, so torchvision is not needed) and a model config whose special-token ids match the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen3VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from editrl.tiny_tokenizer import build_tiny_qwen_tokenizer

# Qwen3-VL's chat template has no default system turn (unlike Qwen2/2.5-VL); images are
# <|vision_start|><|image_pad|><|vision_end|> markers that the input builder expands.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Image budget of the tiny models: at most 64x64 pixels, i.e. <= 4 merged tokens per image at patch 16.
TINY_MIN_PIXELS = 32 * 32
TINY_MAX_PIXELS = 64 * 64


@dataclass
class TinyVLComponents:
    """What a tiny Qwen-VL checkpoint directory would hold (the model is built from ``config`` by the caller)."""

    tokenizer: PreTrainedTokenizerFast
    image_processor: Qwen2VLImageProcessorPil
    config: Qwen3VLConfig | Qwen2_5_VLConfig


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def build_tiny_image_processor(
    patch_size: int, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS
) -> Qwen2VLImageProcessorPil:
    """Qwen2-VL-style image processor (smart resize to a multiple of patch*merge within a pixel budget)."""
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size, merge_size=2, temporal_patch_size=2, min_pixels=min_pixels, max_pixels=max_pixels
    )


def build_tiny_qwen3_vl(
    extra_special_tokens: Sequence[str] = (),
    hidden_size: int = 32,
    num_layers: int = 2,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    words: Sequence[str] = (),
) -> TinyVLComponents:
    """Tiny Qwen3-VL (patch 16, merge 2, interleaved M-RoPE, one deepstack layer) with its tokenizer (which
    keeps ``words`` whole, see :func:`build_tiny_qwen_tokenizer`)."""
    tokenizer = build_tiny_qwen_tokenizer(extra_special_tokens=extra_special_tokens, words=words)
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    heads = 4
    head_dim = hidden_size // heads
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [head_dim // 4, head_dim // 8, head_dim // 8],
                "mrope_interleaved": True,
            },
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": 4,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": hidden_size,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        **_token_ids(tokenizer),
    )
    return TinyVLComponents(tokenizer, build_tiny_image_processor(patch_size=16), config)


def build_tiny_qwen2_5_vl(
    extra_special_tokens: Sequence[str] = (),
    hidden_size: int = 32,
    num_layers: int = 2,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
) -> TinyVLComponents:
    """Tiny Qwen2.5-VL (patch 14, merge 2, windowed vision attention, M-RoPE) with its tokenizer."""
    tokenizer = build_tiny_qwen_tokenizer(extra_special_tokens=extra_special_tokens)
    heads = 4
    head_dim = hidden_size // heads
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [head_dim // 4, head_dim // 8, head_dim // 8],
            },
            "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": 4,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        **_token_ids(tokenizer),
    )
    return TinyVLComponents(tokenizer, build_tiny_image_processor(patch_size=14), config)
