"""The toy world's data files of a run, built when they are missing: the RL instruction file and, when stage 1
trains a JRM, its preference pairs and their rule-teacher rationales.

Driven by config, never by file names: with ``world_data.build_if_missing`` (the toy preset) each missing file
that ``data.train_path``, ``jrm.data.train_pairs`` or ``jrm.data.rationales`` names is written from the world;
a file that exists is used as it is (the log says so). Without it (the default, and every real preset) nothing
is written here, and the preflight's "not found" error names the key.

The same config writes byte-identical files: tasks are the first ``n_*`` tasks of their split of
:mod:`world.tasks` (``rl`` for instructions, ``pairs`` for preference pairs, disjoint from the held-out split),
``seed`` draws the pairs' corrupted candidates and which pairs are kept, and the :class:`RuleTeacher` is
deterministic. Every file is written atomically, and each JSONL only after every image it names (the rationale
file under a temporary name, renamed when complete), so a killed build leaves no file that a later run would
take as finished; that run builds it again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from editrl.config import ConfigError
from reward.jrm.annotate import annotate_pairs
from reward.jrm.data import load_preference_pairs
from reward.jrm.train_config import JRMTrainConfig
from world.demo.config import WorldConfig
from world.pairs import write_preference_pairs
from world.tasks import EDIT_TYPES, make_tasks, write_instruction_jsonl
from world.teacher import RuleTeacher

logger = logging.getLogger("editrl.world.data")


@dataclass
class WorldDataConfig:
    """The toy world's data files, built when missing (:mod:`world.data_files`).

    build_if_missing: write each missing file (instructions; for stage 1, pairs and rationales) from the world.
                      False: a missing file is an error naming its key (the real presets).
    seed:             draws the pairs' corrupted candidates and which pairs are kept (same config, same bytes).
    image_size / edit_types: the tasks' image side (a multiple of 8, >= 16) and the edit types drawn from.
    n_instructions:   RL tasks written to ``data.train_path`` (the first of the world's ``rl`` split).
    n_pair_tasks / pairs_per_task / tie_fraction: stage 1's pairs (``jrm.data.train_pairs``), as the demo's.
    """

    build_if_missing: bool = False
    seed: int = 0
    image_size: int = 32
    edit_types: list[str] = field(default_factory=lambda: list(EDIT_TYPES))
    n_instructions: int = 64
    n_pair_tasks: int = 64
    pairs_per_task: int = 4
    tie_fraction: float = 0.1

    def validate(self) -> None:
        WorldConfig(image_size=self.image_size, edit_types=list(self.edit_types)).validate()
        for key in ("n_instructions", "n_pair_tasks", "pairs_per_task"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.tie_fraction < 1.0:
            raise ConfigError(f"tie_fraction must be in [0, 1), got {self.tie_fraction}")


@dataclass
class WorldDataReport:
    """What :func:`ensure_world_data` did, by config key: files it wrote and files it found and kept."""

    built: dict[str, Path] = field(default_factory=dict)
    reused: dict[str, Path] = field(default_factory=dict)


def ensure_world_data(world: WorldDataConfig, train_path: str, stage1: JRMTrainConfig | None) -> WorldDataReport:
    """Build the missing data files of a run from the toy world (nothing when ``build_if_missing`` is off).

    train_path: ``data.train_path``, the RL instruction file.
    stage1:     the JRM config stage 1 will train with (its ``alpha`` as it will run), or None when it does not
                run; its pairs are built when missing, and its rationales when ``alpha > 0``, ``data.rationales``
                is set and the annotation step (``annotate.enabled``) will not write them itself.
    """
    report = WorldDataReport()
    if not world.build_if_missing:
        return report
    size, types = world.image_size, list(world.edit_types)

    def instructions(path: Path) -> None:
        write_instruction_jsonl(make_tasks("rl", world.n_instructions, size, types), path.parent, name=path.name)

    def pairs(path: Path) -> None:
        tasks = make_tasks("pairs", world.n_pair_tasks, size, types)
        write_preference_pairs(
            tasks, path.parent, seed=world.seed, pairs_per_task=world.pairs_per_task,
            tie_fraction=world.tie_fraction, name=path.name,
        )

    _ensure(report, "data.train_path", train_path, instructions, f"{world.n_instructions} tasks of split 'rl'")
    if stage1 is None:
        return report
    _ensure(
        report, "jrm.data.train_pairs", stage1.data.train_pairs, pairs,
        f"{world.n_pair_tasks} tasks of split 'pairs' x {world.pairs_per_task} pairs, seed {world.seed}",
    )
    if stage1.alpha > 0 and stage1.data.rationales and not stage1.annotate.enabled:
        _ensure(
            report, "jrm.data.rationales", stage1.data.rationales, lambda path: _rationales(stage1, path),
            f"RuleTeacher rationales of {stage1.data.train_pairs}",
        )
    return report


def _ensure(report: WorldDataReport, key: str, path_str: str, build: Callable[[Path], None], what: str) -> None:
    """Build ``path_str`` (the file of config key ``key``) unless it exists; log and record either way."""
    path = Path(path_str)
    if path.is_file():
        logger.info("world data: %s=%s exists; using it as it is (not rebuilt)", key, path)
        report.reused[key] = path
        return
    logger.info("world data: %s=%s is missing; building it (%s)", key, path, what)
    start = time.perf_counter()
    build(path)
    logger.info("world data: wrote %s=%s (%d bytes) in %.1fs", key, path, path.stat().st_size, time.perf_counter() - start)
    report.built[key] = path


def _rationales(stage1: JRMTrainConfig, path: Path) -> None:
    """Annotate the stage-1 pairs with the RuleTeacher into ``<path>.partial``, then rename it to ``path``."""
    data = stage1.data
    pairs, _ = load_preference_pairs(
        data.train_pairs, data.image_root, on_error="raise", image_check="none", allow_outside=data.allow_outside_paths,
    )
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a build killed earlier: start over (the teacher gives the same answers)
    summary = annotate_pairs(pairs, RuleTeacher(), partial, max_retries=0, progress=False)
    if summary.written_rejected:
        raise ConfigError(
            f"jrm.data.rationales: the RuleTeacher could not annotate {summary.written_rejected} edits of "
            f"{data.train_pairs} (a toy-world pair file is needed): {summary.rejection_reasons}"
        )
    os.replace(partial, path)
