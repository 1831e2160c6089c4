"""Runs a policy benchmark: ODE edits with the policy, the judge's questions, per-group aggregation.

Items go through in chunks (edit the chunk, then one judge call for all its questions, which the judge runs
concurrently), so memory stays bounded on the full benchmarks. Failures (a judge that never answered validly)
exclude the item and are counted per group (and, when the answers never parsed, counted as unparsed); they
are never scored as zero nor guessed. A benchmark's report subsets (GEdit-Bench's "intersection") are
aggregated again, the same way, over their items. Edits can be saved (and reused on
a rerun) so that re-judging does not re-edit.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from editrl.io import atomic_write_bytes
from policies.base import EditingPolicy
from reward.benchmarks.report import BenchmarkReport, GroupResult, SubsetResult, macro_average
from reward.judges.base import Judge, JudgeAnswer
from rl.benchmarks.base import EditItem, PolicyBenchmark


@dataclass
class ItemOutcome:
    """One item's result: ``metrics`` when judged, else ``failure`` (the judge's reason; ``unparsed`` when
    an answer never parsed). ``subsets``: the item's report subsets."""

    key: str
    group: str
    metrics: dict[str, float] | None
    failure: str | None
    raw_answers: list[str | None]
    subsets: tuple[str, ...] = ()
    unparsed: bool = False


@dataclass
class PolicyEvalOutcome:
    """The report, per-item outcomes (for the JSON) and the edits of the first ``keep_edits`` items (samples)."""

    report: BenchmarkReport
    items: list[ItemOutcome]
    edits: dict[str, Image.Image]


def _edit_path(edits_dir: Path, item: EditItem) -> Path:
    return edits_dir / item.group / f"{item.key}.png"


def generate_edits(
    policy: EditingPolicy,
    items: Sequence[EditItem],
    *,
    seed: int,
    batch_size: int,
    edit_kwargs: dict[str, Any],
    edits_dir: Path | None = None,
    reuse_edits: bool = False,
    desc: str = "edit",
) -> dict[str, Image.Image]:
    """key -> edited image; every batch uses ``seed`` (the public scripts fix one seed for all samples)."""
    edits: dict[str, Image.Image] = {}
    pending: list[EditItem] = []
    for item in items:
        path = _edit_path(edits_dir, item) if edits_dir is not None else None
        if reuse_edits and path is not None and path.is_file():
            with Image.open(path) as im:
                edits[item.key] = im.convert("RGB")
        else:
            pending.append(item)
    settings: dict[str, Any] = {}
    if edit_kwargs:  # overrides of the policy's own sampling defaults (``policies.settings.SamplingSettings``)
        if getattr(policy, "sampling", None) is None:
            raise TypeError("the policy has no sampling defaults (`sampling`) to apply the config's edit settings to")
        settings = {"settings": policy.sampling.override(**edit_kwargs)}
    for start in tqdm(range(0, len(pending), batch_size), desc=desc, disable=len(pending) <= batch_size):
        batch = pending[start : start + batch_size]
        try:
            images = policy.edit([it.load_source() for it in batch], [it.instruction for it in batch], seed=seed, **settings)
        except TypeError as exc:
            if edit_kwargs and "unexpected keyword" in str(exc):
                raise TypeError(f"the policy's edit() does not accept an edit setting from the config ({exc})") from None
            raise
        if len(images) != len(batch):
            raise ValueError(f"policy.edit returned {len(images)} images for {len(batch)} inputs")
        for item, image in zip(batch, images):
            edits[item.key] = image.convert("RGB")
            if edits_dir is not None:
                buf = io.BytesIO()
                edits[item.key].save(buf, format="PNG")
                atomic_write_bytes(_edit_path(edits_dir, item), buf.getvalue())
    return edits


def judge_edits(
    bench: PolicyBenchmark, items: Sequence[EditItem], edits: dict[str, Image.Image], judge: Judge
) -> list[ItemOutcome]:
    """Ask the judge every question of every item in one call; an item fails if any of its answers failed."""
    per_item = [bench.requests(item, edits[item.key]) for item in items]
    requests = [r for reqs in per_item for r in reqs]
    answers = judge.judge(requests)
    if len(answers) != len(requests):
        raise ValueError(f"judge {judge.name!r} returned {len(answers)} answers for {len(requests)} requests")
    outcomes: list[ItemOutcome] = []
    pos = 0
    for item, reqs in zip(items, per_item):
        mine: list[JudgeAnswer] = answers[pos : pos + len(reqs)]
        pos += len(reqs)
        failed = [a for a in mine if not a.ok]
        raw = [a.raw_text for a in mine]
        if failed:
            reason = "; ".join(f"{a.request_id}: {a.failure}" for a in failed)
            unparsed = any(a.unparsed for a in failed)
            outcomes.append(ItemOutcome(item.key, item.group, None, reason, raw, item.subsets, unparsed))
        else:
            outcomes.append(ItemOutcome(item.key, item.group, bench.item_metrics(item, mine), None, raw, item.subsets))
    return outcomes


