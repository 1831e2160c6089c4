"""Structured configs of the policy benchmarks (CLI and RL eval hooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from editrl.config import ConfigError
from reward.judges.config import JudgeConfig
from reward.judges.images import IMAGE_ENCODINGS, JPEG_Q75, PNG, ImageEncoding
from reward.judges.parsing import PARSING_MODES

#: The encoding each benchmark's official scorer sends its judge (``image_encoding: auto``).
OFFICIAL_IMAGE_ENCODING: dict[str, ImageEncoding] = {"gedit": JPEG_Q75, "imgedit": PNG}


def resolve_image_encoding(bench: str, setting: str) -> ImageEncoding:
    """``auto`` = the benchmark's official encoding (GEdit: JPEG q75, ImgEdit: PNG), else ``png`` / ``jpeg_q75``."""
    return OFFICIAL_IMAGE_ENCODING[bench] if setting == "auto" else IMAGE_ENCODINGS[setting]


def _validate_judging(parsing: str, image_encoding: str) -> None:
    if parsing not in PARSING_MODES:
        raise ConfigError(f"parsing must be one of {list(PARSING_MODES)}, got {parsing!r}")
    if image_encoding != "auto" and image_encoding not in IMAGE_ENCODINGS:
        raise ConfigError(f"image_encoding must be 'auto' or one of {sorted(IMAGE_ENCODINGS)}, got {image_encoding!r}")


@dataclass
class EditSettings:
    """Sampling settings handed to ``policy.edit`` for benchmarking; null = the policy's own default."""

    num_inference_steps: int | None = None
    text_guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    cfg_range: list[float] | None = None
    height: int | None = None
    width: int | None = None

    def validate(self) -> None:
        if self.cfg_range is not None and (len(self.cfg_range) != 2 or not 0 <= self.cfg_range[0] <= self.cfg_range[1] <= 1):
            raise ConfigError(f"cfg_range must be [lo, hi] with 0 <= lo <= hi <= 1, got {self.cfg_range}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")

    def as_kwargs(self) -> dict[str, Any]:
        """Only the settings that are set: overrides of the policy's ``sampling`` defaults (``SamplingSettings.override``)."""
        out: dict[str, Any] = {
            "num_inference_steps": self.num_inference_steps,
            "text_guidance_scale": self.text_guidance_scale,
            "image_guidance_scale": self.image_guidance_scale,
            "cfg_range": tuple(self.cfg_range) if self.cfg_range is not None else None,
            "height": self.height,
            "width": self.width,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class PolicyBenchConfig:
    """One policy benchmark run.

    bench:               ``gedit`` (English subset by default) or ``imgedit`` (basic).
    data_dir:            the downloaded release (see the loaders for the expected layout).
    imgedit_prompts:     ``auto`` = the release's ``prompts.json`` if present, else this project's rubrics;
                         ``builtin``; or a path to a prompts.json.
    max_items_per_group: evaluate only the first N items of each group (smoke runs); null = all.
    seed:                the seed of every edit (the public scripts use one fixed seed).
    parsing:             ``strict`` (this project's checks) or ``official`` (the public scorer's lenient
                         reading; answers still unparsed after one retry are counted, never guessed).
    image_encoding:      ``auto`` (the official scorer's: GEdit JPEG q75, ImgEdit PNG), ``png`` or ``jpeg_q75``.
    """

    bench: Literal["gedit", "imgedit"] = "gedit"
    data_dir: str = ""
    language: str = "en"
    imgedit_prompts: str = "auto"
    max_items_per_group: int | None = None
    seed: int = 0
    batch_size: int = 1
    parsing: Literal["strict", "official"] = "strict"
    image_encoding: str = "auto"
    reuse_edits: bool = True
    out_dir: str = "runs/eval"
    edit: EditSettings = field(default_factory=EditSettings)
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def validate(self) -> None:
        if not self.data_dir:
            raise ConfigError("data_dir must be set")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_items_per_group is not None and self.max_items_per_group < 1:
            raise ConfigError(f"max_items_per_group must be >= 1 or null, got {self.max_items_per_group}")
        _validate_judging(self.parsing, self.image_encoding)


@dataclass
class PolicyEvalHookConfig:
    """An RL eval hook running a benchmark on a fixed subset every ``every_n_steps`` steps.

    items_per_group: size of the fixed subset per group, drawn once with ``subset_seed``.
    num_images:      edited samples returned for logging.
    parsing / image_encoding: as in :class:`PolicyBenchConfig`.
    """

    bench: Literal["gedit", "imgedit"] = "gedit"
    data_dir: str = ""
    language: str = "en"
    imgedit_prompts: str = "auto"
    every_n_steps: int = 50
    items_per_group: int = 2
    subset_seed: int = 0
    seed: int = 0
    batch_size: int = 1
    num_images: int = 4
    parsing: Literal["strict", "official"] = "strict"
    image_encoding: str = "auto"
    edit: EditSettings = field(default_factory=EditSettings)
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def validate(self) -> None:
        if not self.data_dir:
            raise ConfigError("data_dir must be set")
        if self.every_n_steps < 1 or self.items_per_group < 1 or self.batch_size < 1 or self.num_images < 0:
            raise ConfigError("every_n_steps, items_per_group and batch_size must be >= 1, num_images >= 0")
        _validate_judging(self.parsing, self.image_encoding)
