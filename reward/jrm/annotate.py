"""Build JRM's language supervision: ask a teacher for IF and VQ rationales of every edit, validate, store.

For every preference pair and side (``path1`` = preferred, ``path2`` = rejected) the teacher gets one request
per dimension (the appendix-A prompts of :mod:`reward.jrm.teachers.prompts`, with the pair's pre-assigned
score). Every answer is validated strictly (:func:`validate_answer`); an invalid answer or a teacher error is
retried at most ``max_retries`` times, then the side is recorded as rejected with the reasons.

Output JSONL, one line per (record, side), appended and flushed line by line, so a rerun skips finished work
(edits rejected because the teacher failed are retried; see ``retry_rejected``); a torn last line (a crash
mid-write) is detected, dropped and redone; a later line for the same key supersedes an earlier one::

    {"key": "r1/path1", "record_id": "r1", "side": "preferred", "status": "ok",
     "IF": {...validated JSON...}, "VQ": {...}, "rationale": "<text>"}
    {"key": "r1/path2", "record_id": "r1", "side": "rejected", "status": "rejected", "reasons": ["IF: ..."]}

``rationale`` is the text the trainer puts after ``<|reward|>`` for that edit
(:func:`reward.jrm.rationale.format_joint_rationale`): the compact JSON
``{"instruction_following": <IF answer>, "visual_quality": <VQ answer>}``. It is joined back
onto the pairs by record id and side with :func:`attach_rationales` (or written as the loader's
``rationale1`` / ``rationale2`` columns).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from editrl.config import ConfigError
from editrl.jsonl import JsonlError, parse_jsonl_line
from reward.jrm.data import load_images
from reward.jrm.pairs import PreferencePair
from reward.jrm.rationale import Rationale, RationaleError, format_joint_rationale, parse_rationale
from reward.jrm.teachers.base import AnnotationRequest, Dimension, Teacher
from reward.jrm.teachers.config import TeacherConfig
from reward.jrm.teachers.prompts import TEACHER_TEMPLATES, build_teacher_prompt, teacher_shows_source

SIDES = (("path1", "preferred"), ("path2", "rejected"))
DIMENSIONS: tuple[Dimension, ...] = ("IF", "VQ")


Validator = Callable[[Dimension, str], Rationale]


def validate_answer(dimension: Dimension, text: str, max_regions: int | None = None) -> Rationale:
    """Parse and strictly check one teacher answer (:func:`reward.jrm.rationale.parse_rationale`).

    IF: regions with distinct integer ids, labels and boxes in [0, 1000] with ymin < ymax and xmin < xmax;
    ``reasoning`` contains ``<|global|>`` and cites only listed ``<|bbox_k|>`` ids. VQ: non-empty ``reasoning``.
    Raises :class:`reward.jrm.rationale.RationaleError` (with a ``reason`` tag) on any violation.
    """
    return parse_rationale(text, dimension, max_regions)


@dataclass
class AnnotationSummary:
    """Counts of one :func:`annotate_pairs` call (this run only, plus what the file already held)."""

    out_path: str
    already_done: int = 0
    written_ok: int = 0
    written_rejected: int = 0
    torn_lines_redone: int = 0
    teacher_calls: int = 0
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    rejected_keys: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.rejection_reasons.items())) or "none"
        return (
            f"{self.out_path}: {self.written_ok} ok, {self.written_rejected} rejected, {self.already_done} already "
            f"done, {self.torn_lines_redone} torn line(s) redone; rejection reasons: {reasons}"
        )


def _read_finished(out_path: Path, repair: bool = True) -> tuple[dict[str, dict[str, Any]], int]:
    """Rows by key (a later row for a key wins) and whether the last line was torn (0 or 1).

    A torn last line (no newline, or not valid JSON) is ignored; with ``repair`` it is also truncated away so
    appending continues on a clean line boundary. A corrupt line anywhere else is an error naming it.
    """
    if not out_path.exists():
        return {}, 0
    data = out_path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()
    good_end = len(data) - len(tail)
    torn = 0
    if tail.strip():
        torn = 1
    finished: dict[str, dict[str, Any]] = {}
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = parse_jsonl_line(raw, out_path, lineno)
            key = row["key"]
        except (JsonlError, KeyError):
            if lineno == len(lines):
                good_end -= len(raw) + 1
                torn = 1
                continue
            raise ValueError(f"{out_path}:{lineno}: corrupt annotation line in the middle of the file") from None
        finished[key] = row
    if torn and repair:
        with out_path.open("r+b") as fh:
            fh.truncate(good_end)
    return finished, torn


def _is_done(finished: dict[str, dict[str, Any]], key: str, retry_rejected: bool) -> bool:
    """Whether the edit ``key`` needs no teacher call: ok, or rejected for invalid answers (unless
    ``retry_rejected``); an edit that failed on a teacher error is always asked again."""
    row = finished.get(key)
    if row is None or row.get("status") == "ok":
        return row is not None
    teacher_failed = any("teacher_error" in reason for reason in row.get("reasons", []))
    return not (retry_rejected or teacher_failed)


def pending_edits(pairs: Sequence[PreferencePair], out_jsonl: str | Path, retry_rejected: bool = False) -> int:
    """How many edits of ``pairs`` :func:`annotate_pairs` would still ask the teacher about (read-only)."""
    finished, _ = _read_finished(Path(out_jsonl), repair=False)
    return sum(not _is_done(finished, f"{p.record_id}/{k}", retry_rejected) for p in pairs for k, _ in SIDES)


@dataclass
class _Unit:
    """One edit to annotate: a pair's side with its requests per dimension."""

    key: str
    record_id: str
    side: str
    requests: dict[str, AnnotationRequest]


