"""Batched Qwen-VL inputs from chat messages and images, built from a tokenizer and an image processor.

This does what ``Qwen3VLProcessor`` does for images (expand each ``<|image_pad|>`` to the number of merged
patches, emit ``mm_token_type_ids``) without needing a video processor (and so torchvision). It also lets a
caller append a token-level continuation (a rationale) after the prompt and know exactly which positions it
occupies, which the LM loss mask needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

IMAGE_PAD = "<|image_pad|>"


@dataclass
class VLBatch:
    """A padded batch of B sequences with N images in total (in sequence order).

    input_ids:         (B, L) long.
    attention_mask:    (B, L) long, 1 at real tokens.
    mm_token_type_ids: (B, L) int, 1 at image tokens, 0 elsewhere (Qwen3-VL's M-RoPE needs it).
    pixel_values:      (P, C*T*p*p) float, the flattened patches of all N images.
    image_grid_thw:    (N, 3) long, patch grid of each image.
    continuation_mask: (B, L) bool, True at tokens of the appended continuation (e.g. the rationale).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    continuation_mask: torch.Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> VLBatch:
        """Move to ``device``; ``dtype`` applies to ``pixel_values`` only."""
        return VLBatch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            mm_token_type_ids=self.mm_token_type_ids.to(device),
            pixel_values=self.pixel_values.to(device, dtype=dtype or self.pixel_values.dtype),
            image_grid_thw=self.image_grid_thw.to(device),
            continuation_mask=self.continuation_mask.to(device),
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``Qwen*VLForConditionalGeneration.forward`` / ``generate``."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "mm_token_type_ids": self.mm_token_type_ids,
            "pixel_values": self.pixel_values,
            "image_grid_thw": self.image_grid_thw,
        }


@dataclass
class ChatSample:
    """One sequence: chat messages (images as ``{"type": "image"}`` items, in order), its images, a text
    suffix rendered after the generation prompt (e.g. ``"<|reward|>"``) and an optional continuation text
    that is tokenized separately and marked in ``continuation_mask``."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    suffix: str = ""
    continuation: str | None = None


def source_edit_sample(
    source: Image.Image, edit: Image.Image, text: str, *, suffix: str = "", continuation: str | None = None
) -> ChatSample:
    """The user turn every edit scorer uses: [source image, edited image, text], then ``suffix``."""
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]
    return ChatSample(
        messages=[{"role": "user", "content": content}],
        images=[source, edit],
        suffix=suffix,
        continuation=continuation,
    )


def build_vl_batch(
    tokenizer: Any,
    image_processor: Any,
    samples: Sequence[ChatSample],
    padding_side: str = "right",
) -> VLBatch:
    """Render, tokenize and pad ``samples``; images go through ``image_processor`` in sequence order."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    all_images = [img.convert("RGB") for s in samples for img in s.images]
    vision = image_processor(images=all_images, return_tensors="pt")
    grid = vision["image_grid_thw"]
    merge = int(image_processor.merge_size)
    tokens_per_image = (grid.prod(dim=-1) // (merge * merge)).tolist()
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)

    sequences: list[list[int]] = []
    continuation_spans: list[tuple[int, int]] = []
    cursor = 0
    for index, sample in enumerate(samples):
        text = tokenizer.apply_chat_template(sample.messages, tokenize=False, add_generation_prompt=True)
        pieces = text.split(IMAGE_PAD)
        if len(pieces) - 1 != len(sample.images):
            raise ValueError(
                f"sample {index}: the chat has {len(pieces) - 1} image slots but {len(sample.images)} images"
            )
        expanded = pieces[0]
        for piece, count in zip(pieces[1:], tokens_per_image[cursor : cursor + len(sample.images)]):
            expanded += IMAGE_PAD * int(count) + piece
        cursor += len(sample.images)
        ids = tokenizer(expanded + sample.suffix, add_special_tokens=False)["input_ids"]
        start = len(ids)
        if sample.continuation is not None:
            ids = ids + tokenizer(sample.continuation, add_special_tokens=False)["input_ids"]
        sequences.append(ids)
        continuation_spans.append((start, len(ids)))

    length = max(len(s) for s in sequences)
    batch = len(sequences)
    input_ids = torch.full((batch, length), int(tokenizer.pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    continuation_mask = torch.zeros((batch, length), dtype=torch.bool)
    for row, (ids, (start, end)) in enumerate(zip(sequences, continuation_spans)):
        offset = length - len(ids) if padding_side == "left" else 0
        input_ids[row, offset : offset + len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, offset : offset + len(ids)] = 1
        continuation_mask[row, offset + start : offset + end] = True
    return VLBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        mm_token_type_ids=(input_ids == image_token_id).int() * attention_mask.int(),
        pixel_values=vision["pixel_values"],
        image_grid_thw=grid,
        continuation_mask=continuation_mask,
    )
