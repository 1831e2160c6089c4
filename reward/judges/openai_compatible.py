"""A judge behind any OpenAI-compatible chat-completions endpoint (GPT-4.1 by default, or a local vLLM).

Images go as base64 data URLs after the prompt (PNG, or the request's ``image_encoding``). Requests run in a bounded thread pool sharing one httpx
client; transport errors, timeouts, 408/409/429/5xx and answers that fail to parse are retried with
exponential backoff (``Retry-After`` honoured, capped); other 4xx fail at once. Valid answers are cached on
disk by a hash of (model, prompt, image bytes). The API key is read from the environment variable named in
the config and never logged or stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from tqdm import tqdm

from editrl.config import ConfigError
from reward.judges.base import JudgeAnswer, JudgeRequest
from reward.judges.cache import ResponseCache, request_cache_key
from reward.judges.images import data_url, encode_image
from reward.judges.parsing import MalformedAnswerError
from reward.judges.redact import redact_secrets

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass
class OpenAIJudgeConfig:
    """Endpoint, model and robustness settings of :class:`OpenAICompatibleJudge`."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_attempts: int = 5
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 60.0
    temperature: float | None = 0.0  # null = omit (reasoning models such as GPT-5 accept only their default)
    max_tokens: int = 1024
    token_limit_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"  # newer models want the latter
    cache_dir: str | None = "runs/judge_cache"

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ConfigError("model must be set")
        if not self.api_key_env:
            raise ConfigError("api_key_env must name an environment variable")
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.timeout_s <= 0 or self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("timeout_s must be > 0 and 0 <= backoff_initial_s <= backoff_max_s")


def backoff_delay(attempt: int, initial_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): ``initial * 2**(attempt-1)``, capped.

    A server's ``Retry-After`` replaces the computed delay (still capped at ``max_s``).
    """
    delay = initial_s * (2 ** (attempt - 1)) if retry_after_s is None else retry_after_s
    return min(max_s, max(0.0, delay))


class _RetryableError(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _FatalError(Exception):
    pass


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAICompatibleJudge:
    """:class:`reward.judges.base.Judge` over ``POST {base_url}/chat/completions``."""

    def __init__(
        self,
        cfg: OpenAIJudgeConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        show_progress: bool = True,
    ) -> None:
        cfg.validate()
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise ConfigError(
                f"judge api key: environment variable {cfg.api_key_env!r} is not set "
                "(for a local server without auth, set it to any value, e.g. EMPTY)"
            )
        self.cfg = cfg
        self.name = f"openai:{cfg.model}"
        self._api_key = key
        self._headers = {"Authorization": f"Bearer {key}"}
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._cache = ResponseCache(cfg.cache_dir) if cfg.cache_dir else None
        self._sleep = sleep
        self._show_progress = show_progress

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleJudge(model={self.cfg.model!r}, base_url={self.cfg.base_url!r})"

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        if not requests:
            return []
        timeout = httpx.Timeout(self.cfg.timeout_s)
        with httpx.Client(timeout=timeout, headers=self._headers) as client:
            workers = min(self.cfg.max_concurrency, len(requests))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                answers = pool.map(lambda r: self._judge_one(client, r), requests)
                return list(tqdm(answers, total=len(requests), desc=f"judge {self.cfg.model}", disable=not self._show_progress))

    def _judge_one(self, client: httpx.Client, request: JudgeRequest) -> JudgeAnswer:
        images = [encode_image(im, request.image_encoding) for im in request.images]
        key = request_cache_key(self.cfg.model, request.prompt, images)
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None:
                try:
                    scores = request.answer_format.parse(cached)
                    return JudgeAnswer(request.request_id, scores, raw_text=cached, attempts=0, cached=True)
                except MalformedAnswerError:
                    pass
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": request.prompt}]
                    + [{"type": "image_url", "image_url": {"url": data_url(b, request.image_encoding)}} for b in images],
                }
            ],
            self.cfg.token_limit_field: self.cfg.max_tokens,
        }
        if self.cfg.temperature is not None:
            body["temperature"] = self.cfg.temperature
        last_text: str | None = None
        failure = "no attempt made"
        malformed = 0
        malformed_limit = request.answer_format.malformed_attempt_limit
        for attempt in range(1, self.cfg.max_attempts + 1):
            retry_after: float | None = None
            try:
                last_text = self._post(client, body)
                scores = request.answer_format.parse(last_text)
            except _FatalError as exc:
                return JudgeAnswer(request.request_id, None, raw_text=last_text, failure=str(exc), attempts=attempt)
            except _RetryableError as exc:
                failure, retry_after = str(exc), exc.retry_after_s
            except MalformedAnswerError as exc:
                failure, malformed = f"malformed answer: {exc}", malformed + 1
                if malformed_limit is not None and malformed >= malformed_limit:
                    return JudgeAnswer(
                        request.request_id, None, raw_text=last_text,
                        failure=f"{failure} (unparsed after {malformed} answers)", attempts=attempt, unparsed=True,
                    )
            else:
                if self._cache is not None:
                    self._cache.put(key, last_text, self.cfg.model)
                return JudgeAnswer(request.request_id, scores, raw_text=last_text, attempts=attempt)
            if attempt < self.cfg.max_attempts:
                self._sleep(backoff_delay(attempt, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, retry_after))
        return JudgeAnswer(
            request.request_id,
            None,
            raw_text=last_text,
            failure=f"{failure} (after {self.cfg.max_attempts} attempts)",
            attempts=self.cfg.max_attempts,
            unparsed=failure.startswith("malformed answer"),
        )

    def _post(self, client: httpx.Client, body: dict[str, Any]) -> str:
        try:
            response = client.post(self._url, json=body)
        except httpx.TimeoutException:
            raise _RetryableError(f"timeout after {self.cfg.timeout_s}s") from None
        except httpx.RequestError as exc:
            raise _RetryableError(f"request error: {type(exc).__name__}") from None
        if response.status_code in _RETRYABLE_STATUS:
            raise _RetryableError(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            body_text = redact_secrets(response.text, [self._api_key])[:200]
            raise _FatalError(f"HTTP {response.status_code}: {body_text}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise MalformedAnswerError("response has no choices[0].message.content") from None
        if not isinstance(content, str):
            raise MalformedAnswerError("message content is not text")
        return content
