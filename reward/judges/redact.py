"""Secrets out of judge error texts before they are logged or stored (an echoing server can return our key)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

_PATTERNS = (
    re.compile(r"(?i)(authorization\s*[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',;}]+"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(api[_-]?key\s*[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
)


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets, Authorization values, ``api_key`` values and ``sk-`` keys replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text
