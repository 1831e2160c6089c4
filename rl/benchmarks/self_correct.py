"""Self-correction with JRM's language head (JRM paper section 4.4, Table 3), and the test-time
Generate-Critique-Refine loop of RationalRewards (best of N by JRM score).

Input: a policy's GEdit-Bench edits with their VIEScores (a previous ``evaluate.py policy`` run,
:mod:`rl.benchmarks.saved_outputs`). Protocol (``select="last"``, one round; Table 3):

1. select the edits whose VIEScore ``metric`` (default the overall O) is below the largest threshold; each
   threshold t of ``thresholds`` (7, 6, 5, 4, 3) is the row of items with ``metric < t``;
2. JRM's language head critiques each edit (:meth:`reward.jrm.model.JRM.explain`: the rationale generated after
   ``<|reward|>``, one per dimension with the paper prompts), turned into plain text (:func:`critique_text`);
3. the policy edits the *source* again, with the same seed and sampling settings as the original edit, and the
   instruction extended with the critique (:func:`refine_instruction`);
4. the original and the re-edit are scored by JRM's score head (the combined reward, and each dimension), the
   re-edit by the judge with the benchmark's questions for the *original* instruction; the original's VIEScore is
   the saved one (the selection used it), or, with ``rejudge_before``, the same judge's answer now (so that a
   different judge, or the judge's own drift, does not enter the Δ; selection still uses the saved score);
5. per threshold: samples, mean VIEScore before / after and its Δ (over the samples whose before and after were
   both judged; judge failures are counted, never scored), mean JRM score before / after and its Δ.

The loop (``select="best_jrm"``, ``rounds = N - 1``): generate (the saved edit) -> critique -> refine, repeated,
each round critiquing the previous round's edit; the result is the best of the N candidates by JRM score
(the original included: if it stays best, its saved VIEScore is its "after" and nothing is re-judged).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image

from editrl.io import atomic_write_bytes, atomic_write_json
from policies.base import EditingPolicy
from reward.base import RewardScores
from reward.jrm.model import Explanation
from reward.jrm.rationale import Rationale
from reward.judges.base import Judge
from rl.benchmarks.base import PolicyBenchmark
from rl.benchmarks.runner import generate_edits, judge_edits
from rl.benchmarks.saved_outputs import SavedEdit

#: Table 3's thresholds on the VIEScore.
PAPER_THRESHOLDS: tuple[float, ...] = (7.0, 6.0, 5.0, 4.0, 3.0)
#: How the critique extends the instruction of the re-edit.
REFINE_TEMPLATE = "{instruction}\nA critique of a previous attempt, fix what it points out: {critique}"
SELECT_MODES = ("last", "best_jrm")
_DIMENSION_NAMES = {"IF": "Instruction following", "VQ": "Visual quality"}
_SPECIAL = re.compile(r"<\|[^|<>]*\|>")
_REGION = re.compile(r"<\|bbox_(\d+)\|>")


class CritiquingRewardModel(Protocol):
    """What self-correction needs of JRM: the score head and the language head."""

    def score(self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]) -> RewardScores: ...

    def explain(
        self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str], *, max_new_tokens: int = 512
    ) -> list[Explanation]: ...


@dataclass
class SelfCorrectConfig:
    """thresholds:   rows of the table (items with ``metric < t``); the largest selects what is corrected.
    metric:          the VIEScore metric thresholds and Δ refer to (``O``, ``SC`` or ``PQ``).
    rounds:          critique -> re-edit rounds (1: Table 3; N - 1 for the best-of-N loop).
    select:          ``last`` (the last re-edit is the result, Table 3) or ``best_jrm`` (best of the original and
                     every re-edit by JRM score: the RationalRewards loop).
    max_new_tokens:  length of each generated critique (tokens, per dimension row).
    max_critique_chars: the critique is cut (at a word) to this many characters before it extends the instruction.
    chunk_size:      items per chunk (bounds memory: their images, critiques and edits).
    rejudge_before:  judge the original edits again with this run's judge instead of using the saved VIEScores as
                     "before" (the selection still uses the saved ones).
    """

    thresholds: tuple[float, ...] = PAPER_THRESHOLDS
    metric: str = "O"
    rounds: int = 1
    select: Literal["last", "best_jrm"] = "last"
    max_new_tokens: int = 512
    max_critique_chars: int = 1000
    batch_size: int = 1
    chunk_size: int = 32
    rejudge_before: bool = False

    def validate(self) -> None:
        if not self.thresholds or any(not math.isfinite(t) for t in self.thresholds):
            raise ValueError(f"thresholds must be finite numbers, got {list(self.thresholds)}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.select not in SELECT_MODES:
            raise ValueError(f"select must be one of {SELECT_MODES}, got {self.select!r}")
        if self.max_new_tokens < 1 or self.max_critique_chars < 1 or self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError("max_new_tokens, max_critique_chars, batch_size and chunk_size must be >= 1")


def _rationale_text(dimension: str, rationale: Rationale) -> str:
    labels = {r.id: r.label for r in rationale.regions}
    text = _REGION.sub(lambda m: f" [{labels.get(int(m.group(1)), 'region ' + m.group(1))}] ", rationale.reasoning)
    text = text.replace("<|global|>", " [overall] ")
    return f"{_DIMENSION_NAMES.get(dimension, dimension)}: {text}"


def critique_text(explanation: Explanation, max_chars: int) -> str:
    """Plain text of JRM's rationale: each parsed dimension's reasoning (region tags replaced by the regions'
    labels, ``<|global|>`` by ``[overall]``), or, if nothing parsed, the generated text without special tokens;
    whitespace collapsed, cut at a word to ``max_chars``."""
    if explanation.rationales:
        text = " ".join(_rationale_text(dim, r) for dim, r in explanation.rationales.items())
    else:
        text = explanation.text
    text = " ".join(_SPECIAL.sub(" ", text).split())
    if len(text) > max_chars:
        cut = text[:max_chars]
        text = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return text


def refine_instruction(instruction: str, critique: str) -> str:
    """The re-edit's instruction: the original extended with the critique (unchanged if the critique is empty)."""
    return REFINE_TEMPLATE.format(instruction=instruction, critique=critique) if critique else instruction


