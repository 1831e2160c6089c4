"""A config schema described for people: the sections for ``--help``, every key for the reference document.

Both are read off the structured dataclasses themselves (names, types, defaults, the first docstring line),
so they cannot drift from what :func:`editrl.config.load_config` accepts.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return "???"


def _format_value(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "{...}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def iter_keys(schema: type, prefix: str = "") -> typing.Iterator[tuple[str, str, str, str]]:
    """(dotted key, type, default, section summary) for every leaf key of ``schema``, in declaration order."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        tp = hints.get(field.name, field.type)
        key = f"{prefix}{field.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from iter_keys(tp, f"{key}.")
            continue
        yield key, _type_name(tp), _format_value(_default(field)), _summary(schema)


def sections_help(schema: type, reference: str | None = None) -> str:
    """The top-level sections of ``schema`` with their summaries (an argparse epilog)."""
    hints = typing.get_type_hints(schema)
    lines = ["config sections (override any key as key=value, e.g. grpo.learning_rate=1e-4):"]
    for field in dataclasses.fields(schema):
        tp = hints.get(field.name, field.type)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            lines.append(f"  {field.name + '.*':<22} {_summary(tp)}")
        else:
            lines.append(f"  {field.name:<22} {_type_name(tp)} = {_format_value(_default(field))}")
    if reference:
        lines.append(f"every key, its type and default: {reference}")
    return "\n".join(lines)


def _doc(obj: Any) -> str:
    return inspect.cleandoc(getattr(obj, "__doc__", None) or "")


def _section_markdown(schema: type, prefix: str, level: int) -> list[str]:
    hints = typing.get_type_hints(schema)
    leaves, children = [], []
    for field in dataclasses.fields(schema):
        tp = hints.get(field.name, field.type)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            children.append((f"{prefix}{field.name}", tp))
        else:
            leaves.append((f"{prefix}{field.name}", _type_name(tp), _format_value(_default(field))))
    lines: list[str] = []
    if leaves:
        lines += ["| key | type | default |", "| --- | --- | --- |"]
        lines += ["| " + " | ".join(f"`{c}`".replace("|", "\\|") for c in row) + " |" for row in leaves]
        lines.append("")
    for key, child in children:
        summary, _, details = _doc(child).partition("\n")
        lines += [f"{'#' * level} `{key}`", "", summary, ""]
        if details.strip():
            lines += ["```text", details.strip("\n"), "```", ""]
        lines += _section_markdown(child, f"{key}.", level + 1)
    return lines


def reference_markdown(schema: type, title: str) -> str:
    """Every key of ``schema`` as markdown: one section per nested config with its docstring and a table."""
    lines = [f"# {title}", "", _doc(schema), ""] + _section_markdown(schema, "", 2)
    return "\n".join(lines).rstrip() + "\n"
