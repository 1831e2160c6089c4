"""Instruction data for RL: JSONL records, a seeded epoch order and a resumable position.

One record per line: ``{"id": str, "instruction": str, "source": "rel/path.png"}`` or ``"sources": [...]``
(1-5 reference images); extra keys are allowed and ignored. Image paths are relative to the JSONL's directory.
The order of epoch ``e`` is a permutation drawn from ``seed + e``, so the ``position`` (number of records
handed out so far) alone determines what comes next: resuming at a saved position repeats and skips nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from editrl.images import ImageDecodeError, PathOutsideRootError, decode_rgb, find_undecodable, resolve_inside
from editrl.jsonl import JsonlError, iter_jsonl_lines, parse_jsonl_line
from rl.types import InstructionRecord

MAX_REFERENCE_IMAGES = 5


class InstructionDataError(ValueError):
    """A record of the instruction JSONL is malformed (the message names the file and line)."""


def _parse_record(raw: object, where: str, root: Path, allow_outside: bool) -> InstructionRecord:
    if not isinstance(raw, dict):
        raise InstructionDataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for key in ("id", "instruction"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise InstructionDataError(f"{where}: key {key!r} must be a non-empty string")
    has_one, has_many = "source" in raw, "sources" in raw
    if has_one == has_many:
        raise InstructionDataError(f"{where} (id {raw['id']!r}): give exactly one of 'source' or 'sources'")
    rel = [raw["source"]] if has_one else raw["sources"]
    if not isinstance(rel, list) or not 1 <= len(rel) <= MAX_REFERENCE_IMAGES or not all(
        isinstance(p, str) and p for p in rel
    ):
        raise InstructionDataError(
            f"{where} (id {raw['id']!r}): 'sources' must be 1-{MAX_REFERENCE_IMAGES} non-empty path strings"
        )
    try:
        sources = tuple(resolve_inside(root, p, allow_outside=allow_outside) for p in rel)
    except PathOutsideRootError as exc:
        raise InstructionDataError(f"{where} (id {raw['id']!r}): {exc} (set data.allow_outside_paths=true to allow)") from None
    return InstructionRecord(raw["id"], raw["instruction"], sources)


def read_instruction_jsonl(
    path: str | Path, *, check_files: bool = True, allow_outside: bool = False, decode_workers: int = 4
) -> list[InstructionRecord]:
    """Parse and validate every line; raise :class:`InstructionDataError` naming the first bad one.

    ``check_files``: decode every source image once now (``decode_workers`` threads), so an unreadable one
    fails the load, naming its line, instead of a round hours later. ``allow_outside``: accept image paths
    that leave the file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise InstructionDataError(f"instruction file not found: {path}")
    records: list[InstructionRecord] = []
    lines: list[int] = []
    seen: set[str] = set()
    for lineno, line in iter_jsonl_lines(path):
        where = f"{path}:{lineno}"
        try:
            raw = parse_jsonl_line(line, path, lineno)
        except JsonlError as err:
            raise InstructionDataError(str(err)) from None
        record = _parse_record(raw, where, path.parent, allow_outside)
        if record.record_id in seen:
            raise InstructionDataError(f"{where}: duplicate id {record.record_id!r}")
        seen.add(record.record_id)
        records.append(record)
        lines.append(lineno)
    if not records:
        raise InstructionDataError(f"instruction file {path} holds no records")
    if check_files:
        failures = find_undecodable((src for r in records for src in r.sources), workers=decode_workers)
        for record, lineno in zip(records, lines, strict=True):
            for src in record.sources:
                if src in failures:
                    raise InstructionDataError(f"{path}:{lineno} (id {record.record_id!r}): {failures[src]}")
    return records


def load_reference_images(record: InstructionRecord) -> list[Image.Image]:
    """Decode a record's reference images to RGB (the error names the record and file)."""
    images = []
    for src in record.sources:
        try:
            images.append(decode_rgb(src))
        except ImageDecodeError as exc:
            raise InstructionDataError(f"record {record.record_id!r}: {exc}") from None
    return images


class InstructionDataset:
    """Endless seeded stream of instruction records with a resumable ``position``."""

    def __init__(self, records: list[InstructionRecord], *, seed: int, position: int = 0) -> None:
        if not records:
            raise InstructionDataError("instruction dataset is empty")
        if position < 0:
            raise InstructionDataError(f"position must be >= 0, got {position}")
        self.records = records
        self.seed = seed
        self.position = position

    @classmethod
    def from_jsonl(cls, path: str | Path, *, seed: int, position: int = 0, **read_options) -> InstructionDataset:
        """Records of ``path`` (``read_options`` go to :func:`read_instruction_jsonl`)."""
        return cls(read_instruction_jsonl(path, **read_options), seed=seed, position=position)

    def _epoch_order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.records), generator=gen).tolist()

    def take(self, n: int) -> list[InstructionRecord]:
        """The next ``n`` records (crossing epochs as needed); advances ``position`` by ``n``."""
        out: list[InstructionRecord] = []
        size = len(self.records)
        while len(out) < n:
            epoch, offset = divmod(self.position, size)
            order = self._epoch_order(epoch)
            chunk = order[offset : offset + (n - len(out))]
            out.extend(self.records[i] for i in chunk)
            self.position += len(chunk)
        return out
