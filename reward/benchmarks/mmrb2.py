"""MMRB2 (Multimodal RewardBench 2) image editing: 1000 human preference pairs, ``chosen`` in {A, B}.

Layout (``edit.json`` as built by MMRB2's ``benchmark/build_from_hf.py``): ``{"pairs": [{"id",
"prompt_content": [["text", ...], ["image", "input_images/..."], ...], "response_a": {"response_content":
[["image", "images/..."]]}, "response_b": {...}, "chosen": "A" | "B"}, ...]}``; paths are relative to the
JSON's directory. Protocol: each pair is judged forward (A, B) and reversed (B, A), the reversed verdict
flipped back; accuracy = correct verdicts / all verdicts. A pointwise reward model's verdict is the side with
the strictly higher score (equal scores are a wrong verdict both ways); its reversed verdict comes from the
same scores with the positions swapped. Pairs with one input image form "single", several "multi".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from editrl.config import ConfigError
from reward.base import RewardModel
from reward.benchmarks.files import BenchmarkLayoutError, ImageRef, existing_file, open_image, read_json
from reward.benchmarks.report import BenchmarkReport, GroupResult
from reward.benchmarks.scoring import COMBINED_REWARD, ScoreTarget, check_score_field, score_targets

BENCHMARK = "mmrb2_edit"
Verdict = Literal["A", "B", "tie"]


@dataclass
class MMRB2Config:
    """score_field: which reward-model score decides; multi_image: how several input images become one source."""

    score_field: str = COMBINED_REWARD
    multi_image: Literal["concat", "first"] = "concat"
    batch_size: int = 8
    max_pairs: int | None = None
    allow_failures: bool = False  # a judge as reward model: exclude and count pairs it could not score

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class MMRB2Pair:
    """One pair; ``sources`` are the prompt's input images in order (one or several)."""

    pair_id: str
    instruction: str
    sources: list[Path]
    response_a: Path
    response_b: Path
    chosen: Literal["A", "B"]


def verdict(score_first: float, score_second: float) -> Verdict:
    """The side a pointwise score prefers, as seen in presentation order."""
    if score_first > score_second:
        return "A"
    if score_second > score_first:
        return "B"
    return "tie"


def flip(v: Verdict) -> Verdict:
    return {"A": "B", "B": "A", "tie": "tie"}[v]


def forward_reverse_correct(score_a: float, score_b: float, chosen: str) -> tuple[bool, bool]:
    """(forward verdict correct, reversed verdict correct once flipped back) for one pair."""
    forward = verdict(score_a, score_b)
    reverse = flip(verdict(score_b, score_a))
    return forward == chosen, reverse == chosen


def concat_horizontally(images: Sequence[Image.Image]) -> Image.Image:
    """Images side by side at the height of the first (aspect ratios kept)."""
    height = images[0].height
    resized = [im if im.height == height else im.resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in resized), height))
    x = 0
    for im in resized:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.width
    return canvas


def _content(parts: object, where: str) -> tuple[list[str], list[str]]:
    if not isinstance(parts, list):
        raise BenchmarkLayoutError(f"{where}: content must be a list of [type, value] entries")
    texts, images = [], []
    for part in parts:
        if not isinstance(part, list | tuple) or len(part) != 2 or part[0] not in ("text", "image"):
            raise BenchmarkLayoutError(f"{where}: content entry {part!r} is not ['text'|'image', value]")
        (texts if part[0] == "text" else images).append(str(part[1]))
    return texts, images


def load_mmrb2_edit(data_dir: str | Path, max_pairs: int | None = None) -> list[MMRB2Pair]:
    """Read ``edit.json`` and its images from ``data_dir``."""
    root = Path(data_dir)
    path = root / "edit.json"
    data = read_json(path, BENCHMARK, "edit.json from MMRB2's benchmark/build_from_hf.py, with images/ and input_images/")
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise BenchmarkLayoutError(f"{BENCHMARK}: {path} must hold an object with a 'pairs' list")
    records = data["pairs"] if max_pairs is None else data["pairs"][:max_pairs]
    pairs = []
    for i, rec in enumerate(records):
        where = f"{path.name} pair {i}"
        try:
            pair_id = str(rec.get("id", rec.get("pair_id")))
            chosen = rec["chosen"]
            prompt_texts, prompt_images = _content(rec["prompt_content"], f"{where} prompt_content")
            _, a_images = _content(rec["response_a"]["response_content"], f"{where} response_a")
            _, b_images = _content(rec["response_b"]["response_content"], f"{where} response_b")
        except (KeyError, TypeError, AttributeError):
            raise BenchmarkLayoutError(f"{where}: expected keys id, prompt_content, response_a, response_b, chosen") from None
        if chosen not in ("A", "B"):
            raise BenchmarkLayoutError(f"{where}: chosen must be 'A' or 'B', got {chosen!r}")
        if not prompt_images or not a_images or not b_images:
            raise BenchmarkLayoutError(f"{where}: the prompt and both responses must contain an image")
        pairs.append(
            MMRB2Pair(
                pair_id=pair_id,
                instruction="\n".join(prompt_texts),
                sources=[existing_file(root / p, where) for p in prompt_images],
                response_a=existing_file(root / a_images[0], where),
                response_b=existing_file(root / b_images[0], where),
                chosen=chosen,
            )
        )
    return pairs


def run_mmrb2(model: RewardModel, pairs: Sequence[MMRB2Pair], cfg: MMRB2Config) -> BenchmarkReport:
    """Forward and reversed verdicts for every pair; accuracy for single-, multi-image pairs and overall."""
    cfg.validate()
    check_score_field(model, cfg.score_field, "score_field")
    targets = []
    for p in pairs:
        source: ImageRef = p.sources[0]
        if cfg.multi_image == "concat" and len(p.sources) > 1:
            source = concat_horizontally([open_image(s, f"{BENCHMARK} pair {p.pair_id!r}") for s in p.sources])
        targets += [
            ScoreTarget(f"{p.pair_id}/A", source, p.response_a, p.instruction),
            ScoreTarget(f"{p.pair_id}/B", source, p.response_b, p.instruction),
        ]
    scored = score_targets(model, targets, cfg.batch_size, desc=BENCHMARK, allow_failures=cfg.allow_failures)
    tallies = {"single": [0, 0, 0, 0], "multi": [0, 0, 0, 0]}  # pairs, failed pairs, correct verdicts, verdicts
    for p in pairs:
        group = "single" if len(p.sources) == 1 else "multi"
        tallies[group][0] += 1
        key_a, key_b = f"{p.pair_id}/A", f"{p.pair_id}/B"
        if key_a in scored.failed or key_b in scored.failed:
            tallies[group][1] += 1
            continue
        fwd, rev = forward_reverse_correct(scored.scores[key_a][cfg.score_field], scored.scores[key_b][cfg.score_field], p.chosen)
        tallies[group][2] += int(fwd) + int(rev)
        tallies[group][3] += 2
    groups = [
        GroupResult(name, t[0], t[1], {"accuracy": t[2] / t[3]} if t[3] else {}) for name, t in tallies.items() if t[0]
    ]
    total_correct, total = sum(t[2] for t in tallies.values()), sum(t[3] for t in tallies.values())
    return BenchmarkReport(
        benchmark=BENCHMARK,
        metric_names=["accuracy"],
        groups=groups,
        overall={"accuracy": total_correct / total} if total else {},
        aggregation="correct verdicts / all verdicts, each pair judged forward and reversed",
        n_items=len(pairs),
        n_failures=sum(t[1] for t in tallies.values()),
        settings={"score_field": cfg.score_field, "multi_image": cfg.multi_image},
    )
