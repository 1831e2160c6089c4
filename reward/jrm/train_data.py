"""The pairs a JRM training run uses: train / held-out split, rationales joined in, over-long pairs dropped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from editrl.config import ConfigError
from reward.jrm.annotate import attach_rationales
from reward.jrm.data import load_preference_pairs, split_pairs
from reward.jrm.pairs import PreferencePair
from reward.jrm.train_config import JRMDataConfig


def load_training_data(cfg: JRMDataConfig, seed: int) -> tuple[list[PreferencePair], list[PreferencePair], list[str]]:
    """(train pairs, held-out pairs, report lines), with rationales joined in when configured."""
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
    if cfg.rationales:
        train, missing = attach_rationales(train, cfg.rationales)
        lines.append(f"rationales joined from {cfg.rationales}; {missing} side(s) without one")
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
