"""Build a reward model from a structured config; other packages register more kinds on an explicit registry.

Built-in kinds: ``jrm`` (the joint model), ``jrm_alpha0`` (the same architecture trained with alpha = 0, the
paper's discriminative baseline; loading is identical, the kind records which one is meant and checks the
checkpoint's alpha), ``editreward``, and ``noise`` (:class:`reward.noise.NoiseReward`, the null-reward control:
scores that ignore quality, to measure what RL's updates alone do). ``checkpoint: null`` with ``tiny: true`` builds a tiny random model (tests,
toy world); ``checkpoint: null`` alone is an error naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from editrl.config import ConfigError
from editrl.dtypes import DTYPES, check_dtype_name
from editrl.registry import Registry
from reward.base import DEFAULT_DIMENSIONS, RewardModel
from reward.editreward import EditRewardModel
from reward.jrm.model import COMBINE_MODES, JRM, check_combine, tiny_jrm_config
from reward.jrm.prompts import COMPACT, PROMPT_STYLES
from reward.noise import NoiseReward


@dataclass
class RewardModelConfig:
    """Which reward model to build and where it runs.

    kind:           a registered kind ("jrm", "jrm_alpha0", "editreward", "noise", or one registered later).
    checkpoint:     local directory; null only with ``tiny: true`` (or when stage 1 fills it in, ``train_jrm``).
    tiny:           with ``checkpoint`` null, build a tiny random model (tests, toy world); a given checkpoint wins.
    base_model:     EditReward only: local Qwen-VL directory with config/tokenizer/processor, if the
                    checkpoint directory lacks them.
    device, dtype:  where and in which precision the backbone runs ("float32", "bfloat16", "float16").
    batch_size:     edits per forward.
    combine:        how per-dimension means become the scalar reward ("mean", "sum" or a dimension name;
                    JRM only, EditReward always uses its published mean).
    seed:           seed of a tiny random model.
    prompt:         JRM only: the evaluation prompt to score with ("paper" or "compact"); null = the
                    checkpoint's own (a tiny random JRM: "compact"). A checkpoint trained with another prompt
                    refuses to load.
    """

    kind: str = "jrm"
    checkpoint: str | None = None
    tiny: bool = False
    base_model: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8
    combine: str = "mean"
    seed: int = 0
    prompt: str | None = None

    def validate(self) -> None:
        if not self.kind:
            raise ConfigError("kind: must name a reward model kind")
        check_dtype_name(self.dtype)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if not self.combine:
            raise ConfigError(f"combine: must be one of {COMBINE_MODES} or a dimension name")
        if self.kind in JRM_KINDS and self.combine not in (*COMBINE_MODES, *DEFAULT_DIMENSIONS):
            raise ConfigError(
                f"combine: must be one of {list(COMBINE_MODES)} or a dimension name {list(DEFAULT_DIMENSIONS)}, "
                f"got {self.combine!r}"
            )
        if self.prompt is not None and self.prompt not in PROMPT_STYLES:
            raise ConfigError(f"prompt: must be one of {list(PROMPT_STYLES)} or null, got {self.prompt!r}")


#: The kinds that load a JRM checkpoint (the joint model and its alpha = 0 baseline).
JRM_KINDS = ("jrm", "jrm_alpha0")
#: The null-reward control (:mod:`reward.noise`).
NOISE_KIND = "noise"
#: Built-in kinds that load nothing (``checkpoint`` is not read).
CHECKPOINT_FREE_KINDS = (NOISE_KIND,)

RewardFactory = Callable[[RewardModelConfig], RewardModel]


class RewardRegistry(Registry[RewardFactory]):
    """Reward kinds -> factories; :meth:`build` makes the model a config names."""

    def __init__(self, factories: dict[str, RewardFactory] | None = None) -> None:
        super().__init__("reward model", factories)

    def require(self, name: str, key: str = "reward.kind") -> None:
        super().require(name, key)

    def build(self, cfg: RewardModelConfig) -> RewardModel:
        return self.get(cfg.kind)(cfg)


def require_checkpoint_or_tiny(cfg: RewardModelConfig) -> None:
    """A built-in reward model needs ``checkpoint`` unless the config asks for a tiny one (``tiny: true``)."""
    if cfg.checkpoint is None and not cfg.tiny:
        raise ConfigError(
            f"checkpoint: reward kind {cfg.kind!r} needs a local checkpoint directory; set tiny=true for a tiny "
            "random model"
        )


def _build_jrm(cfg: RewardModelConfig, expect_alpha_zero: bool) -> JRM:
    dtype = DTYPES[cfg.dtype]
    require_checkpoint_or_tiny(cfg)
    if cfg.checkpoint is None:
        model = JRM.build_tiny(seed=cfg.seed, config=tiny_jrm_config(cfg.prompt or COMPACT))
        if expect_alpha_zero:
            model.config.alpha = 0.0
        model.backbone.to(device=cfg.device, dtype=dtype)
        model.head.to(device=cfg.device)
    else:
        model = JRM.from_pretrained(cfg.checkpoint, device=cfg.device, dtype=dtype, prompt=cfg.prompt)
        if expect_alpha_zero and model.config.alpha != 0.0:
            raise ConfigError(f"kind: 'jrm_alpha0' but {cfg.checkpoint} was trained with alpha={model.config.alpha}")
    try:
        check_combine(cfg.combine, model.dimensions)
    except ValueError as exc:
        raise ConfigError(f"combine: {exc}") from None
    model.config.combine = cfg.combine
    model.config.batch_size = cfg.batch_size
    return model.eval()


def _build_editreward(cfg: RewardModelConfig) -> EditRewardModel:
    dtype = DTYPES[cfg.dtype]
    require_checkpoint_or_tiny(cfg)
    if cfg.checkpoint is None:
        model = EditRewardModel.build_tiny(seed=cfg.seed)
        model.backbone.to(device=cfg.device, dtype=dtype)
        model.rm_heads.to(device=cfg.device)
        model.batch_size = cfg.batch_size
    else:
        model = EditRewardModel.from_pretrained(
            cfg.checkpoint, cfg.base_model, device=cfg.device, dtype=dtype, batch_size=cfg.batch_size
        )
    return model.eval()


def _build_noise(cfg: RewardModelConfig) -> NoiseReward:
    try:
        return NoiseReward(seed=cfg.seed, combine=cfg.combine)
    except ValueError as exc:
        raise ConfigError(f"combine: {exc}") from None


def default_registry() -> RewardRegistry:
    """A fresh registry with the built-in kinds (each call returns a new, independent object)."""
    return RewardRegistry(
        {
            "jrm": lambda cfg: _build_jrm(cfg, expect_alpha_zero=False),
            "jrm_alpha0": lambda cfg: _build_jrm(cfg, expect_alpha_zero=True),
            "editreward": _build_editreward,
            NOISE_KIND: _build_noise,
        }
    )


def build_reward_model(cfg: RewardModelConfig, registry: RewardRegistry | None = None) -> RewardModel:
    """The reward model ``cfg`` names, from ``registry`` (default: the built-in kinds)."""
    return (registry or default_registry()).build(cfg)
