"""Image files as data: decode with one named error for every failure, check many at load time, keep paths in
their root.

Pillow signals a bad file with many classes (``UnidentifiedImageError``, ``OSError`` for truncation,
``SyntaxError``, ``ValueError``, ``EOFError``) and with ``Image.DecompressionBombError``, which is none of
those. Loaders catch :class:`ImageDecodeError` alone; its message names the file and the cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image


class ImageDecodeError(ValueError):
    """An image file is missing or cannot be decoded; ``reason`` is ``missing_image`` or ``corrupt_image``."""

    def __init__(self, path: Path, reason: str, detail: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(detail)


class PathOutsideRootError(ValueError):
    """A data file names an image outside its data root (``../``, an absolute path, a symlink out)."""


def decode_rgb(path: str | Path) -> Image.Image:
    """Decode the whole file and return it as RGB; every failure is an :class:`ImageDecodeError`."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(path, "missing_image", f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(path, "corrupt_image", f"image refused as a decompression bomb: {path} ({exc})") from None
    except Exception as exc:  # Pillow raises many classes for undecodable data
        raise ImageDecodeError(
            path, "corrupt_image", f"image cannot be decoded: {path} ({type(exc).__name__}: {exc})"
        ) from None


def check_decodable(path: str | Path) -> None:
    """Decode ``path`` fully (header and pixel data) and discard it; raises :class:`ImageDecodeError`."""
    decode_rgb(path).close()


def find_undecodable(paths: Iterable[Path], workers: int = 4) -> dict[Path, ImageDecodeError]:
    """Decode every distinct path (threads: Pillow's decoders release the GIL); the failures by path."""
    unique = list(dict.fromkeys(Path(p) for p in paths))

    def attempt(path: Path) -> ImageDecodeError | None:
        try:
            check_decodable(path)
        except ImageDecodeError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(attempt, unique))
    return {path: err for path, err in zip(unique, results, strict=True) if err is not None}


def resolve_inside(root: str | Path, relative: str, *, allow_outside: bool = False) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` (after resolving ``..`` and symlinks)."""
    root = Path(root)
    candidate = root / relative
    if allow_outside:
        return candidate
    resolved_root = root.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise PathOutsideRootError(f"image path {relative!r} leaves the data root {root}")
    return candidate
