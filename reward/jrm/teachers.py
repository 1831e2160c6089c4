"""Teacher backends for rationale annotation: a local transformers Qwen-VL model or an OpenAI-compatible API.

Both implement :class:`reward.jrm.teacher.Teacher` and receive the source image first, then the edited image,
then the appendix-A prompt. Neither validates answers; :mod:`reward.jrm.annotate` does that for all teachers.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from PIL import Image

from editrl.config import ConfigError
from reward.jrm.teacher import AnnotationRequest, Teacher


class TeacherError(RuntimeError):
    """The teacher backend failed to produce an answer (HTTP error, timeout, malformed response)."""


def _chat_messages(request: AnnotationRequest, image_parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*image_parts, {"type": "text", "text": request.prompt}]}]


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
            ChatSample(messages=_chat_messages(r, [{"type": "image"}, {"type": "image"}]), images=[r.source, r.edited])
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


def image_data_url(image: Image.Image) -> str:
    """A PNG data URL of ``image`` (how OpenAI-compatible chat APIs take inline images)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAICompatibleTeacher:
    """Any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, SGLang, ...), called with httpx.

    The API key is read from the environment variable ``api_key_env`` (empty name: no key, e.g. a local
    server); it is only ever put in the Authorization header, never logged or included in errors.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise TeacherError(f"environment variable {api_key_env!r} (the teacher API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_concurrency = max_concurrency
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout_s), transport=transport
        )

    def _ask(self, request: AnnotationRequest) -> str:
        images = [{"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in (request.source, request.edited)]
        body = {
            "model": self.model,
            "messages": _chat_messages(request, images),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise TeacherError(f"{request.record_id}: request failed ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise TeacherError(f"{request.record_id}: HTTP {response.status_code} from the teacher endpoint")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TeacherError(f"{request.record_id}: malformed chat-completions response") from None
        if not isinstance(content, str):
            raise TeacherError(f"{request.record_id}: response content is not text")
        return content

    def generate(self, requests: Sequence[AnnotationRequest]) -> list[str]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(requests)))) as pool:
            return list(pool.map(self._ask, requests))

    def close(self) -> None:
        self._client.close()


@dataclass
class TeacherConfig:
    """Which teacher to build: ``kind`` "transformers" (``model_dir``) or "openai" (``base_url`` + ``model``)."""

    kind: Literal["transformers", "openai"] = "openai"
    model_dir: str | None = None
    device: str = "cpu"
    dtype: str = "bfloat16"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key_env: str | None = "OPENAI_API_KEY"  # null or "": no key (e.g. a local server)
    timeout_s: float = 120.0
    max_new_tokens: int = 1024
    temperature: float = 0.0
    max_concurrency: int = 4

    def validate(self) -> None:
        if self.kind == "transformers" and not self.model_dir:
            raise ConfigError("model_dir: a local model directory is required for kind=transformers")
        if self.kind == "openai" and not self.model:
            raise ConfigError("model: the endpoint's model name is required for kind=openai")
        if self.timeout_s <= 0 or self.max_new_tokens < 1 or self.max_concurrency < 1:
            raise ConfigError("timeout_s, max_new_tokens and max_concurrency must be positive")


def build_teacher(cfg: TeacherConfig) -> Teacher:
    """The configured teacher backend."""
    if cfg.kind == "transformers":
        return TransformersTeacher.from_local_dir(
            cfg.model_dir or "", device=cfg.device, dtype=cfg.dtype,
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
        )
    return OpenAICompatibleTeacher(
        cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
        max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, max_concurrency=cfg.max_concurrency,
    )
