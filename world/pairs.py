"""Preference pairs from correct and deliberately wrong edits, written in the EditReward-Data layout.

Each record holds the DESIGN.md section 3 columns (path1 = the preferred edit) plus extra columns that the
loader keeps verbatim in ``PreferencePair.metadata``: ``oracle_facts`` ({"path1": facts, "path2": facts}, the
oracle's per-region facts for each side), ``edit_kinds`` (how each side was made), ``task_seed``, ``task_size``
and ``edit_type`` (rebuild the task with :func:`world.tasks.build_task`).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from editrl.io import atomic_write_bytes
from world.corruptions import Candidate, candidates
from world.oracle import OracleScore, score_edit
from world.render import to_pil
from world.tasks import EditTask

#: Extra columns written next to the EditReward-Data ones.
FACTS_COLUMN = "oracle_facts"
KINDS_COLUMN = "edit_kinds"


@dataclass
class PairBuildReport:
    """What :func:`write_preference_pairs` wrote: records, ties among them, and pairs per (kind1, kind2)."""

    path: Path
    n_records: int
    n_ties: int
    kind_counts: dict[str, int]


def overall_score(score: OracleScore) -> float:
    """EditReward's overall column: the sum of the two 1-4 dimension scores (2-8)."""
    return float(score.instruction_following + score.visual_quality)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _choose_pairs(
    scored: list[tuple[Candidate, OracleScore]],
    rng: np.random.Generator,
    pairs_per_task: int,
    tie_fraction: float,
    n_builtin: int,
    extra_pairs: int,
) -> list[tuple[int, int]]:
    """Up to ``pairs_per_task`` (preferred, rejected) index pairs; at most ``tie_fraction`` of them overall ties.

    Candidates from index ``n_builtin`` on are extra (e.g. policy samples): up to ``extra_pairs`` of the pairs
    are strict pairs between two extra candidates, or else between an extra and a built-in one, so the model
    learns to rank the edits it will actually score. A tie still needs different per-dimension scores.
    """
    strict: list[tuple[int, int]] = []
    ties: list[tuple[int, int]] = []
    for i, j in itertools.combinations(range(len(scored)), 2):
        si, sj = scored[i][1], scored[j][1]
        oi, oj = overall_score(si), overall_score(sj)
        if oi != oj:
            strict.append((i, j) if oi > oj else (j, i))
        elif (si.instruction_following, si.visual_quality) != (sj.instruction_following, sj.visual_quality):
            ties.append((i, j))
    n_ties = min(len(ties), int(round(pairs_per_task * tie_fraction)))
    n_strict = min(len(strict), pairs_per_task - n_ties)
    shuffled = [strict[k] for k in rng.permutation(len(strict))]
    both_extra = [p for p in shuffled if min(p) >= n_builtin]
    one_extra = [p for p in shuffled if max(p) >= n_builtin > min(p)]
    chosen = (both_extra + one_extra)[: min(extra_pairs, n_strict)]
    chosen += [p for p in shuffled if p not in chosen][: n_strict - len(chosen)]
    chosen += [ties[k] for k in rng.permutation(len(ties))[:n_ties]]
    return chosen


def write_preference_pairs(
    tasks: Sequence[EditTask],
    out_dir: str | Path,
    *,
    seed: int,
    pairs_per_task: int = 4,
    tie_fraction: float = 0.1,
    extra_candidates: Mapping[str, Sequence[Candidate]] | None = None,
    extra_pairs_per_task: int = 0,
    name: str = "pairs.jsonl",
) -> PairBuildReport:
    """Score every task's candidates with the oracle and write ``<out_dir>/<name>`` and the PNGs it names.

    extra_candidates: task_id -> more edits of that task (e.g. samples of a pretrained policy), scored and
                      paired like the built-in ones; ``extra_pairs_per_task`` of each task's pairs involve them
                      (when their scores differ), preferably two of them.
    Image paths are relative to ``out_dir``; record ids are ``<task_id>-<k>``.
    """
    out_dir = Path(out_dir)
    lines: list[str] = []
    n_ties = 0
    kind_counts: dict[str, int] = {}
    for task in tasks:
        rng = np.random.default_rng([seed, task.seed])
        builtin = candidates(task, rng)
        pool = builtin + list((extra_candidates or {}).get(task.task_id, ()))
        scored = [(c, score_edit(task, c.image)) for c in pool]
        src_rel = f"images/{task.task_id}/source.png"
        atomic_write_bytes(out_dir / src_rel, _png(task.source_image))
        written: set[int] = set()
        for k, (i, j) in enumerate(_choose_pairs(scored, rng, pairs_per_task, tie_fraction, len(builtin), extra_pairs_per_task)):
            for index in (i, j):
                if index not in written:
                    atomic_write_bytes(out_dir / _edit_rel(task, index, scored[index][0]), _png(scored[index][0].image))
                    written.add(index)
            (c1, s1), (c2, s2) = scored[i], scored[j]
            tie = overall_score(s1) == overall_score(s2)
            n_ties += tie
            pair_kind = f"{c1.kind}>{c2.kind}" if not tie else f"{c1.kind}={c2.kind}"
            kind_counts[pair_kind] = kind_counts.get(pair_kind, 0) + 1
            record = {
                "id": f"{task.task_id}-{k}",
                "prompt": task.instruction,
                "path_src": src_rel,
                "path1": _edit_rel(task, i, c1),
                "path2": _edit_rel(task, j, c2),
                "model1_dim1_score": s1.instruction_following,
                "model1_dim2_score": s1.visual_quality,
                "model1_overall_score": overall_score(s1),
                "model2_dim1_score": s2.instruction_following,
                "model2_dim2_score": s2.visual_quality,
                "model2_overall_score": overall_score(s2),
                "tie_case": tie,
                "confidence": 1.0,
                FACTS_COLUMN: {"path1": s1.facts, "path2": s2.facts},
                KINDS_COLUMN: {"path1": c1.kind, "path2": c2.kind},
                "task_seed": task.seed,
                "task_size": task.size,
                "edit_type": task.edit_type,
            }
            lines.append(json.dumps(record))
    path = out_dir / name
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return PairBuildReport(path=path, n_records=len(lines), n_ties=n_ties, kind_counts=kind_counts)


def _edit_rel(task: EditTask, index: int, candidate: Candidate) -> str:
    return f"images/{task.task_id}/{index:02d}_{candidate.kind}.png"
