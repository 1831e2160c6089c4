"""TIGER-AI-Lab's EditReward-Bench: groups of 2, 3 or 4 candidate edits with a human ranking string.

Two layouts are read:
- grouped JSON (``EditReward_Bench_{2,3,4}pair.json``, what TIGER's ``eval_bench.py`` reads): a JSON list of
  records ``{"prompt", "path_src", "paths_generated": [...], "human_vote": {"ranking": "A>B" | "B>A" |
  "A=B=Good" | "A=B=Bad" | "C>A>B" | ...}}``; letters index ``paths_generated``; relative paths resolve
  against the JSON's directory;
- the Hugging Face release (``TIGER-Lab/EditReward-Bench``, ``data/*.parquet``): one row per comparison with
  ``id`` (``<group>_<n>``), ``instruction``, ``source_image``, ``candidate_1``, ``candidate_2``, ``ranking``
  (``"A>B"``, ``"A=B"``, ...), ``dataset`` (``2pair``/``3pair``/``4pair``) and, for 3/4 candidates,
  ``comparison_type`` (``"AvsC"``: candidate_1 is A, candidate_2 is C); groups are rebuilt from the id
  prefix and their ranking from the pairwise preferences (which must form a strict order). Protocol (TIGER's evaluation): strict ranking accuracy = a group is correct iff the model's scores
order all candidates exactly as the human ranking; a 2-candidate tie is correct iff |s_A - s_B| <= epsilon,
with epsilon either given or calibrated as TIGER does (the threshold maximising 2-pair pairwise accuracy
with ties). Pairwise accuracy is reported too (with ties for 2-pair, without for 3/4-pair).
Here equal scores never make a strict ranking correct (TIGER's argsort breaks such ties arbitrarily).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from editrl.config import ConfigError
from reward.base import RewardModel
from reward.benchmarks.files import (
    BenchmarkLayoutError,
    ImageRef,
    existing_file,
    find_parquet_files,
    image_cell_bytes,
    read_json,
    read_parquet_records,
)
from reward.benchmarks.report import BenchmarkReport, GroupResult
from reward.benchmarks.scoring import COMBINED_REWARD, ScoreTarget, check_score_field, score_targets

BENCHMARK = "tiger_editreward_bench"
SUBSET_FILES: dict[str, str] = {
    "2-pair": "EditReward_Bench_2pair.json",
    "3-pair": "EditReward_Bench_3pair.json",
    "4-pair": "EditReward_Bench_4pair.json",
}
TIE = "tie"
_TIE_LABELS = frozenset({"A=B=Good", "A=B=Bad", "A=B"})


@dataclass
class TigerBenchConfig:
    """score_field: which reward-model score ranks candidates; tie_threshold: None = calibrate (TIGER)."""

    score_field: str = COMBINED_REWARD
    tie_threshold: float | None = None
    batch_size: int = 8
    max_groups_per_subset: int | None = None
    allow_failures: bool = False  # a judge as reward model: exclude and count groups it could not score

    def validate(self) -> None:
        if self.tie_threshold is not None and self.tie_threshold < 0:
            raise ConfigError(f"tie_threshold must be >= 0 or null, got {self.tie_threshold}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class CandidateGroup:
    """One ranked group.

    ranking: candidate indices from best to worst, or ``"tie"`` (2-candidate groups only).
    """

    subset: str
    index: int
    instruction: str
    source: ImageRef
    candidates: list[ImageRef]
    ranking: tuple[int, ...] | str


def parse_ranking(text: str, num_candidates: int, where: str) -> tuple[int, ...] | str:
    """``"C>A>B"`` -> (2, 0, 1); ``"B>A"``/``"A<B"`` -> (1, 0); ``"A=B=Good"``/``"A=B=Bad"`` -> ``"tie"``."""
    text = text.strip()
    if text in _TIE_LABELS and num_candidates == 2:
        return TIE
    if num_candidates == 2 and text == "A<B":
        return (1, 0)
    letters = text.split(">")
    expected = {chr(ord("A") + i) for i in range(num_candidates)}
    if len(letters) != num_candidates or set(letters) != expected:
        raise BenchmarkLayoutError(f"{where}: ranking {text!r} is not a strict order of {sorted(expected)}")
    return tuple(ord(letter) - ord("A") for letter in letters)


def strict_ranking_correct(scores: Sequence[float], ranking: tuple[int, ...] | str, tie_threshold: float) -> bool:
    """True iff the scores reproduce the ranking: strictly decreasing along it, or within the tie threshold."""
    if ranking == TIE:
        return abs(scores[0] - scores[1]) <= tie_threshold
    return all(scores[a] > scores[b] for a, b in zip(ranking, ranking[1:]))


def pairwise_labels(scores: Sequence[float], ranking: tuple[int, ...] | str) -> list[tuple[int, float]]:
    """(human label, model difference) for every candidate pair i < j: label 1 if i ranks above j, -1 below, 0 tie."""
    out = []
    for i, j in combinations(range(len(scores)), 2):
        if ranking == TIE:
            label = 0
        else:
            label = 1 if ranking.index(i) < ranking.index(j) else -1
        out.append((label, scores[i] - scores[j]))
    return out


def accuracy_with_ties(pairs: Sequence[tuple[int, float]], epsilon: float) -> float:
    """(C + Thm) / all: a model difference within ``epsilon`` is a predicted tie."""
    good = 0
    for label, diff in pairs:
        if label == 0:
            good += abs(diff) <= epsilon
        else:
            good += abs(diff) > epsilon and label * diff > 0
    return good / len(pairs)


def accuracy_without_ties(pairs: Sequence[tuple[int, float]]) -> float:
    """Accuracy over pairs with a human preference; an exact model tie counts as wrong."""
    decided = [(label, diff) for label, diff in pairs if label != 0]
    return sum(label * diff > 0 for label, diff in decided) / len(decided)


def calibrate_tie_threshold(pairs: Sequence[tuple[int, float]]) -> float:
    """The epsilon in {0} ∪ {|diff|} maximising :func:`accuracy_with_ties` (smallest on ties)."""
    candidates = sorted({0.0, *(abs(d) for _, d in pairs)})
    return max(candidates, key=lambda eps: (accuracy_with_ties(pairs, eps), -eps))


def load_tiger_bench(data_dir: str | Path, max_groups_per_subset: int | None = None) -> list[CandidateGroup]:
    """Read the grouped JSON files if any exists, else the Hugging Face parquet release."""
    root = Path(data_dir)
    present = {name: root / fname for name, fname in SUBSET_FILES.items() if (root / fname).is_file()}
    if not present:
        if root.is_dir() and any(root.rglob("*.parquet")):
            return _load_hf_rows(root, max_groups_per_subset)
        expected = ", ".join(str(root / f) for f in SUBSET_FILES.values())
        raise BenchmarkLayoutError(
            f"{BENCHMARK}: no data under {root}; expected one or more of {expected}, "
            "or the TIGER-Lab/EditReward-Bench parquet files (data/*.parquet)"
        )
    groups: list[CandidateGroup] = []
    for subset, path in present.items():
        records = read_json(path, BENCHMARK, "a JSON list of records")
        if not isinstance(records, list):
            raise BenchmarkLayoutError(f"{BENCHMARK}: {path} must hold a JSON list of records")
        limit = len(records) if max_groups_per_subset is None else max_groups_per_subset
        for i, rec in enumerate(records[:limit]):
            where = f"{path.name} record {i}"
            try:
                prompt, src, gens, ranking = rec["prompt"], rec["path_src"], rec["paths_generated"], rec["human_vote"]["ranking"]
            except (KeyError, TypeError):
                raise BenchmarkLayoutError(
                    f"{where}: expected keys prompt, path_src, paths_generated, human_vote.ranking"
                ) from None
            if not isinstance(gens, list) or len(gens) < 2:
                raise BenchmarkLayoutError(f"{where}: paths_generated must list at least two images")
            groups.append(
                CandidateGroup(
                    subset=subset,
                    index=i,
                    instruction=str(prompt),
                    source=existing_file(path.parent / src, where),
                    candidates=[existing_file(path.parent / g, where) for g in gens],
                    ranking=parse_ranking(str(ranking), len(gens), where),
                )
            )
    return groups


_HF_COLUMNS = ("id", "instruction", "source_image", "candidate_1", "candidate_2", "ranking", "dataset")


def _pair_preference(ranking: str, first: str, second: str, where: str) -> int:
    """+1 if ``first`` is preferred, -1 if ``second``, 0 for a tie, from a row's ranking string."""
    text = ranking.strip()
    if text.startswith(f"{first}={second}") or text.startswith(f"{second}={first}"):
        return 0
    if text in (f"{first}>{second}", f"{second}<{first}"):
        return 1
    if text in (f"{second}>{first}", f"{first}<{second}"):
        return -1
    raise BenchmarkLayoutError(f"{where}: ranking {ranking!r} does not compare {first} and {second}")


