"""Strict JSONL reading: one JSON object per line, blank lines skipped, every error named ``file:line``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class JsonlError(ValueError):
    """A line that is not a JSON object. ``str(err)`` is ``"<path>:<line_no>: <problem>"``.

    path:    the file.
    line_no: 1-based line number in the file (blank lines count).
    problem: what is wrong, e.g. ``"malformed JSON (Expecting value)"``.
    """

    def __init__(self, path: str | Path, line_no: int, problem: str) -> None:
        super().__init__(f"{path}:{line_no}: {problem}")
        self.path = Path(path)
        self.line_no = line_no
        self.problem = problem


def parse_jsonl_line(text: str | bytes, path: str | Path, line_no: int) -> dict[str, Any]:
    """The JSON object on one line; :class:`JsonlError` naming ``path:line_no`` if it is not one."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonlError(path, line_no, f"malformed JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise JsonlError(path, line_no, "malformed JSON (line is not an object)")
    return obj


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every non-blank line, unparsed (for readers that skip bad lines)."""
    with Path(path).open("r", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                yield line_no, line


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) per non-blank line; raises :class:`JsonlError` at the first bad line."""
    for line_no, line in iter_jsonl_lines(path):
        yield line_no, parse_jsonl_line(line, path, line_no)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every object of a JSONL file, in order (blank lines skipped); :class:`JsonlError` on a bad line."""
    return [obj for _, obj in iter_jsonl(path)]