def _units_for_pair(
    pair: PreferencePair, dimensions: Sequence[Dimension], max_pixels: int | None, template: str = "project"
) -> list[_Unit]:
    loaded = load_images(pair, max_pixels)
    units = []
    for path_key, side in SIDES:
        scores = pair.scores_preferred if side == "preferred" else pair.scores_rejected
        edited = loaded.preferred if side == "preferred" else loaded.rejected
        key = f"{pair.record_id}/{path_key}"
        requests = {}
        for dim in dimensions:
            raw_score = scores.instruction_following if dim == "IF" else scores.visual_quality
            score = int(round(raw_score))
            requests[dim] = AnnotationRequest(
                record_id=key,
                dimension=dim,
                instruction=pair.instruction,
                source=loaded.source,
                edited=edited,
                score=score,
                prompt=build_teacher_prompt(dim, pair.instruction, score, template),
                metadata={**pair.metadata, "side": side},
                show_source=teacher_shows_source(dim, template),
            )
        units.append(_Unit(key, pair.record_id, side, requests))
    return units


def _ask_with_retries(
    teacher: Teacher,
    requests: list[tuple[str, str, AnnotationRequest]],
    validator: Validator,
    max_attempts: int,
    summary: AnnotationSummary,
) -> tuple[dict[tuple[str, str], Rationale], dict[tuple[str, str], list[str]]]:
    """Ask the teacher for every (key, dim, request), re-asking only the failed ones, ``max_attempts`` rounds."""
    accepted: dict[tuple[str, str], Rationale] = {}
    failures: dict[tuple[str, str], list[str]] = {}
    pending = list(requests)
    for _ in range(max_attempts):
        if not pending:
            break
        summary.teacher_calls += 1
        try:
            answers = teacher.generate([req for _, _, req in pending])
            if len(answers) != len(pending):
                raise RuntimeError(f"teacher returned {len(answers)} answers for {len(pending)} requests")
        except Exception as exc:  # any teacher failure counts as one failed attempt for the whole batch
            for key, dim, _ in pending:
                failures.setdefault((key, dim), []).append(f"{dim}: teacher_error: {exc}")
            continue
        still = []
        for (key, dim, req), answer in zip(pending, answers):
            try:
                accepted[(key, dim)] = validator(dim, answer)
            except RationaleError as exc:
                failures.setdefault((key, dim), []).append(f"{dim}: {exc}")
                still.append((key, dim, req))
        pending = still
    return accepted, {k: v for k, v in failures.items() if k not in accepted}


