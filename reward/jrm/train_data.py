"""The pairs a JRM training run uses: train / held-out split, rationales joined in, over-long pairs dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from editrl.config import ConfigError
from reward.jrm.annotate import attach_rationales
from reward.jrm.data import load_preference_pairs, split_pairs
from reward.jrm.pairs import PreferencePair
from reward.jrm.train_config import JRMDataConfig


def load_pair_split(cfg: JRMDataConfig, seed: int) -> tuple[list[PreferencePair], list[PreferencePair], list[str]]:
    """(train pairs, held-out pairs, report lines), before rationales are joined in."""
    if not cfg.train_pairs:
        raise ConfigError("data.train_pairs: a preference-pair file is required")
    pairs, report = load_preference_pairs(
        cfg.train_pairs, cfg.image_root, on_error=cfg.on_error, image_check=cfg.image_check,
        allow_outside=cfg.allow_outside_paths, decode_workers=cfg.decode_workers,
    )
    lines = [report.summary()]
    if cfg.held_out_pairs:
        held, held_report = load_preference_pairs(
            cfg.held_out_pairs, cfg.held_out_image_root, on_error=cfg.on_error, image_check=cfg.image_check,
            allow_outside=cfg.allow_outside_paths, decode_workers=cfg.decode_workers,
        )
        lines.append(held_report.summary())
        train = pairs
    else:
        train, held = split_pairs(pairs, cfg.held_out_fraction, seed)
    return train, held, lines


@dataclass
class RationaleCoverage:
    """How many training pairs carry language supervision (both sides, one side, none)."""

    pairs: int = 0
    both_sides: int = 0
    one_side: int = 0
    no_side: int = 0

    @staticmethod
    def of(pairs: Sequence[PreferencePair]) -> RationaleCoverage:
        cover = RationaleCoverage(pairs=len(pairs))
        for pair in pairs:
            sides = sum(side in pair.rationales for side in ("preferred", "rejected"))
            cover.both_sides += sides == 2
            cover.one_side += sides == 1
            cover.no_side += sides == 0
        return cover

    @property
    def sides_without(self) -> int:
        return self.one_side + 2 * self.no_side

    def summary(self) -> str:
        return (
            f"rationales: {self.both_sides}/{self.pairs} training pairs with both sides, {self.one_side} with one, "
            f"{self.no_side} without any ({self.sides_without} side(s) train L_rank only)"
        )


def join_rationales(train: list[PreferencePair], cfg: JRMDataConfig) -> list[PreferencePair]:
    """``train`` with the rationales of ``cfg.rationales`` joined in (a missing file names the key)."""
    if not cfg.rationales:
        return train
    if not Path(cfg.rationales).is_file():
        raise ConfigError(
            f"data.rationales: {cfg.rationales} not found (write it with python -m reward.jrm.annotate, or set "
            "annotate.enabled=true with a teacher so stage 1 writes it first)"
        )
    return attach_rationales(train, cfg.rationales)[0]


def require_rationales(coverage: RationaleCoverage, alpha: float, rationales: str | None) -> None:
    """alpha > 0 needs language supervision: no training pair with a rationale is an error naming the key.

    Pairs that lack one are counted (:class:`RationaleCoverage`) and train their ranking terms only; they are
    never a silent alpha = 0 run.
    """
    if alpha > 0.0 and coverage.pairs and coverage.no_side == coverage.pairs:
        where = f"{rationales} gives none of them one" if rationales else "data.rationales is not set"
        raise ConfigError(
            f"data.rationales: alpha={alpha:g} > 0 trains the language head on rationales, but none of the "
            f"{coverage.pairs} training pairs has one ({where}); set data.rationales to an annotation JSONL "
            "(annotate.enabled=true writes it with a teacher first) or alpha=0 for the ranking-only baseline"
        )


def load_training_data(
    cfg: JRMDataConfig, seed: int, alpha: float = 0.0
) -> tuple[list[PreferencePair], list[PreferencePair], list[str]]:
    """(train pairs, held-out pairs, report lines), with rationales joined in when configured.

    The report counts the training pairs with and without rationales; ``alpha > 0`` with none is an error
    naming ``data.rationales`` (:func:`require_rationales`).
    """
    train, held, lines = load_pair_split(cfg, seed)
    train = join_rationales(train, cfg)
    coverage = RationaleCoverage.of(train)
    lines.append(coverage.summary() + (f" (joined from {cfg.rationales})" if cfg.rationales else ""))
    require_rationales(coverage, alpha, cfg.rationales)
    return train, held, lines


#: Upper bound on the chat-template tokens around the prompt (system turn, roles, vision markers, <|reward|>).
TEMPLATE_TOKEN_SLACK = 64


def sequence_length_bound(model: Any, pair: PreferencePair, max_pixels: int) -> int:
    """An upper bound on the token length of any row of either side of ``pair`` (its longest row prompt, both
    images, the whole joint rationale).

    Images contribute at most ``max_pixels / (patch_size * merge_size)^2`` tokens each; text is tokenized.
    """
    from reward.jrm.prompts import row_prompts

    processor = model.image_processor
    pixels = min(max_pixels, model.config.max_pixels)
    image_tokens = pixels // (processor.patch_size * processor.merge_size) ** 2
    prompts = row_prompts(model.config.prompt, model.dimensions, pair.instruction)
    prompt = max(len(model.tokenizer(text)["input_ids"]) for text in prompts)
    rationale = max((len(model.tokenizer(t)["input_ids"]) for t in pair.rationales.values()), default=0)
    return prompt + 2 * image_tokens + rationale + TEMPLATE_TOKEN_SLACK


def drop_overlong(
    model: Any, pairs: Sequence[PreferencePair], max_seq_len: int, max_pixels: int
) -> tuple[list[PreferencePair], list[str]]:
    """(pairs whose length bound fits ``max_seq_len``, ids of the dropped ones)."""
    kept, dropped = [], []
    for pair in pairs:
        (kept if sequence_length_bound(model, pair, max_pixels) <= max_seq_len else dropped).append(pair)
    return kept, [p.record_id for p in dropped]


def check_stage1_data(cfg: Any) -> None:
    """What a stage-1 run (a :class:`JRMTrainConfig`) can check in seconds before any cluster starts: the model
    directory exists, the pair file exists and parses, and alpha > 0 has rationales to learn from (inline columns, ``data.rationales``, or
    the annotation step that will write it). Errors name the key relative to the JRM config (``data.*``)."""
    from reward.jrm.data import PairDataError

    data = cfg.data
    for key in ("checkpoint", "backbone"):
        path = getattr(cfg.model, key)
        if path and not Path(path).is_dir():
            raise ConfigError(f"model.{key}: not a local directory: {path!r}")
    if not data.train_pairs or not Path(data.train_pairs).is_file():
        raise ConfigError(f"data.train_pairs: preference-pair file not found: {data.train_pairs!r}")
    if cfg.alpha == 0.0:
        return
    if data.rationales and cfg.annotate.enabled:
        return  # the annotation step writes (or completes) it before training
    if data.rationales and not Path(data.rationales).is_file():
        join_rationales([], data)  # the error naming data.rationales
    quick = replace(data, image_check="none", on_error="skip")
    try:
        train, _, _ = load_pair_split(quick, cfg.seed)
    except PairDataError as exc:
        raise ConfigError(f"data.train_pairs: {exc}") from None
    require_rationales(RationaleCoverage.of(join_rationales(train, data)), cfg.alpha, data.rationales)
