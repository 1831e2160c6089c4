"""A tiny random Qwen3-VL backbone for JRM (tests, toy world, benchmarks), built locally under a fixed seed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Qwen3VLForConditionalGeneration

from editrl.tiny_qwen_vl import TINY_MAX_PIXELS, TINY_MIN_PIXELS, TinyVLComponents, build_tiny_qwen3_vl

#: Image budget the tiny JRM uses by default (<= 4 merged tokens per image).
TINY_JRM_MIN_PIXELS = TINY_MIN_PIXELS
TINY_JRM_MAX_PIXELS = TINY_MAX_PIXELS


def build_tiny_backbone(
    seed: int = 0, hidden_size: int = 32, num_layers: int = 2, vision_hidden_size: int = 32, vision_depth: int = 2,
    words: Sequence[str] = (),
) -> tuple[Qwen3VLForConditionalGeneration, TinyVLComponents]:
    """A random tiny Qwen3-VL and its tokenizer/image processor (keeping ``words`` whole); the global RNG is left
    untouched."""
    parts = build_tiny_qwen3_vl(
        hidden_size=hidden_size, num_layers=num_layers, vision_hidden_size=vision_hidden_size, vision_depth=vision_depth,
        words=words,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Qwen3VLForConditionalGeneration(parts.config)
    return backbone, parts
