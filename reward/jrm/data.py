"""Load preference pairs in the EditReward-Data layout (JSONL, JSON list, or parquet) with strict checks.

Columns (DESIGN.md section 3): ``prompt, path_src, path1 (preferred), path2, model{1,2}_dim1_score (IF, 1-4),
model{1,2}_dim2_score (VQ, 1-4), model{1,2}_overall_score, tie_case, confidence``. Optional columns read here:
``id`` (record id; defaults to ``line<N>`` / ``row<N>``), ``rationale1`` / ``rationale2`` (the language
supervision of the preferred / rejected side: the text that follows ``<|reward|>``, see
:mod:`reward.jrm.annotate`). If ``tie_case`` is absent, a tie means equal overall scores. Every other column
is kept verbatim in ``PreferencePair.metadata``. Image paths are relative to ``image_root`` (default: the data
file's directory).

Bad records either raise :class:`PairDataError` naming the file, line/row and id and the problem
(``on_error="raise"``) or are skipped and counted by reason in :class:`LoadReport` (``on_error="skip"``); a
record is never loaded with a silently wrong label.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from editrl.images import ImageDecodeError, PathOutsideRootError, decode_rgb, find_undecodable, resolve_inside
from editrl.jsonl import JsonlError, iter_jsonl_lines, parse_jsonl_line
from reward.jrm.pairs import EditScores, LoadedPair, PreferencePair

OnError = Literal["raise", "skip"]
ImageCheck = Literal["decode", "exists", "none"]

SCORE_COLUMNS = (
    "model1_dim1_score",
    "model1_dim2_score",
    "model1_overall_score",
    "model2_dim1_score",
    "model2_dim2_score",
    "model2_overall_score",
)
REQUIRED_COLUMNS = ("prompt", "path_src", "path1", "path2", *SCORE_COLUMNS)
OPTIONAL_COLUMNS = ("id", "tie_case", "confidence", "rationale1", "rationale2")
KNOWN_COLUMNS = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
#: IF (dim1) and VQ (dim2) are on a 1-4 scale; the overall score may be on any finite scale.
DIMENSION_SCORE_RANGE = (1.0, 4.0)


class PairDataError(ValueError):
    """A preference record (or the file holding it) is unusable; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[PairDataError], tuple[str, str]]:
        """Rebuild from (reason, message) so the error survives pickling (Ray workers re-raise it in the driver)."""
        return type(self), (self.reason, self.message)


@dataclass
class LoadReport:
    """What happened while loading one file.

    total:    records seen (including skipped ones).
    loaded:   records returned.
    skipped:  reason tag -> count of skipped records.
    examples: the first few skip messages (each names the record and the problem).
    """

    path: str
    total: int = 0
    loaded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"{self.path}: {self.loaded}/{self.total} pairs loaded; skipped: {reasons}"


@dataclass
class _RawRecord:
    """A record as read from the file, before validation; ``where`` names it in messages."""

    where: str
    default_id: str
    fields: dict[str, Any] | None
    problem: str | None = None


def _iter_jsonl(path: Path) -> Iterator[_RawRecord]:
    for lineno, line in iter_jsonl_lines(path):
        try:
            obj = parse_jsonl_line(line, path, lineno)
        except JsonlError as err:
            yield _RawRecord(f"{path}:{lineno}", f"line{lineno}", None, err.problem)
            continue
        yield _RawRecord(f"{path}:{lineno}", f"line{lineno}", obj)


