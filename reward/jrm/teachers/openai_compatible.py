"""Teacher backend: any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, SGLang, ...) over httpx.

It receives the source image first, then the edited image, then the appendix-A prompt, and does not validate
answers; :mod:`reward.jrm.annotate` does that for all teachers.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from reward.jrm.teachers.base import AnnotationRequest, TeacherError, chat_messages


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
        images = [{"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in request.images]
        body = {
            "model": self.model,
            "messages": chat_messages(request, images),
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