@dataclass
class CorrectedItem:
    """One corrected edit. ``saved``: the original run's VIEScore (what selected it); ``before``: the VIEScore
    the Δ starts from (``saved``, or the re-judged original; None: that judging failed, ``before_failure`` says
    why); ``candidates_jrm``: JRM score of the original (index 0) and of each re-edit; ``chosen``: the candidate
    that is the result; ``after``: the result's VIEScore (None: the judge failed, ``after_failure`` says why);
    ``jrm_*_dims``: JRM's per-dimension means."""

    key: str
    group: str
    instruction: str
    saved: dict[str, float]
    before: dict[str, float] | None
    before_failure: str | None
    after: dict[str, float] | None
    after_failure: str | None
    jrm_before: float
    jrm_after: float
    jrm_before_dims: dict[str, float]
    jrm_after_dims: dict[str, float]
    critiques: list[str]
    refined_instructions: list[str]
    candidates_jrm: list[float]
    chosen: int


@dataclass
class ThresholdRow:
    """A row of Table 3: the items with ``metric < threshold``; VIEScore means over the ``judged`` ones.
    ``viescore_delta_by_metric``: the Δ of every VIEScore metric (SC, PQ, O) over the judged items;
    ``jrm_delta_by_dimension``: the Δ of JRM's per-dimension means over all the row's items."""

    threshold: float
    samples: int
    judged: int
    viescore_before: float | None
    viescore_after: float | None
    viescore_delta: float | None
    jrm_before: float | None
    jrm_after: float | None
    jrm_delta: float | None
    viescore_delta_by_metric: dict[str, float] = field(default_factory=dict)
    jrm_delta_by_dimension: dict[str, float] = field(default_factory=dict)


