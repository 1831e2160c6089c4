"""Image encoding for judges: deterministic PNG bytes (hashed by the cache) and base64 data URLs."""

from __future__ import annotations

import base64
import io

from PIL import Image


def png_bytes(image: Image.Image) -> bytes:
    """The image as RGB PNG bytes; the same pixels always give the same bytes."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def png_data_url(data: bytes) -> str:
    """A ``data:image/png;base64,...`` URL for the OpenAI chat-completions ``image_url`` content part."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
