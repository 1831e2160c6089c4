"""The bases' metadata: the build config and the code revision, written into every base folder and checked.

Each base folder (``policy/``, ``backbone/``) holds ``world_base.json`` (its kind, the part of the build config
that made it, that part's sha256, the git revision, library versions, training losses), every safetensors file
carries ``editrl.base`` / ``editrl.config_sha256`` / ``editrl.git_rev`` in its header, and ``manifest.json``
(:mod:`editrl.manifest`) records every file's size and sha256. The output folder's ``build_info.json`` holds the
whole build config, the revision, the sizes and the wall time. Every check's error names the file and key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file

from editrl.config import ConfigError
from editrl.io import atomic_save_safetensors, atomic_write_json
from editrl.manifest import verify_manifest, write_manifest
from world.bases.config import REPO_ROOT, BasesConfig

METADATA_NAME = "world_base.json"
BUILD_INFO_NAME = "build_info.json"
BASE_KINDS: tuple[str, ...] = ("policy", "backbone")
#: The build config's keys both bases depend on (each base also depends on its own section).
SHARED_KEYS: tuple[str, ...] = ("image_size", "edit_types", "eval_tasks", "threads")


@dataclass(frozen=True)
class GitRevision:
    """The commit the code was at (``"unknown"`` outside a git checkout) and whether tracked files differed."""

    rev: str
    dirty: bool

    @property
    def label(self) -> str:
        """``<rev>`` or ``<rev>+dirty``."""
        return self.rev + ("+dirty" if self.dirty else "")


def git_revision(repo: Path = REPO_ROOT) -> GitRevision:
    """``git rev-parse HEAD`` of ``repo`` and whether ``git status`` shows changed tracked files."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=60)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True,
            check=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return GitRevision("unknown", False)
    return GitRevision(rev.stdout.strip(), bool(status.stdout.strip()))


def stage_config(cfg: BasesConfig, kind: str) -> dict[str, Any]:
    """The part of the build config base ``kind`` depends on: the shared keys and its own section."""
    if kind not in BASE_KINDS:
        raise ValueError(f"unknown base kind {kind!r}; expected one of {BASE_KINDS}")
    whole = dataclasses.asdict(cfg)
    return {**{k: whole[k] for k in SHARED_KEYS}, kind: whole[kind]}


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, allow_nan=False).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "diffusers": diffusers.__version__}


def first_difference(stored: Any, expected: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key (sorted order) where two JSON-like trees differ: (key, stored, expected), or None."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        for key in sorted(set(stored) | set(expected)):
            where = f"{prefix}{key}"
            if key not in stored or key not in expected:
                return where, stored.get(key, "<missing>"), expected.get(key, "<missing>")
            found = first_difference(stored[key], expected[key], where + ".")
            if found is not None:
                return found
        return None
    if isinstance(stored, list | tuple) and isinstance(expected, list | tuple) and len(stored) == len(expected):
        for i, (a, b) in enumerate(zip(stored, expected)):
            found = first_difference(a, b, f"{prefix}{i}.")
            if found is not None:
                return found
        return None
    return None if stored == expected else (prefix.rstrip(".") or "<root>", stored, expected)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a missing or unreadable file is an error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (not a folder written by python -m world.bases.build)")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def require_config(path: Path, stored: Any, expected: dict[str, Any]) -> None:
    """Raise ConfigError naming ``path`` and the first key where ``stored`` differs from ``expected``."""
    found = first_difference(stored, expected)
    if found is not None:
        key, was, want = found
        raise ConfigError(f"{path}: config key {key!r} is {was!r} but the build config has {want!r}")


def _header_stamp(kind: str, sha: str, git: GitRevision) -> dict[str, str]:
    return {"editrl.base": kind, "editrl.config_sha256": sha, "editrl.git_rev": git.label}


def stamp_safetensors(folder: Path, stamp: dict[str, str]) -> None:
    """Add ``stamp`` to the header metadata of every safetensors file under ``folder`` (rewritten atomically)."""
    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            header = dict(handle.metadata() or {})
        atomic_save_safetensors(path, load_file(path), metadata={**header, **stamp})


def write_base_metadata(folder: Path, kind: str, cfg: BasesConfig, git: GitRevision, training: dict[str, Any]) -> None:
    """Stamp the safetensors headers, write ``world_base.json``, then the manifest (last)."""
    config = stage_config(cfg, kind)
    sha = config_sha256(config)
    stamp_safetensors(folder, _header_stamp(kind, sha, git))
    atomic_write_json(folder / METADATA_NAME, {
        "base": kind, "config": config, "config_sha256": sha, "git_rev": git.rev, "git_dirty": git.dirty,
        "versions": library_versions(), "training": training,
    })
    write_manifest(folder)


def check_base(folder: Path, kind: str, cfg: BasesConfig, git: GitRevision | None = None) -> dict[str, Any]:
    """Verify a base folder against the build config (and ``git`` if given); return its ``world_base.json``.

    Raises DamagedCheckpointError (a file missing or altered since the build), ConfigError (naming the file and
    the key that differs) or FileNotFoundError.
    """
    folder = Path(folder)
    verify_manifest(folder)
    path = folder / METADATA_NAME
    meta = read_json(path)
    for key in ("base", "config", "config_sha256", "git_rev", "git_dirty"):
        if key not in meta:
            raise ConfigError(f"{path}: key {key!r} is missing")
    if meta["base"] != kind:
        raise ConfigError(f"{path}: key 'base' is {meta['base']!r}, expected {kind!r}")
    require_config(path, meta["config"], stage_config(cfg, kind))
    if meta["config_sha256"] != config_sha256(meta["config"]):
        raise ConfigError(f"{path}: key 'config_sha256' does not match its 'config'")
    recorded = GitRevision(str(meta["git_rev"]), bool(meta["git_dirty"]))
    if git is not None and recorded != git:
        raise ConfigError(f"{path}: key 'git_rev' is {recorded.label!r}, the code is at {git.label!r}")
    stamp = _header_stamp(kind, meta["config_sha256"], recorded)
    weights = sorted(folder.rglob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{folder}: no safetensors weights")
    for weight in weights:
        with safe_open(weight, framework="pt") as handle:
            header = handle.metadata() or {}
        for key, value in stamp.items():
            if header.get(key) != value:
                raise ConfigError(f"{weight}: header key {key!r} is {header.get(key)!r}, {path} says {value!r}")
    return meta


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())

