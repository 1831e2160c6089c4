"""What a policy benchmark is: items to edit, the judge questions per edit, and how answers become metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from reward.benchmarks.files import ImageRef, load_image
from reward.judges.base import JudgeAnswer, JudgeRequest


@dataclass
class EditItem:
    """One benchmark sample: edit ``source`` by ``instruction``; ``group`` is its task group / edit type.
    The source stays undecoded (bytes or a file) until :meth:`load_source`. ``subsets``: the benchmark's
    report subsets (``PolicyBenchmark.subsets``) this item belongs to."""

    key: str
    group: str
    instruction: str
    source: ImageRef
    subsets: tuple[str, ...] = ()

    def load_source(self) -> Image.Image:
        return load_image(self.source, f"item {self.key!r} source")


class PolicyBenchmark(Protocol):
    """A benchmark's protocol, independent of how edits are produced and who judges them.

    groups:       the benchmark's groups in the papers' column order.
    metric_names: per-item metrics, averaged per group and then over groups.
    headline_metric: the metric the papers report as the benchmark's overall score.
    subsets:      report subsets, name -> definition; each is aggregated again over its items
                  (``EditItem.subsets``) the same way as the whole set.
    """

    name: str
    groups: tuple[str, ...]
    metric_names: tuple[str, ...]
    headline_metric: str
    aggregation: str
    subsets: dict[str, str]

    def requests(self, item: EditItem, edited: Image.Image) -> list[JudgeRequest]: ...

    def item_metrics(self, item: EditItem, answers: Sequence[JudgeAnswer]) -> dict[str, float]: ...