def ranking_from_preferences(prefs: dict[tuple[str, str], int], letters: Sequence[str], where: str) -> tuple[int, ...] | str:
    """The strict order implied by pairwise preferences (every pair present), or ``"tie"`` for a 2-way tie."""
    if len(letters) == 2 and prefs.get((letters[0], letters[1])) == 0:
        return TIE
    wins = dict.fromkeys(letters, 0)
    for a, b in combinations(letters, 2):
        if (a, b) not in prefs:
            raise BenchmarkLayoutError(f"{where}: no comparison of {a} and {b}")
        if prefs[(a, b)] == 0:
            raise BenchmarkLayoutError(f"{where}: a tie between {a} and {b} in a {len(letters)}-candidate group")
        wins[a if prefs[(a, b)] > 0 else b] += 1
    if sorted(wins.values()) != list(range(len(letters))):
        raise BenchmarkLayoutError(f"{where}: pairwise preferences {prefs} do not form a strict ranking")
    order = sorted(letters, key=lambda letter: -wins[letter])
    return tuple(letters.index(letter) for letter in order)


def _load_hf_rows(root: Path, max_groups_per_subset: int | None) -> list[CandidateGroup]:
    files = find_parquet_files(root, BENCHMARK, "TIGER-Lab/EditReward-Bench parquet files with columns " + ", ".join(_HF_COLUMNS))
    rows = read_parquet_records(files, _HF_COLUMNS, BENCHMARK, optional=("comparison_type",))
    by_group: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        subset = f"{str(row['dataset']).removesuffix('pair')}-pair"
        if subset not in SUBSET_FILES:
            raise BenchmarkLayoutError(f"{BENCHMARK} row {row['id']!r}: dataset {row['dataset']!r} is not 2pair/3pair/4pair")
        group_id = str(row["id"]).split("_")[0]
        by_group.setdefault((subset, group_id), []).append(row)
    groups: list[CandidateGroup] = []
    per_subset: dict[str, int] = {}
    for (subset, group_id), members in by_group.items():
        if max_groups_per_subset is not None and per_subset.get(subset, 0) >= max_groups_per_subset:
            continue
        where = f"{BENCHMARK} {subset} group {group_id!r}"
        images: dict[str, bytes] = {}
        prefs: dict[tuple[str, str], int] = {}
        for row in members:
            comparison = str(row.get("comparison_type") or "AvsB")
            first, _, second = comparison.partition("vs")
            if not first or not second:
                raise BenchmarkLayoutError(f"{where}: comparison_type {comparison!r} is not like 'AvsC'")
            images[first] = image_cell_bytes(row["candidate_1"], f"{where} candidate {first}")
            images[second] = image_cell_bytes(row["candidate_2"], f"{where} candidate {second}")
            pref = _pair_preference(str(row["ranking"]), first, second, f"{where} row {row['id']!r}")
            prefs[(first, second)], prefs[(second, first)] = pref, -pref
        letters = sorted(images)
        expected = [chr(ord("A") + i) for i in range(int(subset[0]))]
        if letters != expected:
            raise BenchmarkLayoutError(f"{where}: candidates {letters}, expected {expected}")
        per_subset[subset] = per_subset.get(subset, 0) + 1
        groups.append(
            CandidateGroup(
                subset=subset,
                index=len(groups),
                instruction=str(members[0]["instruction"]),
                source=image_cell_bytes(members[0]["source_image"], f"{where} source_image"),
                candidates=[images[letter] for letter in letters],
                ranking=ranking_from_preferences(prefs, letters, where),
            )
        )
    return groups


