"""Benchmark results shared by the reward and policy benchmarks: JSON plus a markdown table, written atomically.

The markdown follows the papers' layout: one row per metric, one column per group (task type), then Overall,
followed by the number of items and failures per group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from editrl.io import atomic_write_bytes, atomic_write_json


@dataclass
class GroupResult:
    """Metrics of one group (task type / edit type / subset).

    n_items:    items of the group in the benchmark.
    n_failures: items excluded (judge never answered validly, unreadable input, ...).
    metrics:    metric name -> value over the group's valid items (absent when no item was valid).
    """

    name: str
    n_items: int
    n_failures: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SubsetResult:
    """The same metrics over a named subset of the items (e.g. GEdit-Bench's "intersection").

    definition: what the subset is, in words (printed under its table).
    groups / overall: as in :class:`BenchmarkReport`, over the subset's items only.
    """

    name: str
    definition: str
    n_items: int
    n_failures: int
    groups: list[GroupResult]
    overall: dict[str, float]


@dataclass
class BenchmarkReport:
    """A benchmark run: per-group results, the overall aggregate and what produced them.

    metric_names: row order of the markdown table.
    overall:      metric name -> overall value (how it aggregates is stated in ``aggregation``).
    settings:     the run's settings (model, checkpoint, judge, guidance, dimension mapping, ...).
    notes:        caveats to print under the table (missing groups, deviations).
    n_unparsed:   failures whose judge answers never parsed (under ``parsing: official``, the items the
                  official scorer would have given a random score), included in ``n_failures``.
    subsets:      the same metrics over named subsets of the items (subset name -> result).
    """

    benchmark: str
    metric_names: list[str]
    groups: list[GroupResult]
    overall: dict[str, float]
    aggregation: str
    n_items: int
    n_failures: int
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    n_unparsed: int = 0
    subsets: dict[str, SubsetResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self, digits: int = 3) -> str:
        lines = [f"## {self.benchmark}", ""]
        lines += _table(self.metric_names, self.groups, self.overall, self.n_items, self.n_failures, digits)
        lines += ["", f"Aggregation: {self.aggregation}"]
        if self.n_unparsed:
            lines.append(f"- {self.n_unparsed} failure(s) are answers that never parsed (excluded, never guessed)")
        lines += [f"- {note}" for note in self.notes]
        for subset in self.subsets.values():
            lines += ["", f"### {subset.name} subset", ""]
            lines += _table(self.metric_names, subset.groups, subset.overall, subset.n_items, subset.n_failures, digits)
            lines += ["", subset.definition]
        return "\n".join(lines) + "\n"


def _table(
    metric_names: Sequence[str], groups: Sequence[GroupResult], overall: Mapping[str, float], n_items: int,
    n_failures: int, digits: int,
) -> list[str]:
    """Markdown rows: one per metric, one column per group, then Overall; then items and failures."""
    names = [g.name for g in groups]
    lines = ["| metric | " + " | ".join(names) + " | Overall |", "|" + " --- |" * (len(names) + 2)]
    by_name = {g.name: g for g in groups}
    for metric in metric_names:
        cells = [_fmt(by_name[n].metrics.get(metric), digits) for n in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {_fmt(overall.get(metric), digits)} |")
    lines.append("| items | " + " | ".join(str(by_name[n].n_items) for n in names) + f" | {n_items} |")
    lines.append("| failures | " + " | ".join(str(by_name[n].n_failures) for n in names) + f" | {n_failures} |")
    return lines


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean of a non-empty sequence."""
    if not values:
        raise ValueError("mean of an empty sequence")
    return math.fsum(values) / len(values)


def macro_average(
    values_by_group: Mapping[str, Mapping[str, Sequence[float]]], metric_names: Sequence[str]
) -> tuple[dict[str, dict[str, float]], dict[str, float], list[str]]:
    """Average each metric within each group, then over groups (every group weighs the same).

    values_by_group: group -> metric -> per-item values (valid items only).
    Returns (group -> metric -> mean, metric -> mean of group means, groups left out of the overall because
    they had no valid item).
    """
    group_means: dict[str, dict[str, float]] = {}
    empty: list[str] = []
    for group, per_metric in values_by_group.items():
        means = {m: mean(per_metric[m]) for m in metric_names if per_metric.get(m)}
        group_means[group] = means
        if not means:
            empty.append(group)
    overall = {}
    for m in metric_names:
        present = [gm[m] for gm in group_means.values() if m in gm]
        if present:
            overall[m] = mean(present)
    return group_means, overall, empty


def write_report(report: BenchmarkReport, out_dir: str | Path, stem: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` under ``out_dir`` atomically; returns both paths."""
    out_dir = Path(out_dir)
    stem = stem or report.benchmark
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write_json(json_path, report.to_json())
    atomic_write_bytes(md_path, report.to_markdown().encode())
    return json_path, md_path
