"""Reading the public benchmark releases from local directories: parquet (Hugging Face datasets layout), JSON,
and image cells or paths. Wrong layouts raise :class:`BenchmarkLayoutError` naming what was expected where."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

#: An image kept undecoded until it is needed (benchmarks hold thousands): a PIL image, encoded bytes, or a file.
ImageRef = Image.Image | bytes | Path


class BenchmarkLayoutError(FileNotFoundError):
    """A benchmark directory or record does not have the public release's layout."""


def load_image(ref: ImageRef, where: str) -> Image.Image:
    """Decode an :data:`ImageRef` to RGB; errors name ``where``."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, Path):
        return open_image(ref, where)
    return decode_image_cell(ref, where)


def image_cell_bytes(cell: Any, where: str) -> bytes:
    """The encoded bytes of a Hugging Face ``Image`` cell (``{"bytes": ..., "path": ...}``), undecoded."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, bytes | bytearray) or not data:
        raise BenchmarkLayoutError(f"{where}: image cell has no embedded bytes")
    return bytes(data)


def existing_file(path: Path, where: str) -> Path:
    """``path`` if it is a file, else an error naming it and the record."""
    if not path.is_file():
        raise BenchmarkLayoutError(f"{where}: image file not found: {path}")
    return path


def find_parquet_files(data_dir: str | Path, benchmark: str, expected: str) -> list[Path]:
    """All ``*.parquet`` under ``data_dir`` (recursively, sorted); ``expected`` describes the release layout."""
    root = Path(data_dir)
    if not root.is_dir():
        raise BenchmarkLayoutError(f"{benchmark}: data directory {root} does not exist (expected {expected})")
    files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    if not files:
        raise BenchmarkLayoutError(f"{benchmark}: no parquet files under {root} (expected {expected})")
    return files


def read_parquet_records(
    files: Sequence[Path], required: Sequence[str], benchmark: str, optional: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Rows of all files as dicts with only the ``required`` (must exist) and ``optional`` columns read."""
    records: list[dict[str, Any]] = []
    for path in files:
        names = pq.read_schema(path).names
        missing = [c for c in required if c not in names]
        if missing:
            raise BenchmarkLayoutError(
                f"{benchmark}: {path} lacks column(s) {missing}; expected columns {list(required)}, found {names}"
            )
        columns = [*required, *(c for c in optional if c in names)]
        records.extend(pq.read_table(path, columns=columns).to_pylist())
    return records


def decode_image_cell(cell: Any, where: str) -> Image.Image:
    """A Hugging Face ``Image`` cell (``{"bytes": ..., "path": ...}``) or raw bytes as an RGB PIL image."""
    data = image_cell_bytes(cell, where)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises several classes for undecodable data
        raise BenchmarkLayoutError(f"{where}: cannot decode image ({exc})") from None
    return image.convert("RGB")


def open_image(path: Path, where: str) -> Image.Image:
    """An image file as RGB; a missing or unreadable file raises naming it and the record."""
    if not path.is_file():
        raise BenchmarkLayoutError(f"{where}: image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as exc:  # PIL raises several classes for undecodable files
        raise BenchmarkLayoutError(f"{where}: cannot read image {path} ({exc})") from None


def read_json(path: Path, benchmark: str, expected: str) -> Any:
    """A JSON file of a release; a missing file raises naming ``expected``."""
    if not path.is_file():
        raise BenchmarkLayoutError(f"{benchmark}: {path} not found (expected {expected})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BenchmarkLayoutError(f"{benchmark}: {path} is not valid JSON ({exc})") from None
