"""Instruction encoding for OmniGen2 with its Qwen2.5-VL ``mllm``: chat template, last hidden state, mask.

As in the official pipeline, each text is wrapped in the chat template with OmniGen2's system prompt (no
generation prompt) and encoded by the language model; the final-layer hidden states (after the last norm)
and the attention mask condition the transformer. Padding is on the right: the transformer reads the
first ``mask.sum()`` positions of each row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

OMNIGEN2_SYSTEM_PROMPT = "You are a helpful assistant that generates high-quality images based on user instructions."


@dataclass
class TextEmbeddings:
    """hidden_states: (B, L, D_text) final-layer states; attention_mask: (B, L) bool, True on real tokens."""

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor


def chat_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str) -> str:
    """The instruction in Qwen's chat template with OmniGen2's system prompt, as the official pipeline does."""
    messages = [
        {"role": "system", "content": OMNIGEN2_SYSTEM_PROMPT},
        {"role": "user", "content": instruction},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


class QwenTextEncoder:
    """Encodes instructions (and the CFG negative prompt) with a Qwen2.5-VL model's language backbone."""

    def __init__(self, mllm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_sequence_length: int = 512):
        self.mllm = mllm
        self.tokenizer = tokenizer
        self.max_sequence_length = max_sequence_length

    @torch.no_grad()
    def encode(self, instructions: Sequence[str]) -> TextEmbeddings:
        """Texts -> final hidden states (B, L, D_text) in the mllm's dtype and a (B, L) bool mask."""
        return self.encode_differentiable(instructions)

    def encode_differentiable(self, instructions: Sequence[str]) -> TextEmbeddings:
        """:meth:`encode` with autograd on (for pretraining a small text encoder together with the transformer)."""
        prompts = [chat_prompt(self.tokenizer, text) for text in instructions]
        batch = self.tokenizer(
            prompts,
            padding="longest",
            padding_side="right",
            truncation=True,
            max_length=self.max_sequence_length,
            return_tensors="pt",
        )
        device = next(self.mllm.parameters()).device
        input_ids = batch["input_ids"].to(device)
        attention_mask = batch["attention_mask"].to(device)
        outputs = self.mllm.model(input_ids=input_ids, attention_mask=attention_mask)
        hidden = outputs.last_hidden_state
        if not torch.isfinite(hidden).all():
            raise FloatingPointError("text encoder produced non-finite hidden states")
        return TextEmbeddings(hidden_states=hidden, attention_mask=attention_mask.bool())
