"""The teacher interface for building JRM's language supervision (rationales): request, answer, errors.

A teacher turns an :class:`AnnotationRequest` (the appendix-A prompt, the images and the pre-assigned score)
into a raw text answer. The annotation pipeline validates every answer the same way whoever the teacher is:
a local transformers Qwen-VL model, an OpenAI-compatible endpoint, or the toy world's rule-based teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

Dimension = Literal["IF", "VQ"]


@dataclass
class AnnotationRequest:
    """One rationale to write.

    record_id:   id of the preference record and side, e.g. ``"000123/path1"``.
    dimension:   "IF" (instruction following, with regions) or "VQ" (visual quality).
    instruction: the edit instruction.
    source / edited: the images.
    score:       the pre-assigned 1-4 score the rationale must justify.
    prompt:      the full teacher prompt (appendix A), already filled in.
    metadata:    extra per-record facts (e.g. the toy world's ground truth); teachers may ignore it.
    show_source: whether the teacher sees the source image before the edited one (appendix A.2's VQ teacher
                 sees only the edited image).
    """

    record_id: str
    dimension: Dimension
    instruction: str
    source: Image.Image
    edited: Image.Image
    score: int
    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)
    show_source: bool = True

    @property
    def images(self) -> list[Image.Image]:
        """The images the teacher is shown, in order: [source, edited], or [edited]."""
        return [self.source, self.edited] if self.show_source else [self.edited]


@runtime_checkable
class Teacher(Protocol):
    """Answers annotation requests with raw text (expected: the JSON of DESIGN.md section 3)."""

    def generate(self, requests: Sequence[AnnotationRequest]) -> list[str]: ...


class TeacherError(RuntimeError):
    """The teacher backend failed to produce an answer (HTTP error, timeout, malformed response)."""


def chat_messages(request: AnnotationRequest, image_parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One user turn: the request's images (source first if shown, then edited), then the prompt, in chat-template
    form (``image_parts``: one part per image of ``request.images``)."""
    return [{"role": "user", "content": [*image_parts, {"type": "text", "text": request.prompt}]}]