def annotate_pairs(
    pairs: Sequence[PreferencePair],
    teacher: Teacher,
    out_jsonl: str | Path,
    *,
    dimensions: Sequence[Dimension] = DIMENSIONS,
    max_retries: int = 2,
    batch_size: int = 8,
    max_pixels: int | None = None,
    retry_rejected: bool = False,
    max_regions: int | None = None,
    validator: Validator | None = None,
    progress: bool = True,
    template: str = "project",
) -> AnnotationSummary:
    """Annotate both sides of every pair (resumable); see the module docstring for the output format.

    batch_size:     edits per teacher call (each edit contributes one request per dimension).
    max_retries:    extra attempts per request after the first (bounded; then the edit is rejected).
    retry_rejected: on a rerun, ask again for edits a previous run rejected for invalid answers (edits that
                    failed on a teacher error, e.g. an unreachable endpoint, are always asked again).
    max_regions:    reject IF answers with region ids >= this (the JRM has that many ``<|bbox_k|>`` tokens).
    validator:      replaces :func:`validate_answer` (it must raise ``RationaleError`` on a bad answer).
    template:       the teacher prompts, "project" or "paper" (appendix A; its VQ teacher sees only the edit).
    """
    if validator is None:

        def validator(dim: Dimension, text: str) -> Rationale:
            return validate_answer(dim, text, max_regions)

    if max_retries < 0 or batch_size < 1:
        raise ValueError(f"need max_retries >= 0 and batch_size >= 1, got {max_retries}, {batch_size}")
    out_path = Path(out_jsonl)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    finished, torn = _read_finished(out_path)
    summary = AnnotationSummary(out_path=str(out_path), torn_lines_redone=torn)
    reasons: Counter[str] = Counter()

    def is_done(key: str) -> bool:
        return _is_done(finished, key, retry_rejected)

    todo = [p for p in pairs if not all(is_done(f"{p.record_id}/{k}") for k, _ in SIDES)]
    summary.already_done = 2 * (len(pairs) - len(todo))
    bar = tqdm(total=2 * len(todo), desc="annotate", unit="edit", disable=not progress)
    with out_path.open("a", encoding="utf-8") as out:
        for start in range(0, len(todo), max(1, batch_size // 2)):
            units = [
                u
                for pair in todo[start : start + max(1, batch_size // 2)]
                for u in _units_for_pair(pair, dimensions, max_pixels, template)
            ]
            skipped = [u for u in units if is_done(u.key)]
            summary.already_done += len(skipped)
            bar.update(len(skipped))
            units = [u for u in units if not is_done(u.key)]
            requests = [(u.key, d, r) for u in units for d, r in u.requests.items()]
            accepted, failures = _ask_with_retries(teacher, requests, validator, max_retries + 1, summary)
            for unit in units:
                row: dict[str, Any] = {"key": unit.key, "record_id": unit.record_id, "side": unit.side}
                unit_failures = [m for d in unit.requests for m in failures.get((unit.key, d), [])]
                if all((unit.key, d) in accepted for d in unit.requests):
                    answers = {d: accepted[(unit.key, d)] for d in unit.requests}
                    row.update({d: a.to_json() for d, a in answers.items()})
                    row.update(status="ok", rationale=format_joint_rationale(answers))
                    summary.written_ok += 1
                else:
                    row.update(status="rejected", reasons=unit_failures)
                    summary.written_rejected += 1
                    summary.rejected_keys.append(unit.key)
                    for message in unit_failures:
                        reasons[message.split(":")[1].strip()] += 1
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                bar.update(1)
    bar.close()
    summary.rejection_reasons = dict(reasons)
    return summary


def read_rationales(annotations_jsonl: str | Path) -> dict[tuple[str, str], str]:
    """(record_id, side) -> rationale text, for every ``ok`` line of an annotation file (read-only)."""
    path = Path(annotations_jsonl)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    rows, _ = _read_finished(path, repair=False)
    return {(r["record_id"], r["side"]): r["rationale"] for r in rows.values() if r.get("status") == "ok"}


def attach_rationales(
    pairs: Sequence[PreferencePair], annotations_jsonl: str | Path
) -> tuple[list[PreferencePair], int]:
    """Copies of ``pairs`` with ``rationales`` filled from an annotation file; returns (pairs, sides missing)."""
    table = read_rationales(annotations_jsonl)
    out, missing = [], 0
    for pair in pairs:
        rationales = dict(pair.rationales)
        for _, side in SIDES:
            text = table.get((pair.record_id, side))
            if text is None:
                missing += side not in rationales
            else:
                rationales[side] = text
        out.append(replace(pair, rationales=rationales))
    return out, missing


@dataclass
class AnnotationJobConfig:
    """``python -m reward.jrm.annotate --config job.yaml [key=value ...]``: annotate one pair file."""

    pairs: str = ""
    image_root: str | None = None
    out: str = ""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    on_error: str = "skip"
    max_retries: int = 2
    batch_size: int = 8
    max_pixels: int | None = 200_704
    max_regions: int | None = 16
    retry_rejected: bool = False
    template: str = "project"  # teacher prompts: "project" or "paper" (appendix A, VQ teacher sees only the edit)

    def validate(self) -> None:
        if not self.pairs or not self.out:
            raise ConfigError("pairs and out: both paths are required")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error: must be 'raise' or 'skip', got {self.on_error!r}")
        if self.max_retries < 0 or self.batch_size < 1:
            raise ConfigError("max_retries must be >= 0 and batch_size >= 1")
        if self.template not in TEACHER_TEMPLATES:
            raise ConfigError(f"template: must be one of {list(TEACHER_TEMPLATES)}, got {self.template!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Annotate the pairs of a config'd job and print the summary (the key never appears in any output)."""
    import argparse

    from editrl.config import load_config
    from reward.jrm.data import load_preference_pairs
    from reward.jrm.teachers.config import build_teacher

    parser = argparse.ArgumentParser(description="Write JRM rationales with a teacher (resumable).")
    parser.add_argument("--config", default=None, help="YAML of AnnotationJobConfig")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. teacher.model=...")
    args = parser.parse_args(argv)
    try:
        job = load_config(AnnotationJobConfig, args.config, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}")
        return 2
    pairs, report = load_preference_pairs(job.pairs, job.image_root, on_error=job.on_error)  # type: ignore[arg-type]
    print(report.summary())
    summary = annotate_pairs(
        pairs,
        build_teacher(job.teacher),
        job.out,
        max_retries=job.max_retries,
        batch_size=job.batch_size,
        max_pixels=job.max_pixels,
        max_regions=job.max_regions,
        retry_rejected=job.retry_rejected,
        template=job.template,
    )
    print(summary.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
