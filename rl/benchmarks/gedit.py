"""GEdit-Bench (Step1X-Edit's release, Hugging Face ``stepfun-ai/GEdit-Bench``) scored with VIEScore.

Layout: parquet files (``data/*.parquet``) with columns ``task_type`` (11 groups), ``key``, ``instruction``,
``instruction_language`` ("en"/"cn"), ``input_image``, and optionally ``Intersection_exist`` (bool); the
English subset has 606 samples.
Protocol: the edit is resized to the source's size; the judge answers the SC question with [source, edit]
and the PQ question with [edit]; SC = min(SC scores), PQ = min(PQ scores), O = sqrt(SC * PQ), all on 0-10;
each metric is averaged per group, then over the 11 groups. The official VIEScore sends the images as JPEG
at quality 75 (``image_encoding``) and parses leniently (``parsing="official"``, see
:mod:`reward.judges.parsing`).

The official statistics (Step1X-Edit's ``calculate_statistics.py``) report two sets per language: the full
set and the **intersection** subset. The intersection subset is the items whose release row has
``Intersection_exist`` true: the samples of GEdit-Bench for which every model of Step1X-Edit's comparison
(including closed APIs, which refused some inputs) returned an edit; it is fixed by the release, not by the
run. Its metrics are computed exactly as the full set's, over the intersection items of the language that
this run scored successfully (per-group means, then the mean over groups).
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
from reward.judges.images import JPEG_Q75, ImageEncoding
from reward.judges.parsing import ParsingMode
from reward.judges.prompts.viescore import (
    perceptual_quality_prompt,
    semantic_consistency_prompt,
    viescore_format,
)
from rl.benchmarks.base import EditItem

GEDIT_GROUPS: tuple[str, ...] = (
    "background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
    "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer",
)
GEDIT_EN_SIZE = 606
_COLUMNS = ("task_type", "key", "instruction", "instruction_language", "input_image")
#: The release's column marking the intersection subset.
INTERSECTION_COLUMN = "Intersection_exist"
INTERSECTION = "intersection"
INTERSECTION_DEFINITION = (
    "Intersection subset: the items whose release row has Intersection_exist = true (the samples every model of "
    "Step1X-Edit's comparison returned an edit for), aggregated like the full set over those this run scored."
)
_EXPECTED = "the stepfun-ai/GEdit-Bench parquet files (data/*.parquet) with columns " + ", ".join(_COLUMNS)


def viescore(sc_scores: Sequence[float], pq_scores: Sequence[float]) -> dict[str, float]:
    """VIEScore of one edit: SC = min(sc_scores), PQ = min(pq_scores), O = sqrt(SC * PQ) (any number of scores,
    as the official scorer takes the min of whatever list it parsed)."""
    sc, pq = min(sc_scores), min(pq_scores)
    return {"SC": sc, "PQ": pq, "O": math.sqrt(sc * pq)}


def load_gedit_bench(data_dir: str | Path, language: str = "en", max_items_per_group: int | None = None) -> list[EditItem]:
    """Items of one language, in file order; a task type outside the 11 groups raises naming the row. Items
    whose ``Intersection_exist`` is true belong to the ``"intersection"`` subset."""
    rows = read_parquet_records(
        find_parquet_files(data_dir, "gedit", _EXPECTED), _COLUMNS, "gedit", optional=(INTERSECTION_COLUMN,)
    )
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
        subsets = (INTERSECTION,) if row.get(INTERSECTION_COLUMN) is True else ()
        source = image_cell_bytes(row["input_image"], where)
        items.append(EditItem(str(row["key"]), group, str(row["instruction"]), source, subsets))
    if not items:
        raise BenchmarkLayoutError(f"gedit: no samples with instruction_language == {language!r} under {data_dir}")
    return items


class GEditBenchmark:
    """VIEScore questions and metrics for GEdit-Bench.

    parsing:        ``"strict"`` or ``"official"`` (the official VIEScore's lenient reading, unparsed answers
                    counted instead of guessed), see :mod:`reward.judges.parsing`.
    image_encoding: how the judge receives the images (default: JPEG q75, as the official VIEScore sends them).
    """

    name = "gedit"
    groups = GEDIT_GROUPS
    metric_names = ("SC", "PQ", "O")
    headline_metric = "O"
    aggregation = "VIEScore SC/PQ/O (0-10) per item, averaged per task group, then over groups"
    subsets = {INTERSECTION: INTERSECTION_DEFINITION}

    def __init__(self, parsing: ParsingMode = "strict", image_encoding: ImageEncoding = JPEG_Q75) -> None:
        self.answer_format = viescore_format(parsing)
        self.image_encoding = image_encoding

    def requests(self, item: EditItem, edited: Image.Image) -> list[JudgeRequest]:
        source = item.load_source()
        edit = edited.convert("RGB").resize(source.size)
        fmt, enc = self.answer_format, self.image_encoding
        return [
            JudgeRequest(f"{item.key}/SC", semantic_consistency_prompt(item.instruction), [source, edit], fmt, enc),
            JudgeRequest(f"{item.key}/PQ", perceptual_quality_prompt(), [edit], fmt, enc),
        ]

    def item_metrics(self, item: EditItem, answers: Sequence[JudgeAnswer]) -> dict[str, float]:
        sc, pq = answers
        if sc.scores is None or pq.scores is None:
            raise ValueError(f"gedit item {item.key!r}: metrics need both SC and PQ answers")
        return viescore(sc.scores, pq.scores)