@dataclass
class SelfCorrectionResult:
    rows: list[ThresholdRow]
    items: list[CorrectedItem]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_markdown(self, digits: int = 3) -> str:
        metric = self.settings.get("metric", "O")
        loop = self.settings.get("select") == "best_jrm"
        title = (
            f"Test-time Generate-Critique-Refine loop (best of {self.settings.get('rounds', 0) + 1} by JRM)"
            if loop else "Self-correction with JRM's critiques (Table 3)"
        )

        def fmt(v: float | None, signed: bool = False) -> str:
            return "-" if v is None else (f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}")

        lines = [
            f"## {title}", "",
            f"| threshold | samples | VIEScore ({metric}) before | after | VIEScore Δ | JRM before | after | JRM Δ | judged |",
            "|" + " --- |" * 9,
        ]
        for r in self.rows:
            lines.append(
                f"| {metric} < {r.threshold:g} | {r.samples} | {fmt(r.viescore_before)} | {fmt(r.viescore_after)} | "
                f"{fmt(r.viescore_delta, True)} | {fmt(r.jrm_before)} | {fmt(r.jrm_after)} | {fmt(r.jrm_delta, True)} | {r.judged} |"
            )
        lines += ["", "VIEScore Δ: mean over the samples whose result was judged; JRM Δ: mean over all samples "
                      "(JRM's combined score-head reward)."]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def threshold_rows(items: Sequence[CorrectedItem], thresholds: Sequence[float], metric: str) -> list[ThresholdRow]:
    """Table 3's rows: for each threshold, the items whose original ``metric`` is below it."""
    rows = []
    for t in thresholds:
        sel = [i for i in items if i.saved[metric] < t]
        judged = [i for i in sel if i.before is not None and i.after is not None]
        v_before = _mean([i.before[metric] for i in judged])  # type: ignore[index]
        v_after = _mean([i.after[metric] for i in judged])  # type: ignore[index]
        j_before, j_after = _mean([i.jrm_before for i in sel]), _mean([i.jrm_after for i in sel])
        metrics = sorted(set.intersection(*(set(i.before) & set(i.after) for i in judged))) if judged else []  # type: ignore[arg-type]
        dims = sorted(set.intersection(*(set(i.jrm_before_dims) for i in sel))) if sel else []
        by_metric = {m: sum(i.after[m] - i.before[m] for i in judged) / len(judged) for m in metrics}  # type: ignore[index,operator]
        by_dim = {d: sum(i.jrm_after_dims[d] - i.jrm_before_dims[d] for i in sel) / len(sel) for d in dims}
        rows.append(ThresholdRow(
            threshold=t, samples=len(sel), judged=len(judged), viescore_before=v_before, viescore_after=v_after,
            viescore_delta=None if v_before is None or v_after is None else v_after - v_before,
            jrm_before=j_before, jrm_after=j_after,
            jrm_delta=None if j_before is None or j_after is None else j_after - j_before,
            viescore_delta_by_metric=by_metric, jrm_delta_by_dimension=by_dim,
        ))
    return rows


def _scores(jrm: CritiquingRewardModel, sources, edits, instructions) -> tuple[list[float], list[dict[str, float]]]:
    out = jrm.score(sources, edits, instructions)
    dims = [dict(zip(out.dimensions, row)) for row in out.mu.tolist()]
    return out.reward.tolist(), dims


def _correct_chunk(
    chunk: Sequence[SavedEdit],
    policy: EditingPolicy,
    jrm: CritiquingRewardModel,
    bench: PolicyBenchmark,
    judge: Judge,
    cfg: SelfCorrectConfig,
    seed: int,
    edit_kwargs: dict[str, Any],
    edits_dir: Path | None,
) -> list[CorrectedItem]:
    items = [s.item for s in chunk]
    sources = [it.load_source() for it in items]
    instructions = [it.instruction for it in items]
    current = [s.edit for s in chunk]
    reward, dims = _scores(jrm, sources, current, instructions)
    candidates: list[list[Image.Image]] = [current]
    candidate_reward, candidate_dims = [reward], [dims]
    critiques: list[list[str]] = [[] for _ in items]
    refined: list[list[str]] = [[] for _ in items]
    for round_index in range(cfg.rounds):
        explanations = jrm.explain(sources, current, instructions, max_new_tokens=cfg.max_new_tokens)
        texts = [critique_text(e, cfg.max_critique_chars) for e in explanations]
        new_items = [dataclasses.replace(it, instruction=refine_instruction(it.instruction, t)) for it, t in zip(items, texts)]
        for i, (text, it) in enumerate(zip(texts, new_items)):
            critiques[i].append(text)
            refined[i].append(it.instruction)
        round_dir = edits_dir / f"round_{round_index + 1}" if edits_dir is not None else None
        new_edits = generate_edits(
            policy, new_items, seed=seed, batch_size=cfg.batch_size, edit_kwargs=edit_kwargs, edits_dir=round_dir,
            desc=f"re-edit round {round_index + 1}",
        )
        current = [new_edits[it.key] for it in items]
        reward, dims = _scores(jrm, sources, current, instructions)
        candidates.append(current)
        candidate_reward.append(reward)
        candidate_dims.append(dims)

    chosen = []
    for i in range(len(items)):
        per_candidate = [r[i] for r in candidate_reward]
        chosen.append(len(per_candidate) - 1 if cfg.select == "last" else max(range(len(per_candidate)), key=per_candidate.__getitem__))
    before: list[tuple[dict[str, float] | None, str | None]] = [(dict(s.metrics or {}), None) for s in chunk]
    if cfg.rejudge_before:
        again = judge_edits(bench, items, {it.key: s.edit for it, s in zip(items, chunk)}, judge)
        before = [(o.metrics, o.failure) for o in again]
    to_judge = [i for i, c in enumerate(chosen) if c > 0]
    judged = judge_edits(bench, [items[i] for i in to_judge], {items[i].key: candidates[chosen[i]][i] for i in to_judge}, judge)
    after: dict[int, tuple[dict[str, float] | None, str | None]] = {
        i: (o.metrics, o.failure) for i, o in zip(to_judge, judged)
    }
    results = []
    for i, saved in enumerate(chunk):
        c = chosen[i]
        metrics, failure = after.get(i, before[i])  # the original kept (loop): its "after" is its "before"
        results.append(CorrectedItem(
            key=items[i].key, group=items[i].group, instruction=items[i].instruction, saved=dict(saved.metrics or {}),
            before=before[i][0], before_failure=before[i][1], after=metrics, after_failure=failure,
            jrm_before=candidate_reward[0][i], jrm_after=candidate_reward[c][i],
            jrm_before_dims=candidate_dims[0][i], jrm_after_dims=candidate_dims[c][i],
            critiques=critiques[i], refined_instructions=refined[i],
            candidates_jrm=[r[i] for r in candidate_reward], chosen=c,
        ))
    return results


