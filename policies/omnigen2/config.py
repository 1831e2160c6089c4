"""Structured config of the OmniGen2 editing policy; defaults follow the paper / public Flow-GRPO recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from editrl.config import ConfigError
from editrl.dtypes import DTYPES, check_dtype_name
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from policies.omnigen2.settings import OFFICIAL_NEGATIVE_PROMPT
from policies.omnigen2.tiny import build_tiny_pipeline
from policies.settings import SamplingSettings


@dataclass
class OmniGen2PolicyConfig:
    """How to build, adapt and sample the OmniGen2 policy.

    kind:                the policy family (a kind of ``policies.registry``; "omnigen2" builds this one).
    checkpoint:          local directory in the official layout (transformer/, vae/, mllm/, processor/,
                         scheduler/); required unless ``tiny`` is true.
    tiny:                with ``checkpoint`` null, build a tiny random-config pipeline (tests, toy world); a
                         missing checkpoint without it is an error naming ``checkpoint``, never a silent tiny model.
                         A given ``checkpoint`` wins (stages that fill it in keep ``tiny`` as it was).
    lora_checkpoint:     optional local LoRA directory (see ``policies.omnigen2.lora``) loaded after add_lora.
    tiny_seed:           seed of the tiny pipeline when ``checkpoint`` is None.
    cfg_range:           [start, end]: CFG applies at step i when start <= i/T <= end.
    height / width:      output size in pixels (multiples of 16).
    max_input_pixels / max_input_side_length: reference-image resize limits (OmniGen2's preprocessing).
    negative_prompt:     text of the CFG negative branches (default: the official inference script's).
    """

    kind: str = "omnigen2"
    checkpoint: str | None = None
    tiny: bool = False
    lora_checkpoint: str | None = None
    tiny_seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    use_lora: bool = True
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    num_inference_steps: int = 20
    noise_level: float = 0.9
    text_guidance_scale: float = 4.0
    image_guidance_scale: float = 2.0
    cfg_range: list[float] = field(default_factory=lambda: [0.0, 0.6])
    height: int = 512
    width: int = 512
    max_input_pixels: int = 1024 * 1024
    max_input_side_length: int = 1024
    max_sequence_length: int = 1024
    negative_prompt: str = OFFICIAL_NEGATIVE_PROMPT
    gradient_checkpointing: bool = False

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid key (``kind`` is checked against a registry by its user)."""
        if not self.kind:
            raise ConfigError("kind: must name a policy kind")
        if self.checkpoint is not None and not Path(self.checkpoint).is_dir():
            raise ConfigError(f"checkpoint: {self.checkpoint!r} is not a local directory")
        if self.lora_checkpoint is not None and not Path(self.lora_checkpoint).is_dir():
            raise ConfigError(f"lora_checkpoint: {self.lora_checkpoint!r} is not a local directory")
        if self.lora_checkpoint is not None and not self.use_lora:
            raise ConfigError("lora_checkpoint: given while use_lora is false")
        check_dtype_name(self.dtype)
        if self.lora_rank < 1:
            raise ConfigError(f"lora_rank: must be >= 1, got {self.lora_rank}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha: must be > 0, got {self.lora_alpha}")
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules: must name at least one module")
        if self.num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps: must be >= 1, got {self.num_inference_steps}")
        if self.noise_level < 0:
            raise ConfigError(f"noise_level: must be >= 0, got {self.noise_level}")
        if self.text_guidance_scale < 0 or self.image_guidance_scale < 0:
            raise ConfigError("text_guidance_scale / image_guidance_scale: must be >= 0")
        if len(self.cfg_range) != 2 or not 0.0 <= self.cfg_range[0] <= self.cfg_range[1] <= 1.0:
            raise ConfigError(f"cfg_range: must be [start, end] with 0 <= start <= end <= 1, got {list(self.cfg_range)}")
        for key in ("height", "width"):
            value = getattr(self, key)
            if value < 16 or value % 16:
                raise ConfigError(f"{key}: must be a positive multiple of 16, got {value}")
        if self.max_input_pixels < 256:
            raise ConfigError(f"max_input_pixels: must be >= 256, got {self.max_input_pixels}")
        if self.max_input_side_length < 16:
            raise ConfigError(f"max_input_side_length: must be >= 16, got {self.max_input_side_length}")
        if self.max_sequence_length < 8:
            raise ConfigError(f"max_sequence_length: must be >= 8, got {self.max_sequence_length}")
        if self.checkpoint is None and not self.tiny:
            raise ConfigError(
                "checkpoint: required (a local model directory); set tiny=true for a tiny random-config model"
            )

    def sampling_settings(self) -> SamplingSettings:
        """The sampling part of this config: the pipeline's defaults (the one carrier from config to sampling)."""
        return SamplingSettings(
            num_inference_steps=self.num_inference_steps,
            noise_level=self.noise_level,
            text_guidance_scale=self.text_guidance_scale,
            image_guidance_scale=self.image_guidance_scale,
            cfg_range=(float(self.cfg_range[0]), float(self.cfg_range[1])),
            height=self.height,
            width=self.width,
        )

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by ``dtype``."""
        return DTYPES[self.dtype]


def build_pipeline(cfg: OmniGen2PolicyConfig) -> OmniGen2EditPipeline:
    """Build the policy a config describes: load (or build tiny), move/cast, add or load LoRA, set the sampling
    defaults from ``cfg.sampling_settings()``. The builder of policy kind ``omnigen2`` (``policies.registry``)."""
    cfg.validate()
    settings = cfg.sampling_settings()
    if cfg.checkpoint is None:
        pipeline = build_tiny_pipeline(
            cfg.tiny_seed,
            sampling=settings,
            negative_prompt=cfg.negative_prompt,
            max_input_pixels=cfg.max_input_pixels,
            max_input_side_length=cfg.max_input_side_length,
            max_sequence_length=cfg.max_sequence_length,
        )
        pipeline.to(cfg.device, cfg.torch_dtype)
    else:
        pipeline = OmniGen2EditPipeline.from_pretrained(
            cfg.checkpoint,
            device=cfg.device,
            dtype=cfg.torch_dtype,
            sampling=settings,
            negative_prompt=cfg.negative_prompt,
            max_input_pixels=cfg.max_input_pixels,
            max_input_side_length=cfg.max_input_side_length,
            max_sequence_length=cfg.max_sequence_length,
        )
    if cfg.use_lora:
        pipeline.add_lora(rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules)
        if cfg.lora_checkpoint is not None:
            pipeline.load_lora(cfg.lora_checkpoint)
    if cfg.gradient_checkpointing:
        pipeline.transformer.enable_gradient_checkpointing()
    return pipeline
