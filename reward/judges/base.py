"""The judge interface: requests (prompt + images + expected answer format) in, parsed answers out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from reward.judges.images import PNG, ImageEncoding
from reward.judges.parsing import ScoreFormat


@dataclass
class JudgeRequest:
    """One question to a judge.

    request_id: a caller-chosen id (e.g. ``"gedit/<key>/SC"``), echoed in the answer.
    prompt:     the full text prompt.
    images:     images sent after the prompt, in order.
    answer_format: how to parse (and validate) the answer; a judge retries answers that fail it.
    image_encoding: how the images travel (PNG, or JPEG q75 as GEdit-Bench's official VIEScore sends them).
    """

    request_id: str
    prompt: str
    images: list[Image.Image]
    answer_format: ScoreFormat
    image_encoding: ImageEncoding = PNG


@dataclass
class JudgeAnswer:
    """The outcome of one request.

    scores:   the parsed scores (length ``answer_format.num_scores``), or None if the request failed.
    raw_text: the last answer text received (None if nothing came back).
    failure:  why the request failed after all attempts (None on success).
    attempts: calls made for this request (0 when served from the cache).
    cached:   True when the answer came from the on-disk cache.
    unparsed: True when the request failed because its answers never parsed (not a transport error): the
              items the official GEdit scorer would have given a random score.
    """

    request_id: str
    scores: tuple[float, ...] | None
    raw_text: str | None = None
    failure: str | None = None
    attempts: int = 0
    cached: bool = False
    unparsed: bool = False

    @property
    def ok(self) -> bool:
        return self.scores is not None


@runtime_checkable
class Judge(Protocol):
    """Answers a batch of requests; one answer per request, in order. Never raises for a bad answer."""

    name: str

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]: ...
