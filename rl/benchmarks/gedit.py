"""GEdit-Bench (Step1X-Edit's release, Hugging Face ``stepfun-ai/GEdit-Bench``) scored with VIEScore.

Layout: parquet files (``data/*.parquet``) with columns ``task_type`` (11 groups), ``key``, ``instruction``,
``instruction_language`` ("en"/"cn"), ``input_image``; the English subset has 606 samples.
Protocol: the edit is resized to the source's size; the judge answers the SC question with [source, edit]
and the PQ question with [edit]; SC = min(success, over-editing), PQ = min(naturalness, artifacts),
O = sqrt(SC * PQ), all on 0-10; each metric is averaged per group, then over the 11 groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from reward.benchmarks.files import (
    BenchmarkLayoutError,
    find_parquet_files,
    image_cell_bytes,
    read_parquet_records,
)
from reward.judges.base import JudgeAnswer, JudgeRequest
from reward.judges.prompts.viescore import (
    VIESCORE_FORMAT,
    perceptual_quality_prompt,
    semantic_consistency_prompt,
)
from rl.benchmarks.base import EditItem

GEDIT_GROUPS: tuple[str, ...] = (
    "background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
    "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer",
)
GEDIT_EN_SIZE = 606
_COLUMNS = ("task_type", "key", "instruction", "instruction_language", "input_image")
_EXPECTED = "the stepfun-ai/GEdit-Bench parquet files (data/*.parquet) with columns " + ", ".join(_COLUMNS)


def viescore(sc_scores: Sequence[float], pq_scores: Sequence[float]) -> dict[str, float]:
    """VIEScore of one edit: SC = min(sc_scores), PQ = min(pq_scores), O = sqrt(SC * PQ)."""
    sc, pq = min(sc_scores), min(pq_scores)
    return {"SC": sc, "PQ": pq, "O": math.sqrt(sc * pq)}


def load_gedit_bench(data_dir: str | Path, language: str = "en", max_items_per_group: int | None = None) -> list[EditItem]:
    """Items of one language, in file order; a task type outside the 11 groups raises naming the row."""
    rows = read_parquet_records(find_parquet_files(data_dir, "gedit", _EXPECTED), _COLUMNS, "gedit")
    items: list[EditItem] = []
    per_group: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["instruction_language"] != language:
            continue
        where = f"gedit row {i} (key {row['key']!r})"
        group = row["task_type"]
        if group not in GEDIT_GROUPS:
            raise BenchmarkLayoutError(f"{where}: task_type {group!r} is not one of {list(GEDIT_GROUPS)}")
        if max_items_per_group is not None and per_group.get(group, 0) >= max_items_per_group:
            continue
        per_group[group] = per_group.get(group, 0) + 1
        items.append(EditItem(str(row["key"]), group, str(row["instruction"]), image_cell_bytes(row["input_image"], where)))
    if not items:
        raise BenchmarkLayoutError(f"gedit: no samples with instruction_language == {language!r} under {data_dir}")
    return items


class GEditBenchmark:
    """VIEScore questions and metrics for GEdit-Bench."""

    name = "gedit"
    groups = GEDIT_GROUPS
    metric_names = ("SC", "PQ", "O")
    headline_metric = "O"
    aggregation = "VIEScore SC/PQ/O (0-10) per item, averaged per task group, then over groups"

    def requests(self, item: EditItem, edited: Image.Image) -> list[JudgeRequest]:
        source = item.load_source()
        edit = edited.convert("RGB").resize(source.size)
        return [
            JudgeRequest(f"{item.key}/SC", semantic_consistency_prompt(item.instruction), [source, edit], VIESCORE_FORMAT),
            JudgeRequest(f"{item.key}/PQ", perceptual_quality_prompt(), [edit], VIESCORE_FORMAT),
        ]

    def item_metrics(self, item: EditItem, answers: Sequence[JudgeAnswer]) -> dict[str, float]:
        sc, pq = answers
        if sc.scores is None or pq.scores is None:
            raise ValueError(f"gedit item {item.key!r}: metrics need both SC and PQ answers")
        return viescore(sc.scores, pq.scores)
