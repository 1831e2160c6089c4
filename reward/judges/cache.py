"""On-disk cache of valid judge answers, keyed by a hash of (model, prompt, image bytes): a rerun costs nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from editrl.io import atomic_write_json


def request_cache_key(model: str, prompt: str, image_bytes: Sequence[bytes]) -> str:
    """sha256 over the model name, the prompt and each image's encoded bytes (length-prefixed, unambiguous)."""
    h = hashlib.sha256()
    for part in (model.encode(), prompt.encode(), *image_bytes):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


class ResponseCache:
    """One JSON file per answer under ``root/<key[:2]>/<key>.json``; only answers that parsed are stored."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached answer text, or None (a corrupt entry counts as a miss)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        text = entry.get("text") if isinstance(entry, dict) else None
        return text if isinstance(text, str) else None

    def put(self, key: str, text: str, model: str) -> None:
        atomic_write_json(self._path(key), {"model": model, "text": text})
