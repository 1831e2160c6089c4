"""A judge run by a local transformers VLM (e.g. Qwen2.5-VL-72B or Qwen3-VL from a local directory).

The model, tokenizer and image processor load from a local directory (never a hub id), or are given as
objects. Inputs are built with :func:`reward.qwen_vl_inputs.build_vl_batch` (the tokenizer's chat template and
the Qwen-VL image-token expansion, without a video processor and so without torchvision). Answers are
generated greedily on the first attempt; retries sample at ``retry_temperature`` so that a malformed answer is not
simply repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from editrl.config import ConfigError
from editrl.dtypes import DTYPES, check_dtype_name
from reward.judges.base import JudgeAnswer, JudgeRequest
from reward.judges.images import as_judge_sees_it
from reward.judges.parsing import MalformedAnswerError
from reward.qwen_vl_inputs import ChatSample, build_vl_batch


@dataclass
class LocalVLMJudgeConfig:
    """Where the local judge model lives and how it generates."""

    model_dir: str | None = None
    device: str = "cpu"
    dtype: str = "bfloat16"
    max_new_tokens: int = 512
    max_attempts: int = 3
    retry_temperature: float = 0.7
    trust_remote_code: bool = False

    def validate(self) -> None:
        check_dtype_name(self.dtype)
        if self.max_attempts < 1 or self.max_new_tokens < 1:
            raise ConfigError("max_attempts and max_new_tokens must be >= 1")
        if self.retry_temperature <= 0:
            raise ConfigError(f"retry_temperature must be > 0, got {self.retry_temperature}")


class LocalVLMJudge:
    """:class:`reward.judges.base.Judge` backed by ``model.generate`` of a transformers image-text-to-text model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        cfg: LocalVLMJudgeConfig | None = None,
        *,
        name: str = "local-vlm",
    ) -> None:
        self.cfg = cfg or LocalVLMJudgeConfig()
        self.cfg.validate()
        self.model = model.eval()
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.name = name

    @classmethod
    def from_pretrained(cls, cfg: LocalVLMJudgeConfig) -> LocalVLMJudge:
        """Load model, tokenizer and image processor from ``cfg.model_dir`` (a local directory)."""
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        cfg.validate()
        if cfg.model_dir is None or not Path(cfg.model_dir).is_dir():
            raise ConfigError(f"model_dir must be an existing local directory, got {cfg.model_dir!r}")
        remote = cfg.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(cfg.model_dir, trust_remote_code=remote)
        image_processor = AutoImageProcessor.from_pretrained(cfg.model_dir, trust_remote_code=remote)
        model = AutoModelForImageTextToText.from_pretrained(cfg.model_dir, dtype=DTYPES[cfg.dtype], trust_remote_code=remote)
        return cls(model.to(cfg.device), tokenizer, image_processor, cfg, name=f"local:{Path(cfg.model_dir).name}")

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        return [self._judge_one(r) for r in tqdm(requests, desc=f"judge {self.name}", disable=len(requests) < 2)]

    @torch.no_grad()
    def _generate(self, request: JudgeRequest, sample: bool) -> str:
        content = [{"type": "text", "text": request.prompt}] + [{"type": "image"} for _ in request.images]
        images = [as_judge_sees_it(im, request.image_encoding) for im in request.images]
        sample_in = ChatSample(messages=[{"role": "user", "content": content}], images=images)
        batch = build_vl_batch(self.tokenizer, self.image_processor, [sample_in])
        inputs = batch.to(self.model.device, dtype=self.model.dtype).model_inputs()
        generation: dict[str, Any] = {"max_new_tokens": self.cfg.max_new_tokens, "do_sample": sample}
        if sample:
            generation["temperature"] = self.cfg.retry_temperature
        out = self.model.generate(**inputs, **generation)
        new_tokens = out[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def _judge_one(self, request: JudgeRequest) -> JudgeAnswer:
        text: str | None = None
        failure = "no attempt made"
        limit = request.answer_format.malformed_attempt_limit
        attempts = self.cfg.max_attempts if limit is None else min(limit, self.cfg.max_attempts)
        for attempt in range(1, attempts + 1):
            text = self._generate(request, sample=attempt > 1)
            try:
                scores = request.answer_format.parse(text)
            except MalformedAnswerError as exc:
                failure = f"malformed answer: {exc}"
                continue
            return JudgeAnswer(request.request_id, scores, raw_text=text, attempts=attempt)
        return JudgeAnswer(
            request.request_id, None, raw_text=text, failure=f"{failure} (after {attempts} attempts)",
            attempts=attempts, unparsed=True,
        )
