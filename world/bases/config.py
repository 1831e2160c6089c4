"""The build config of the toy bases (:class:`BasesConfig`) and its presets ``configs/world_bases*.yaml``.

``python -m world.bases.build --size full`` reads ``configs/world_bases.yaml`` (what ``make world-bases``
ships), ``--size reduced`` reads ``configs/world_bases_reduced.yaml`` (a small override of it, for CI).
Every key that changes the weights is here, so the config recorded in the bases' metadata rebuilds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from editrl.config import ConfigError, load_config
from world.pretrain import PretrainConfig
from world.tasks import EDIT_TYPES, SPLIT_WIDTH

REPO_ROOT = Path(__file__).resolve().parents[2]
#: ``--size`` -> the preset it reads.
PRESETS: dict[str, Path] = {
    "full": REPO_ROOT / "configs" / "world_bases.yaml",
    "reduced": REPO_ROOT / "configs" / "world_bases_reduced.yaml",
}
#: First task index of the ``pretrain`` split that the bases' held-out losses use; training uses indices below it.
EVAL_TASK_START = 900_000


@dataclass
class VarietyPhaseConfig:
    """The backbone's second pretraining phase: the same model, on comparison-heavy examples whose questions are
    worded in several ways and often follow another task's instruction
    (:func:`world.bases.captions.comparison_examples`).

    Why a second phase: on one fixed wording the backbone learns to compare its two images (it says "nothing
    changed" exactly when they are equal), but only at that wording; the JRM asks its own question after the
    task's instruction. Varied wordings from the start keep it from learning the comparison at all within 20k
    steps; varied wordings after it has learned it make the comparison carry over (issue 13 notes).

    steps:             optimizer steps of the phase (0: no second phase).
    describe_fraction: share of tasks that also give one scene description (keeps describing from fading).
    context_fraction:  share of questions put after another task's edit instruction.
    """

    steps: int = 0
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    describe_fraction: float = 0.3
    context_fraction: float = 0.5

    def validate(self) -> None:
        if self.steps < 0 or self.warmup_steps < 0:
            raise ConfigError(f"variety.steps and variety.warmup_steps must be >= 0, got {self.steps}, {self.warmup_steps}")
        if self.learning_rate <= 0:
            raise ConfigError(f"variety.learning_rate must be > 0, got {self.learning_rate}")
        for key in ("describe_fraction", "context_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"variety.{key} must be in [0, 1], got {getattr(self, key)}")


@dataclass
class BackboneBaseConfig:
    """The tiny Qwen3-VL backbone and its vision-language pretraining (describe a scene; say what changed).

    n_tasks: tasks of the ``pretrain`` split whose source and target scenes the texts describe (their
             edit types and every oracle output are never read; instructions only by matching).
    no_change_fraction: share of what-changed examples that show one scene twice ("nothing changed").
    match_fraction: share of tasks that also give two edit-instruction matching examples (a positive and a
             negative, :func:`world.bases.captions.match_examples`); 0 = describe and what-changed only.
    variety:  the second phase (:class:`VarietyPhaseConfig`; ``variety.steps: 0`` skips it).
    image_side: every image is resized to this square side (a multiple of 32 = patch 16 x merge 2), i.e.
             ``(side / 32)^2`` vision tokens per image; the saved image processor keeps this budget.
    """

    n_tasks: int = 4000
    no_change_fraction: float = 0.1
    match_fraction: float = 0.0
    hidden_size: int = 64
    num_layers: int = 2
    vision_hidden_size: int = 64
    vision_depth: int = 2
    image_side: int = 128
    # the tokenizer keeps the world's words whole (world.tasks.INSTRUCTION_WORDS), as the policy base's may
    world_vocabulary: bool = False
    steps: int = 4000
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    seed: int = 0
    variety: VarietyPhaseConfig = field(default_factory=VarietyPhaseConfig)

    def validate(self) -> None:
        self.variety.validate()
        for key in ("n_tasks", "hidden_size", "num_layers", "vision_hidden_size", "vision_depth", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("hidden_size", "vision_hidden_size"):
            if getattr(self, key) % 32:
                raise ConfigError(f"{key} must be a multiple of 32 (4 heads, M-RoPE), got {getattr(self, key)}")
        if self.image_side < 32 or self.image_side % 32:
            raise ConfigError(f"image_side must be a multiple of 32 (patch 16 x merge 2), got {self.image_side}")
        if self.steps < 0 or self.warmup_steps < 0:
            raise ConfigError(f"steps and warmup_steps must be >= 0, got {self.steps}, {self.warmup_steps}")
        for key in ("no_change_fraction", "match_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ConfigError("learning_rate and max_grad_norm must be > 0")
        if self.n_tasks > EVAL_TASK_START:
            raise ConfigError(f"n_tasks must be <= {EVAL_TASK_START} (later pretrain tasks are held out), got {self.n_tasks}")


@dataclass
class BasesConfig:
    """What ``python -m world.bases.build`` builds: the policy base (``policy``, :class:`PretrainConfig`, the
    pretraining of :mod:`world.pretrain`) and the backbone base (``backbone``), both on ``image_size`` px tasks.

    eval_tasks:   held-out tasks of the ``pretrain`` split (from index 900000) scoring each base's loss before and
                  after training (recorded in the metadata, never trained on).
    threads:      torch threads of the build (the weights are reproducible for one thread count on one machine).
    max_total_mb: the build fails if the two folders together exceed this many MB (10^6 bytes).
    The defaults below are the dataclass's; the CLI starts from a preset (``configs/world_bases.yaml`` for
    ``--size full``), whose values are what ``make world-bases`` builds.
    """

    image_size: int = 32
    edit_types: list[str] = field(default_factory=lambda: list(EDIT_TYPES))
    eval_tasks: int = 64
    threads: int = 1
    max_total_mb: float = 25.0
    policy: PretrainConfig = field(default_factory=PretrainConfig)
    backbone: BackboneBaseConfig = field(default_factory=BackboneBaseConfig)

    def validate(self) -> None:
        if self.image_size < 16 or self.image_size % 16:
            raise ConfigError(f"image_size must be a multiple of 16 (the policy's output sizes), got {self.image_size}")
        unknown = [t for t in self.edit_types if t not in EDIT_TYPES]
        if unknown or not self.edit_types:
            raise ConfigError(f"edit_types must be a non-empty subset of {list(EDIT_TYPES)}, got {list(self.edit_types)}")
        if not 1 <= self.eval_tasks <= SPLIT_WIDTH - EVAL_TASK_START:
            raise ConfigError(f"eval_tasks must be in [1, {SPLIT_WIDTH - EVAL_TASK_START}], got {self.eval_tasks}")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.max_total_mb <= 0:
            raise ConfigError(f"max_total_mb must be > 0, got {self.max_total_mb}")
        if self.policy.n_tasks > EVAL_TASK_START:
            raise ConfigError(f"policy.n_tasks must be <= {EVAL_TASK_START} (later pretrain tasks are held out)")


def load_bases_config(size: str = "full", overrides: Sequence[str] = (), path: str | Path | None = None) -> BasesConfig:
    """The build config: the preset of ``size`` (or the YAML at ``path``), then ``key=value`` overrides."""
    if path is None:
        if size not in PRESETS:
            raise ConfigError(f"size must be one of {sorted(PRESETS)}, got {size!r}")
        path = PRESETS[size]
    return load_config(BasesConfig, path, list(overrides))