def _iter_json_list(path: Path) -> Iterator[_RawRecord]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PairDataError("malformed_json", f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise PairDataError("malformed_json", f"{path}: expected a JSON list of records")
    for index, obj in enumerate(records):
        where = f"{path}[{index}]"
        if not isinstance(obj, dict):
            yield _RawRecord(where, f"row{index}", None, "malformed JSON (record is not an object)")
        else:
            yield _RawRecord(where, f"row{index}", obj)


def _iter_parquet(path: Path) -> Iterator[_RawRecord]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several exception types for a bad file
        raise PairDataError("unreadable_file", f"{path}: cannot read parquet ({exc})") from None
    for index, obj in enumerate(table.to_pylist()):
        yield _RawRecord(f"{path} row {index}", f"row{index}", obj)


def _read_records(path: Path) -> Iterator[_RawRecord]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _iter_jsonl(path)
    if suffix == ".json":
        return _iter_json_list(path)
    if suffix == ".parquet":
        return _iter_parquet(path)
    raise PairDataError("unknown_format", f"{path}: unknown data format {suffix!r} (use .jsonl, .json or .parquet)")


def _score(obj: dict[str, Any], column: str, *, dimension: bool) -> float:
    value = obj[column]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PairDataError("bad_score", f"column {column!r} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise PairDataError("bad_score", f"column {column!r} is not finite: {value!r}")
    low, high = DIMENSION_SCORE_RANGE
    if dimension and not low <= value <= high:
        raise PairDataError("score_out_of_range", f"column {column!r} = {value} is outside {low:g}-{high:g}")
    return value


def _text(obj: dict[str, Any], column: str) -> str:
    value = obj[column]
    if not isinstance(value, str) or not value.strip():
        raise PairDataError("bad_field", f"column {column!r} must be a non-empty string, got {value!r}")
    return value


def _check_image(path: Path, check: ImageCheck) -> None:
    """Existence per record; decoding happens for all records at once, in parallel (``load_preference_pairs``)."""
    if check == "none":
        return
    if not path.is_file():
        raise PairDataError("missing_image", f"image not found: {path}")


def _parse_record(
    obj: dict[str, Any], default_id: str, image_root: Path, image_check: ImageCheck, check_order: bool,
    allow_outside: bool = False,
) -> PreferencePair:
    missing = [c for c in REQUIRED_COLUMNS if c not in obj or obj[c] is None]
    if missing:
        raise PairDataError("missing_column", f"missing column(s) {missing}")
    record_id = str(obj["id"]) if obj.get("id") is not None else default_id
    instruction = _text(obj, "prompt")
    rel = {c: _text(obj, c) for c in ("path_src", "path1", "path2")}
    if rel["path1"] == rel["path2"]:
        raise PairDataError("same_image", f"path1 and path2 are the same file {rel['path1']!r}")
    try:
        paths = {c: resolve_inside(image_root, p, allow_outside=allow_outside) for c, p in rel.items()}
    except PathOutsideRootError as exc:
        raise PairDataError("path_outside_root", str(exc)) from None
    scores = {c: _score(obj, c, dimension="overall" not in c) for c in SCORE_COLUMNS}
    tie_value = obj.get("tie_case")
    if tie_value is None:
        tie = scores["model1_overall_score"] == scores["model2_overall_score"]
    elif isinstance(tie_value, bool):
        tie = tie_value
    else:
        raise PairDataError("bad_field", f"column 'tie_case' must be a boolean, got {tie_value!r}")
    if check_order and scores["model1_overall_score"] < scores["model2_overall_score"]:
        raise PairDataError(
            "preferred_scored_lower",
            f"path1 is the preferred edit but its overall score {scores['model1_overall_score']:g} is below "
            f"path2's {scores['model2_overall_score']:g}",
        )
    confidence = obj.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not math.isfinite(confidence):
            raise PairDataError("bad_field", f"column 'confidence' must be a finite number, got {confidence!r}")
        confidence = float(confidence)
    rationales = {}
    for column, side in (("rationale1", "preferred"), ("rationale2", "rejected")):
        if obj.get(column) is not None:
            rationales[side] = _text(obj, column)
    for path in paths.values():
        _check_image(path, image_check)
    return PreferencePair(
        record_id=record_id,
        instruction=instruction,
        source=paths["path_src"],
        preferred=paths["path1"],
        rejected=paths["path2"],
        scores_preferred=EditScores(
            scores["model1_dim1_score"], scores["model1_dim2_score"], scores["model1_overall_score"]
        ),
        scores_rejected=EditScores(
            scores["model2_dim1_score"], scores["model2_dim2_score"], scores["model2_overall_score"]
        ),
        tie=tie,
        confidence=confidence,
        rationales=rationales,
        metadata={k: v for k, v in obj.items() if k not in KNOWN_COLUMNS},
    )


def load_preference_pairs(
    path: str | Path,
    image_root: str | Path | None = None,
    on_error: OnError = "raise",
    *,
    image_check: ImageCheck = "decode",
    check_order: bool = True,
    max_examples: int = 20,
    allow_outside: bool = False,
    decode_workers: int = 4,
) -> tuple[list[PreferencePair], LoadReport]:
    """Read and validate every record of ``path`` (``.jsonl``, ``.json`` list, or ``.parquet``).

    image_check: "decode" decodes every image once (``decode_workers`` threads; truncated files, decompression
                 bombs and non-images are caught up front), "exists" only checks the files exist, "none" trusts
                 the paths (then :func:`load_images` still fails loudly).
    allow_outside: accept image paths that leave ``image_root`` (``../``, absolute paths); else such a record
                 is a ``path_outside_root`` error.
    check_order: reject records whose preferred side (path1) has the lower overall score.
    Duplicate record ids are an error (annotations are joined back by id).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise PairDataError("missing_file", f"preference data file not found: {path}")
    root = Path(image_root) if image_root is not None else path.parent
    report = LoadReport(path=str(path))
    reasons: Counter[str] = Counter()
    pairs: list[PreferencePair] = []
    seen_ids: set[str] = set()
    wheres: list[str] = []  # file:line of each kept pair
    for raw in _read_records(path):
        report.total += 1
        try:
            if raw.fields is None:
                raise PairDataError("malformed_json", raw.problem or "malformed record")
            pair = _parse_record(raw.fields, raw.default_id, root, image_check, check_order, allow_outside)
            if pair.record_id in seen_ids:
                raise PairDataError("duplicate_id", f"record id {pair.record_id!r} appears more than once")
        except PairDataError as exc:
            record_id = (raw.fields or {}).get("id", raw.default_id)
            message = f"{raw.where} (record {record_id}): {exc}"
            if on_error == "raise":
                raise PairDataError(exc.reason, message) from None
            reasons[exc.reason] += 1
            if len(report.examples) < max_examples:
                report.examples.append(message)
            continue
        seen_ids.add(pair.record_id)
        pairs.append(pair)
        wheres.append(raw.where)
    if image_check == "decode":
        pairs = _drop_undecodable(pairs, wheres, on_error, reasons, report, max_examples, decode_workers)
    report.loaded = len(pairs)
    report.skipped = dict(reasons)
    return pairs, report


def _drop_undecodable(
    pairs: list[PreferencePair], wheres: list[str], on_error: OnError, reasons: Counter[str], report: LoadReport,
    max_examples: int, workers: int,
) -> list[PreferencePair]:
    """Decode every image of ``pairs`` once, in parallel; raise at, or skip and count, each pair with a bad one."""
    failures = find_undecodable((p for pair in pairs for p in (pair.source, pair.preferred, pair.rejected)), workers)
    if not failures:
        return pairs
    kept = []
    for pair, where in zip(pairs, wheres, strict=True):
        bad = next((failures[p] for p in (pair.source, pair.preferred, pair.rejected) if p in failures), None)
        if bad is None:
            kept.append(pair)
            continue
        message = f"{where} (record {pair.record_id}): {bad}"
        if on_error == "raise":
            raise PairDataError(bad.reason, message)
        reasons[bad.reason] += 1
        if len(report.examples) < max_examples:
            report.examples.append(message)
    return kept


def fit_to_pixel_budget(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Downscale (keeping the aspect ratio) so that width*height <= ``max_pixels``; never upscales."""
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (image.width * image.height))
    size = (max(1, math.floor(image.width * scale)), max(1, math.floor(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def open_rgb(path: Path, max_pixels: int | None = None, *, record_id: str = "?") -> Image.Image:
    """Decode one image to RGB within the pixel budget; errors name the file and the record."""
    try:
        rgb = decode_rgb(path)
    except ImageDecodeError as exc:
        raise PairDataError(exc.reason, f"record {record_id}: {exc}") from None
    return fit_to_pixel_budget(rgb, max_pixels)


def load_images(pair: PreferencePair, max_pixels: int | None = None) -> LoadedPair:
    """Decode the pair's source, preferred and rejected images (RGB, within ``max_pixels`` each)."""
    return LoadedPair(
        pair=pair,
        source=open_rgb(pair.source, max_pixels, record_id=pair.record_id),
        preferred=open_rgb(pair.preferred, max_pixels, record_id=pair.record_id),
        rejected=open_rgb(pair.rejected, max_pixels, record_id=pair.record_id),
    )


def split_pairs(
    pairs: list[PreferencePair], held_out_fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Deterministic (train, held_out) split that keeps all pairs of one source image on the same side.

    Sources are shuffled with ``seed`` (from their sorted order, so input order does not matter) and whole
    source groups are moved to held-out until it holds at least ``round(n * held_out_fraction)`` pairs; this
    avoids scoring held-out edits of a source the model was trained on.
    """
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    groups: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(str(pair.source), []).append(index)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = round(len(pairs) * held_out_fraction)
    held: set[int] = set()
    for key in keys:
        if len(held) >= target:
            break
        held.update(groups[key])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


@dataclass
class SamplerState:
    """Where a :class:`PairBatchSampler` is: the epoch and the number of batches already taken in it."""

    epoch: int = 0
    batch_in_epoch: int = 0


class PairBatchSampler:
    """Deterministic, seeded, resumable batches of record indices (torch-free).

    Each epoch is a fresh permutation of ``range(num_items)`` drawn from ``Random((seed, epoch))``, cut into
    ``batches_per_epoch`` global batches of ``global_batch_size`` (the incomplete tail is dropped so every
    optimizer step sees the same number of pairs). ``shard(batch, rank, world_size)`` gives one worker's part.
    The state is two integers, so a checkpoint restores the exact position.
    """

    def __init__(self, num_items: int, global_batch_size: int, seed: int) -> None:
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
        if num_items < global_batch_size:
            raise ValueError(f"need at least one full batch: {num_items} items < batch size {global_batch_size}")
        self.num_items = num_items
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.state = SamplerState()

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch_size

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(self.num_items))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def next_batch(self) -> list[int]:
        """The next global batch (advances the state, rolling over to the next epoch)."""
        if self.state.batch_in_epoch >= self.batches_per_epoch:
            self.state = SamplerState(self.state.epoch + 1, 0)
        start = self.state.batch_in_epoch * self.global_batch_size
        batch = self._permutation(self.state.epoch)[start : start + self.global_batch_size]
        self.state = SamplerState(self.state.epoch, self.state.batch_in_epoch + 1)
        return batch

    @staticmethod
    def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
        """Worker ``rank``'s share of a global batch (strided, so shares differ by at most one item)."""
        return batch[rank::world_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "batch_in_epoch": self.state.batch_in_epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed") != self.seed:
            raise ValueError(f"sampler seed mismatch: checkpoint has {state.get('seed')}, config has {self.seed}")
        self.state = SamplerState(int(state["epoch"]), int(state["batch_in_epoch"]))
