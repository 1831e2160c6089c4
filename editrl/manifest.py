"""A checkpoint directory's manifest: the size and sha256 of every file, written last and verified on load.

A directory whose manifest is missing, or whose files are missing, truncated or altered, is damaged; the error
names the file, so a resume can fall back to an older intact checkpoint instead of loading garbage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from editrl.io import atomic_write_json

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


class DamagedCheckpointError(RuntimeError):
    """A checkpoint directory fails its manifest check (the message names the file)."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(directory: str | Path) -> dict[str, dict[str, int | str]]:
    """Record every file under ``directory`` (relative path -> size, sha256) in its manifest; returns it."""
    directory = Path(directory)
    entries = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": sha256_of(p)} for p in _files(directory)
    }
    atomic_write_json(directory / MANIFEST_NAME, {"files": entries})
    return entries


def verify_manifest(directory: str | Path) -> None:
    """Raise :class:`DamagedCheckpointError` naming the first missing, resized or altered file."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DamagedCheckpointError(f"{directory}: no {MANIFEST_NAME} (the checkpoint was not completely written)")
    try:
        entries = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedCheckpointError(f"{manifest_path}: unreadable manifest ({exc})") from None
    for rel, entry in sorted(entries.items()):
        path = directory / rel
        if not path.is_file():
            raise DamagedCheckpointError(f"{directory}: file {rel} is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise DamagedCheckpointError(f"{directory}: file {rel} has {size} bytes, the manifest says {entry['size']}")
        if sha256_of(path) != entry["sha256"]:
            raise DamagedCheckpointError(f"{directory}: file {rel} does not match its sha256 in the manifest")