def run_tiger_bench(model: RewardModel, groups: Sequence[CandidateGroup], cfg: TigerBenchConfig) -> BenchmarkReport:
    """Score every candidate and compute strict ranking and pairwise accuracies per subset and overall."""
    cfg.validate()
    check_score_field(model, cfg.score_field, "score_field")
    targets = [
        ScoreTarget(f"{g.subset}/{g.index}/{c}", g.source, image, g.instruction)
        for g in groups
        for c, image in enumerate(g.candidates)
    ]
    scored = score_targets(model, targets, cfg.batch_size, desc=BENCHMARK, allow_failures=cfg.allow_failures)
    keys = [[f"{g.subset}/{g.index}/{c}" for c in range(len(g.candidates))] for g in groups]
    failed_groups = [g for g, ks in zip(groups, keys) if any(k in scored.failed for k in ks)]
    n_all = {s: sum(g.subset == s for g in groups) for s in SUBSET_FILES}
    ok = [(g, ks) for g, ks in zip(groups, keys) if not any(k in scored.failed for k in ks)]
    groups = [g for g, _ in ok]
    group_scores = [[scored.scores[k][cfg.score_field] for k in ks] for _, ks in ok]
    two_pair = [p for g, s in zip(groups, group_scores) if g.subset == "2-pair" for p in pairwise_labels(s, g.ranking)]
    if cfg.tie_threshold is not None:
        epsilon = cfg.tie_threshold
    else:
        epsilon = calibrate_tie_threshold(two_pair) if two_pair else 0.0
    results: list[GroupResult] = []
    all_pairs: list[tuple[int, float]] = []
    n_correct = 0
    for subset in SUBSET_FILES:
        members = [(g, s) for g, s in zip(groups, group_scores) if g.subset == subset]
        n_failed = sum(g.subset == subset for g in failed_groups)
        if not members:
            if n_failed:
                results.append(GroupResult(subset, n_failed, n_failed, {}))
            continue
        correct = sum(strict_ranking_correct(s, g.ranking, epsilon) for g, s in members)
        pairs = [p for g, s in members for p in pairwise_labels(s, g.ranking)]
        all_pairs += pairs
        n_correct += correct
        metrics = {"strict_accuracy": correct / len(members)}
        if subset == "2-pair":
            metrics["pairwise_accuracy"] = accuracy_with_ties(pairs, epsilon)
        elif any(label != 0 for label, _ in pairs):
            metrics["pairwise_accuracy"] = accuracy_without_ties(pairs)
        results.append(GroupResult(subset, n_all[subset], n_failed, metrics))
    overall_epsilon = calibrate_tie_threshold(all_pairs) if cfg.tie_threshold is None and all_pairs else epsilon
    overall = {}
    if groups:
        overall = {
            "strict_accuracy": n_correct / len(groups),
            "pairwise_accuracy": accuracy_with_ties(all_pairs, overall_epsilon),
        }
    return BenchmarkReport(
        benchmark=BENCHMARK,
        metric_names=["strict_accuracy", "pairwise_accuracy"],
        groups=results,
        overall=overall,
        aggregation=(
            "strict ranking accuracy per subset; overall = correct groups / all groups; pairwise accuracy with ties "
            "(2-pair and overall, each at its tie threshold), without ties for 3/4-pair"
        ),
        n_items=len(groups) + len(failed_groups),
        n_failures=len(failed_groups),
        settings={
            "score_field": cfg.score_field,
            "tie_threshold": epsilon,
            "overall_pairwise_tie_threshold": overall_epsilon,
            "tie_threshold_calibrated": cfg.tie_threshold is None,
        },
        notes=[f"subset(s) absent: {[s for s in SUBSET_FILES if not n_all[s]]}"] if not all(n_all.values()) else [],
    )
