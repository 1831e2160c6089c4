"""Image encoding for judges: deterministic bytes (hashed by the cache) and base64 data URLs.

``PNG`` is lossless (this project's default). ``JPEG_Q75`` is what the official VIEScore of GEdit-Bench sends
its GPT judge (PIL ``save(format="JPEG", quality=75)``, PIL's default 4:2:0 subsampling); a judge that takes
pixels rather than bytes (a local VLM) gets the decoded JPEG (:func:`as_judge_sees_it`), so that every judge
sees the same pixels.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image


@dataclass(frozen=True)
class ImageEncoding:
    """How an image travels to a judge: ``format`` and, for JPEG, ``quality`` (1-95)."""

    format: Literal["png", "jpeg"] = "png"
    quality: int | None = None

    @property
    def mime_type(self) -> str:
        return "image/png" if self.format == "png" else "image/jpeg"


PNG = ImageEncoding("png")
JPEG_Q75 = ImageEncoding("jpeg", 75)
#: Config names of the encodings (``image_encoding`` keys of the benchmark configs).
IMAGE_ENCODINGS: dict[str, ImageEncoding] = {"png": PNG, "jpeg_q75": JPEG_Q75}


def encode_image(image: Image.Image, encoding: ImageEncoding = PNG) -> bytes:
    """The image as RGB bytes in ``encoding``; the same pixels always give the same bytes."""
    buf = io.BytesIO()
    if encoding.format == "png":
        image.convert("RGB").save(buf, format="PNG")
    else:
        image.convert("RGB").save(buf, format="JPEG", quality=encoding.quality)
    return buf.getvalue()


def data_url(data: bytes, encoding: ImageEncoding = PNG) -> str:
    """A ``data:<mime>;base64,...`` URL for the OpenAI chat-completions ``image_url`` content part."""
    return f"data:{encoding.mime_type};base64," + base64.b64encode(data).decode("ascii")


def as_judge_sees_it(image: Image.Image, encoding: ImageEncoding = PNG) -> Image.Image:
    """The RGB pixels a judge decodes from ``encode_image(image, encoding)`` (PNG: the image itself)."""
    if encoding.format == "png":
        return image.convert("RGB")
    with Image.open(io.BytesIO(encode_image(image, encoding))) as decoded:
        return decoded.convert("RGB")