def run_self_correction(
    saved: Sequence[SavedEdit],
    policy: EditingPolicy,
    jrm: CritiquingRewardModel,
    bench: PolicyBenchmark,
    judge: Judge,
    cfg: SelfCorrectConfig,
    *,
    seed: int = 0,
    edit_kwargs: dict[str, Any] | None = None,
    edits_dir: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> SelfCorrectionResult:
    """Correct every saved edit whose ``metric`` is below the largest threshold; items the original run failed
    to judge have no VIEScore to select by and are left out (counted in the notes)."""
    cfg.validate()
    unjudged = [s for s in saved if s.metrics is None]
    missing_metric = [s.item.key for s in saved if s.metrics is not None and cfg.metric not in s.metrics]
    if missing_metric:
        raise ValueError(f"metric {cfg.metric!r} is not among the saved metrics (items {missing_metric[:5]})")
    limit = max(cfg.thresholds)
    selected = [s for s in saved if s.metrics is not None and s.metrics[cfg.metric] < limit]
    items: list[CorrectedItem] = []
    for start in range(0, len(selected), cfg.chunk_size):
        items += _correct_chunk(
            selected[start : start + cfg.chunk_size], policy, jrm, bench, judge, cfg, seed, edit_kwargs or {}, edits_dir
        )
    notes = [f"{len(selected)} of {len(saved)} saved edits have {cfg.metric} < {limit:g} and were corrected"]
    if unjudged:
        notes.append(f"{len(unjudged)} saved edit(s) had no VIEScore (the judge failed in the original run): left out")
    failed = [i.key for i in items if i.after is None]
    if failed:
        notes.append(f"{len(failed)} result(s) the judge failed on: excluded from the VIEScore columns, counted in 'judged'")
    failed_before = [i.key for i in items if i.before is None]
    if failed_before:
        notes.append(f"{len(failed_before)} original(s) the judge failed on when re-judged: excluded from the VIEScore columns")
    all_settings = {
        "thresholds": list(cfg.thresholds), "metric": cfg.metric, "rounds": cfg.rounds, "select": cfg.select,
        "max_new_tokens": cfg.max_new_tokens, "max_critique_chars": cfg.max_critique_chars,
        "refine_template": REFINE_TEMPLATE, "rejudge_before": cfg.rejudge_before, "judge": judge.name, "seed": seed, "edit": edit_kwargs or {},
    }
    all_settings.update(settings or {})
    return SelfCorrectionResult(threshold_rows(items, cfg.thresholds, cfg.metric), items, all_settings, notes)


def write_self_correction(result: SelfCorrectionResult, out_dir: str | Path, stem: str = "self_correct") -> tuple[Path, Path]:
    """``<stem>.json`` (rows, every item with its critiques, settings) and ``<stem>.md`` (the table)."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write_json(json_path, result.to_json())
    atomic_write_bytes(md_path, result.to_markdown().encode())
    return json_path, md_path