def _group_results(
    bench: PolicyBenchmark, outcomes: Sequence[ItemOutcome]
) -> tuple[list[GroupResult], dict[str, float], list[str], list[str]]:
    """(per-group results, overall, groups without items, groups whose every item failed) of ``outcomes``."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    n_items: dict[str, int] = defaultdict(int)
    n_failed: dict[str, int] = defaultdict(int)
    for o in outcomes:
        n_items[o.group] += 1
        if o.metrics is None:
            n_failed[o.group] += 1
            continue
        for m in bench.metric_names:
            values[o.group][m].append(o.metrics[m])
    present = [g for g in bench.groups if n_items[g]]
    group_means, overall, empty = macro_average({g: values[g] for g in present}, bench.metric_names)
    groups = [GroupResult(g, n_items[g], n_failed[g], group_means[g]) for g in present]
    return groups, overall, [g for g in bench.groups if not n_items[g]], empty


def aggregate(bench: PolicyBenchmark, outcomes: Sequence[ItemOutcome], settings: dict[str, Any]) -> BenchmarkReport:
    """Per-group means of the valid items, then the mean over groups; counts and notes for the rest; the same
    over each of the benchmark's report subsets."""
    groups, overall, absent, empty = _group_results(bench, outcomes)
    notes = []
    if absent:
        notes.append(f"groups without items (not in the overall): {absent}")
    if empty:
        notes.append(f"groups whose every item failed (not in the overall): {empty}")
    return BenchmarkReport(
        benchmark=bench.name,
        metric_names=list(bench.metric_names),
        groups=groups,
        overall=overall,
        aggregation=bench.aggregation,
        n_items=len(outcomes),
        n_failures=sum(o.metrics is None for o in outcomes),
        settings=settings,
        notes=notes,
        n_unparsed=sum(o.unparsed for o in outcomes),
        subsets={
            name: _subset_result(bench, name, definition, [o for o in outcomes if name in o.subsets])
            for name, definition in bench.subsets.items()
        },
    )


def _subset_result(bench: PolicyBenchmark, name: str, definition: str, outcomes: Sequence[ItemOutcome]) -> SubsetResult:
    groups, overall, _, _ = _group_results(bench, outcomes)
    n_failures = sum(o.metrics is None for o in outcomes)
    return SubsetResult(name, definition, len(outcomes), n_failures, groups, overall)


def evaluate_policy(
    policy: EditingPolicy,
    bench: PolicyBenchmark,
    items: Sequence[EditItem],
    judge: Judge,
    *,
    seed: int = 0,
    batch_size: int = 1,
    edit_kwargs: dict[str, Any] | None = None,
    edits_dir: Path | None = None,
    reuse_edits: bool = False,
    settings: dict[str, Any] | None = None,
    chunk_size: int = 64,
    keep_edits: int = 8,
) -> PolicyEvalOutcome:
    """Edit every item, judge every edit (``chunk_size`` items at a time), aggregate."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    outcomes: list[ItemOutcome] = []
    kept: dict[str, Image.Image] = {}
    chunks = range(0, len(items), chunk_size)
    for start in tqdm(chunks, desc=bench.name, disable=len(chunks) < 2):
        chunk = items[start : start + chunk_size]
        edits = generate_edits(
            policy, chunk, seed=seed, batch_size=batch_size, edit_kwargs=edit_kwargs or {},
            edits_dir=edits_dir, reuse_edits=reuse_edits, desc=f"{bench.name} edits",
        )
        outcomes += judge_edits(bench, chunk, edits, judge)
        for item in chunk[: max(0, keep_edits - len(kept))]:
            kept[item.key] = edits[item.key]
    all_settings = {"judge": judge.name, "seed": seed, "edit": edit_kwargs or {}}
    all_settings.update(settings or {})
    return PolicyEvalOutcome(aggregate(bench, outcomes, all_settings), outcomes, kept)
