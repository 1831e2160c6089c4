"""EditReward-Bench as the JRM paper reports it (EditScore's release, Hugging Face ``EditScore/EditReward-Bench``).

Layout: parquet files (``data/*.parquet`` of the dataset repo) with columns ``key`` (two ids, one per output
image), ``instruction``, ``input_image``, ``output_images`` (two images; the first is preferred by humans),
``task_type`` (13 types) and ``dimension`` in {prompt_following, consistency, overall}.
Protocol: each output image is scored once; a pair is correct iff score[0] > score[1] (a tie is wrong);
accuracy per task type, then the macro average over task types, separately for each bench dimension. Which
reward-model score answers which bench dimension is explicit in ``dimension_map``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from editrl.config import ConfigError
from reward.base import RewardModel
from reward.benchmarks.files import (
    BenchmarkLayoutError,
    ImageRef,
    find_parquet_files,
    image_cell_bytes,
    read_parquet_records,
)
from reward.benchmarks.report import BenchmarkReport, GroupResult, macro_average
from reward.benchmarks.scoring import ScoreTarget, check_score_field, score_targets

BENCHMARK = "editreward_bench"
BENCH_DIMENSIONS: tuple[str, ...] = ("prompt_following", "consistency", "overall")
TASK_TYPES: tuple[str, ...] = (
    "background_change", "color_alter", "style_change", "subject-add", "subject-remove", "subject-replace",
    "material_alter", "motion_change", "ps_human", "text_change", "tone_transfer", "extract", "compose",
)
_COLUMNS = ("key", "instruction", "input_image", "output_images", "task_type", "dimension")
_EXPECTED = "the EditScore/EditReward-Bench parquet files (data/*.parquet) with columns " + ", ".join(_COLUMNS)


def default_dimension_map() -> dict[str, str]:
    return {"prompt_following": "instruction_following", "consistency": "visual_quality", "overall": "reward"}


@dataclass
class EditRewardBenchConfig:
    """dimension_map: bench dimension -> reward-model score (a dimension name, or ``reward`` = combined scalar)."""

    dimension_map: dict[str, str] = field(default_factory=default_dimension_map)
    batch_size: int = 8
    max_pairs: int | None = None
    allow_failures: bool = False  # a judge as reward model: exclude and count pairs it could not score

    def validate(self) -> None:
        unknown = sorted(set(self.dimension_map) - set(BENCH_DIMENSIONS))
        if unknown:
            raise ConfigError(f"dimension_map has unknown bench dimension(s) {unknown}; allowed {list(BENCH_DIMENSIONS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class EditRewardBenchPair:
    """One human preference: ``output_images[0]`` is preferred on ``dimension``.

    keys: ids of the two output images (an image appears in several pairs under the same id).
    Images are the encoded bytes of the release (decoded when scored).
    """

    keys: tuple[str, str]
    instruction: str
    input_image: ImageRef
    output_images: tuple[ImageRef, ImageRef]
    task_type: str
    dimension: str


def load_editreward_bench(data_dir: str | Path, max_pairs: int | None = None) -> list[EditRewardBenchPair]:
    """Read the release from ``data_dir``; unknown dimensions or malformed rows raise naming the row."""
    files = find_parquet_files(data_dir, BENCHMARK, _EXPECTED)
    rows = read_parquet_records(files, _COLUMNS, BENCHMARK)
    pairs: list[EditRewardBenchPair] = []
    for i, row in enumerate(rows[: max_pairs if max_pairs is not None else len(rows)]):
        where = f"{BENCHMARK} row {i}"
        keys, outputs = row["key"], row["output_images"]
        if not isinstance(keys, list | tuple) or len(keys) != 2 or not isinstance(outputs, list | tuple) or len(outputs) != 2:
            raise BenchmarkLayoutError(f"{where}: 'key' and 'output_images' must hold exactly two entries")
        if row["dimension"] not in BENCH_DIMENSIONS:
            raise BenchmarkLayoutError(f"{where}: dimension {row['dimension']!r} not in {list(BENCH_DIMENSIONS)}")
        pairs.append(
            EditRewardBenchPair(
                keys=(str(keys[0]), str(keys[1])),
                instruction=str(row["instruction"]),
                input_image=image_cell_bytes(row["input_image"], f"{where} input_image"),
                output_images=(
                    image_cell_bytes(outputs[0], f"{where} output_images[0]"),
                    image_cell_bytes(outputs[1], f"{where} output_images[1]"),
                ),
                task_type=str(row["task_type"]),
                dimension=str(row["dimension"]),
            )
        )
    return pairs


def pair_correct(score_preferred: float, score_other: float) -> bool:
    """EditReward-Bench's rule: correct iff the preferred image scores strictly higher (a tie is wrong)."""
    return score_preferred > score_other


