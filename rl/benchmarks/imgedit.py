"""ImgEdit-Bench, basic set (PKU-YuanGroup/ImgEdit): 737 items in 9 edit types, judged with per-type rubrics.

Layout: ``basic_edit.json`` (key -> {"id": "<category>/<file>.jpg", "prompt", "edit_type"}) in the data
directory; the original images from the release's Benchmark.tar under ``singleturn/`` (or
``Benchmark/singleturn/``) of the same directory; optionally the release's ``prompts.json``.
Protocol: the judge sees the rubric of the item's edit type, then the original and the edited image, and
gives three 1-5 scores; item score = their mean; averaged per edit type, then over the nine types. The
official judge is gpt-4o (``configs/eval_imgedit.yaml``); with ``parsing="official"`` the answer is read as
the official ``step1_get_avgscore.py`` reads it (any number of ``<criterion>: <integer>`` lines) and the
item score is their mean rounded to 2 decimals, as that script writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from reward.benchmarks.files import BenchmarkLayoutError, existing_file, read_json
from reward.benchmarks.report import mean
from reward.judges.base import JudgeAnswer, JudgeRequest
from reward.judges.images import PNG, ImageEncoding
from reward.judges.parsing import ParsingMode
from reward.judges.prompts.imgedit import (
    IMGEDIT_EDIT_TYPES,
    default_imgedit_prompts,
    imgedit_format,
    imgedit_prompt,
    load_imgedit_prompts,
)
from rl.benchmarks.base import EditItem

IMGEDIT_BASIC_SIZE = 737
IMAGE_ROOT_CANDIDATES: tuple[str, ...] = ("singleturn", "Benchmark/singleturn", ".")


def find_image_root(data_dir: Path, first_id: str) -> Path:
    """The directory under which the release's image ids resolve (checked on the first item)."""
    for candidate in IMAGE_ROOT_CANDIDATES:
        root = (data_dir / candidate).resolve()
        if (root / first_id).is_file():
            return root
    tried = ", ".join(str(data_dir / c / first_id) for c in IMAGE_ROOT_CANDIDATES)
    raise BenchmarkLayoutError(
        f"imgedit: original images not found (extract Benchmark.tar into {data_dir}); looked for {tried}"
    )


def load_imgedit_bench(data_dir: str | Path, max_items_per_group: int | None = None) -> list[EditItem]:
    """Items of the basic set in the JSON's order; unknown edit types and missing images raise."""
    root = Path(data_dir)
    meta = read_json(root / "basic_edit.json", "imgedit", "basic_edit.json of ImgEdit's Benchmark/Basic")
    if not isinstance(meta, dict) or not meta:
        raise BenchmarkLayoutError(f"imgedit: {root / 'basic_edit.json'} must map keys to records")
    first = next(iter(meta.values()))
    if not isinstance(first, dict) or "id" not in first:
        raise BenchmarkLayoutError(f"imgedit: records of {root / 'basic_edit.json'} need 'id', 'prompt', 'edit_type'")
    image_root = find_image_root(root, first["id"])
    items: list[EditItem] = []
    per_group: dict[str, int] = {}
    for key, rec in meta.items():
        where = f"imgedit item {key!r}"
        if not isinstance(rec, dict) or not {"id", "prompt", "edit_type"} <= rec.keys():
            raise BenchmarkLayoutError(f"{where}: expected keys 'id', 'prompt', 'edit_type'")
        if rec["edit_type"] not in IMGEDIT_EDIT_TYPES:
            raise BenchmarkLayoutError(f"{where}: edit_type {rec['edit_type']!r} not in {list(IMGEDIT_EDIT_TYPES)}")
        if max_items_per_group is not None and per_group.get(rec["edit_type"], 0) >= max_items_per_group:
            continue
        per_group[rec["edit_type"]] = per_group.get(rec["edit_type"], 0) + 1
        items.append(EditItem(str(key), rec["edit_type"], str(rec["prompt"]), existing_file(image_root / rec["id"], where)))
    return items


def resolve_imgedit_prompts(setting: str, data_dir: str | Path) -> tuple[dict[str, str], str]:
    """(prompts per edit type, where they came from) for ``auto`` / ``builtin`` / a path."""
    if setting == "builtin":
        return default_imgedit_prompts(), "builtin"
    if setting == "auto":
        release = Path(data_dir) / "prompts.json"
        if release.is_file():
            return load_imgedit_prompts(release), str(release)
        return default_imgedit_prompts(), "builtin"
    return load_imgedit_prompts(setting), setting


class ImgEditBenchmark:
    """Per-type rubric questions and the item score for ImgEdit-Bench."""

    name = "imgedit"
    groups = IMGEDIT_EDIT_TYPES
    metric_names = ("score",)
    headline_metric = "score"
    aggregation = "mean of three 1-5 judge scores per item, averaged per edit type, then over types"
    subsets: dict[str, str] = {}

    def __init__(self, prompts: dict[str, str], parsing: ParsingMode = "strict", image_encoding: ImageEncoding = PNG) -> None:
        missing = [t for t in IMGEDIT_EDIT_TYPES if t not in prompts]
        if missing:
            raise ValueError(f"imgedit prompts lack edit type(s) {missing}")
        self.prompts = prompts
        self.parsing = parsing
        self.answer_format = imgedit_format(parsing)
        self.image_encoding = image_encoding

    def requests(self, item: EditItem, edited: Image.Image) -> list[JudgeRequest]:
        prompt = imgedit_prompt(self.prompts[item.group], item.instruction)
        images = [item.load_source(), edited.convert("RGB")]
        return [JudgeRequest(f"{item.key}/judge", prompt, images, self.answer_format, self.image_encoding)]

    def item_metrics(self, item: EditItem, answers: Sequence[JudgeAnswer]) -> dict[str, float]:
        (answer,) = answers
        if answer.scores is None:
            raise ValueError(f"imgedit item {item.key!r}: no valid judge answer")
        score = mean(answer.scores)
        return {"score": round(score, 2) if self.parsing == "official" else score}
