"""Teacher backend: a local Qwen-VL chat model run with transformers ``generate`` (no network, no remote code)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reward.jrm.teachers.base import AnnotationRequest, chat_messages


class TransformersTeacher:
    """A local Qwen-VL chat model run with transformers ``generate``; greedy unless ``temperature > 0``.

    Inputs are built with :func:`reward.qwen_vl_inputs.build_vl_batch` (tokenizer + image processor, left
    padding), so no video processor is needed.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        *,
        max_new_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    @classmethod
    def from_local_dir(
        cls, model_dir: str | Path, *, device: str = "cpu", dtype: str = "bfloat16", **kwargs: Any
    ) -> TransformersTeacher:
        """Load model, tokenizer and image processor from a local directory (never a hub id; no remote code)."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoTokenizer
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        path = Path(model_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"teacher model directory not found: {path}")
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
        model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, image_processor, **kwargs)

    def generate(self, requests: Sequence[AnnotationRequest]) -> list[str]:
        import torch

        from reward.qwen_vl_inputs import ChatSample, build_vl_batch

        if not requests:
            return []
        samples = [
            ChatSample(messages=chat_messages(r, [{"type": "image"} for _ in r.images]), images=r.images)
            for r in requests
        ]
        batch = build_vl_batch(self.tokenizer, self.image_processor, samples, padding_side="left")
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        batch = batch.to(device, dtype=dtype)
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            out = self.model.generate(
                **batch.model_inputs(),
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        return self.tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True)