def accuracy_report(
    outcomes: Sequence[tuple[str, str, bool | None]], settings: dict, notes: Sequence[str] = ()
) -> BenchmarkReport:
    """Per-task-type accuracy for each bench dimension, macro-averaged over task types.

    outcomes: (task_type, bench dimension, correct) per pair; ``None`` = the pair could not be scored
    (excluded, counted as a failure).
    """
    by_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    failures: dict[str, int] = defaultdict(int)
    for task_type, dimension, correct in outcomes:
        counts[task_type] += 1
        if correct is None:
            failures[task_type] += 1
        else:
            by_group[task_type][dimension].append(1.0 if correct else 0.0)
    order = [t for t in TASK_TYPES if t in counts] + sorted(t for t in counts if t not in TASK_TYPES)
    group_means, overall, _ = macro_average({t: by_group[t] for t in order}, BENCH_DIMENSIONS)
    groups = [GroupResult(t, counts[t], failures[t], group_means[t]) for t in order]
    all_notes = list(notes)
    missing = [t for t in TASK_TYPES if t not in counts]
    if missing:
        all_notes.append(f"task types absent from the data: {missing}")
    return BenchmarkReport(
        benchmark=BENCHMARK,
        metric_names=[d for d in BENCH_DIMENSIONS if d in overall],
        groups=groups,
        overall=overall,
        aggregation="pair accuracy (score[0] > score[1]; ties wrong) per task type, then macro average over task types",
        n_items=len(outcomes),
        n_failures=sum(failures.values()),
        settings=settings,
        notes=all_notes,
    )


def run_editreward_bench(model: RewardModel, pairs: Sequence[EditRewardBenchPair], cfg: EditRewardBenchConfig) -> BenchmarkReport:
    """Score every distinct output image once and compute the report."""
    cfg.validate()
    needed = sorted({p.dimension for p in pairs})
    unmapped = [d for d in needed if d not in cfg.dimension_map]
    if unmapped:
        raise ConfigError(f"dimension_map has no entry for bench dimension(s) {unmapped}")
    for d in needed:
        check_score_field(model, cfg.dimension_map[d], f"dimension_map.{d}")
    targets = [
        ScoreTarget(key, p.input_image, image, p.instruction)
        for p in pairs
        for key, image in zip(p.keys, p.output_images)
    ]
    scored = score_targets(model, targets, cfg.batch_size, desc=BENCHMARK, allow_failures=cfg.allow_failures)
    scores = scored.scores
    outcomes: list[tuple[str, str, bool | None]] = []
    for p in pairs:
        field_name = cfg.dimension_map[p.dimension]
        if p.keys[0] in scored.failed or p.keys[1] in scored.failed:
            outcomes.append((p.task_type, p.dimension, None))
        else:
            outcomes.append((p.task_type, p.dimension, pair_correct(scores[p.keys[0]][field_name], scores[p.keys[1]][field_name])))
    settings = {"dimension_map": dict(cfg.dimension_map), "n_scored_images": len(scores), "n_failed_images": len(scored.failed)}
    return accuracy_report(outcomes, settings)
