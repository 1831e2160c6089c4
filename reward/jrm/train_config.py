"""Structured config of stage 1, training the JRM (DESIGN.md section 1), with the paper's numbers as defaults.

Batch arithmetic: ``global_batch_size = per_device_batch_size * num_workers * grad_accumulation_steps``; the
accumulation is derived from the other three (validation fails if it does not divide). The paper: 8 GPUs x 1
pair x 8 accumulation steps = 64 pairs per optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from editrl.config import ConfigError
from reward.jrm.teachers.config import TeacherConfig


@dataclass
class JRMModelInit:
    """Where the JRM starts: a local JRM checkpoint, a local Qwen3-VL backbone directory, or a tiny random model.

    checkpoint: a directory written by ``JRM.save_pretrained`` (continue from a JRM).
    backbone:   a local Qwen3-VL-(8B-)Instruct directory (fresh reward token and head).
    tiny:       neither: a tiny random JRM built from the ``tiny_*`` keys under ``tiny_seed`` (CPU tests and demos).

    tiny_hidden_size / tiny_num_layers:               the language tower.
    tiny_vision_hidden_size / tiny_vision_depth:      the vision tower.
    tiny_head_mlp_size:                               the reward head's MLP width.
    tiny_image_side: every image is resized to this square side (a multiple of 32 = patch 16 x merge 2), i.e.
                     ``(side / 32)^2`` vision tokens per image; null keeps the tiny default (<= 64 px, <= 4 tokens).
    tiny_prompt:     the tiny JRM's evaluation prompt unless ``jrm.prompt`` is set ("compact" or "paper", see
                     ``reward.jrm.prompts``).

    backbone_image_side:    with ``backbone``: resize every image to this square side (a multiple of 32), e.g. the
                            side a small pretrained base saw; null keeps the paper's pixel budget.
    backbone_head_mlp_size: with ``backbone``: the fresh reward head's MLP width; null keeps the default (1024).
    backbone_reward_token_init: with ``backbone``: where the new ``<|reward|>`` embedding starts ("mean" or
                            "answer_start", see ``reward.jrm.model.JRMConfig``); null keeps "mean".
    """

    checkpoint: str | None = None
    backbone: str | None = None
    tiny: bool = False
    tiny_seed: int = 0
    tiny_hidden_size: int = 32
    tiny_num_layers: int = 2
    tiny_vision_hidden_size: int = 32
    tiny_vision_depth: int = 2
    tiny_head_mlp_size: int = 64
    tiny_image_side: int | None = None
    tiny_prompt: str = "compact"
    backbone_image_side: int | None = None
    backbone_head_mlp_size: int | None = None
    backbone_reward_token_init: str | None = None

    def validate(self) -> None:
        if sum([self.checkpoint is not None, self.backbone is not None, self.tiny]) > 1:
            raise ConfigError("set only one of checkpoint, backbone or tiny=true")
        for key in ("backbone_image_side", "backbone_head_mlp_size", "backbone_reward_token_init"):
            if getattr(self, key) is not None and self.backbone is None:
                raise ConfigError(f"model.{key} applies to a start from model.backbone, which is not set")
        side = self.backbone_image_side
        if side is not None and (side < 32 or side % 32):
            raise ConfigError(f"model.backbone_image_side must be a multiple of 32 (patch 16 x merge 2) or null, got {side}")
        from reward.jrm.prompts import PROMPT_STYLES, REWARD_TOKEN_INITS

        if self.backbone_reward_token_init not in (None, *REWARD_TOKEN_INITS):
            raise ConfigError(
                f"model.backbone_reward_token_init must be one of {list(REWARD_TOKEN_INITS)} or null, "
                f"got {self.backbone_reward_token_init!r}"
            )
        if self.backbone_head_mlp_size is not None and self.backbone_head_mlp_size < 1:
            raise ConfigError(f"model.backbone_head_mlp_size must be >= 1, got {self.backbone_head_mlp_size}")
        for key in ("tiny_hidden_size", "tiny_vision_hidden_size"):
            if getattr(self, key) < 32 or getattr(self, key) % 32:
                raise ConfigError(f"model.{key} must be a positive multiple of 32 (4 heads, M-RoPE), got {getattr(self, key)}")
        for key in ("tiny_num_layers", "tiny_vision_depth", "tiny_head_mlp_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.tiny_prompt not in PROMPT_STYLES:
            raise ConfigError(f"model.tiny_prompt must be one of {list(PROMPT_STYLES)}, got {self.tiny_prompt!r}")
        side = self.tiny_image_side
        if side is not None and (side < 32 or side % 32):
            raise ConfigError(f"model.tiny_image_side must be a multiple of 32 (patch 16 x merge 2) or null, got {side}")

    def require_choice(self) -> None:
        """Training needs a starting point (the defaults leave it open so configs can compose this one)."""
        if not (self.checkpoint or self.backbone or self.tiny):
            raise ConfigError("model: set one of model.checkpoint, model.backbone or model.tiny=true")


@dataclass
class JRMDataConfig:
    """Preference pairs (EditReward-Data layout, see :mod:`reward.jrm.data`) and their rationales.

    held_out_pairs: a separate held-out file; if null, ``held_out_fraction`` of ``train_pairs`` is held out.
    rationales:     an annotation JSONL of :mod:`reward.jrm.annotate`, joined onto the pairs by record id
                    (pairs may also carry ``rationale1`` / ``rationale2`` columns themselves).
    """

    train_pairs: str = ""
    image_root: str | None = None
    held_out_pairs: str | None = None
    held_out_image_root: str | None = None
    held_out_fraction: float = 0.02
    rationales: str | None = None
    on_error: Literal["raise", "skip"] = "skip"
    image_check: Literal["decode", "exists", "none"] = "decode"  # decode: every image decoded once at load time
    allow_outside_paths: bool = False  # accept image paths that leave image_root (../, absolute paths)
    decode_workers: int = 4  # threads that decode the images at load time
    max_pixels: int = 200_704  # image budget per image (Qwen-VL's 256 * 28 * 28)

    def validate(self) -> None:
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ConfigError(f"held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if self.max_pixels < 28 * 28:
            raise ConfigError(f"max_pixels must be >= 784, got {self.max_pixels}")


@dataclass
class JRMAnnotateConfig:
    """Stage 1's own annotation step (:mod:`reward.jrm.annotate`): a teacher VLM writes ``data.rationales``.

    enabled:        before training, annotate the training pairs into ``data.rationales`` (which must be set).
                    The job is resumable: finished edits are skipped, so a complete file costs one read; a
                    torn last line is redone. Rejected edits (invalid answers after ``max_retries``) are counted
                    and logged, and their pairs train without a rationale (counted in the load report).
    teacher:        the teacher (``reward.jrm.teachers.config.TeacherConfig``): ``kind: openai`` (an
                    OpenAI-compatible endpoint, ``base_url`` + ``model``, key from ``api_key_env``) or
                    ``kind: transformers`` (a local VLM directory, ``model_dir``). Required when enabled.
    max_retries / batch_size / max_pixels / max_regions / retry_rejected / template: as the annotation job's.
    """

    enabled: bool = False
    teacher: TeacherConfig | None = None
    max_retries: int = 2
    batch_size: int = 8
    max_pixels: int | None = 200_704
    max_regions: int | None = 16
    retry_rejected: bool = False
    template: str = "project"

    def validate(self) -> None:
        if self.enabled and self.teacher is None:
            raise ConfigError("teacher: required when annotate.enabled (teacher.kind: openai | transformers)")
        if self.max_retries < 0 or self.batch_size < 1:
            raise ConfigError("max_retries must be >= 0 and batch_size >= 1")
        from reward.jrm.teachers.prompts import TEACHER_TEMPLATES

        if self.template not in TEACHER_TEMPLATES:
            raise ConfigError(f"template: must be one of {list(TEACHER_TEMPLATES)}, got {self.template!r}")


@dataclass
class JRMTrainConfig:
    """Stage-1 JRM training on Ray Train (one worker per GPU; CPU: one worker with gloo).

    rank_loss:    the uncertainty-aware ranking objective (``reward.jrm.loss``, DESIGN.md 2.5), both exact by
                  quadrature. ``hpsv3`` (default): ``mean E[-log sigmoid(z)]``, what HPSv3's and EditReward's
                  released trainers optimise (``loss_type == "uncertainty"``), so JRM is trained like the released
                  reward models it is compared with. ``paper``: the JRM paper's Eq. 4-5, ``-mean log E[sigmoid(z)]``.
                  The two differ by up to ~0.7 nats (1.335 vs 0.693 at equal means, sigma = 2 per side) and
                  ``hpsv3``'s gradient always shrinks sigma. Recorded in the checkpoint's ``jrm_config.json``.
    lm_reduction: how the rationale token losses become ``L_LM``. ``token_mean`` (default): the mean over every
                  rationale token of the micro-batch, the standard causal-LM loss; it keeps ``L_LM`` on the
                  per-token scale of ``L_rank`` (both ~0.1-2 nats), which is the scale at which alpha = 0.7
                  balances the two terms, and every existing checkpoint was trained with it. ``sequence_sum``:
                  Eq. 6 as printed, ``-sum_t log p(y_t)`` per rationale, averaged over rationales; with ~300-token
                  rationales it multiplies ``L_LM`` by ~300, i.e. alpha = 0.7 then weighs the ranking term about
                  1/700 of the LM term (an effective alpha of ~0.999). Recorded in the checkpoint as well.
    """

    model: JRMModelInit = field(default_factory=JRMModelInit)
    data: JRMDataConfig = field(default_factory=JRMDataConfig)
    annotate: JRMAnnotateConfig = field(default_factory=JRMAnnotateConfig)  # writes data.rationales first
    output_dir: str = "runs/jrm"
    # true: output_dir is on storage every node mounts (NFS, Lustre, ...), given as an absolute path. Required for
    # a multi-node stage 1 -> stage 2 run (rl/shared_storage.py checks it from every node before stage 1): a
    # relative output_dir resolves inside each node's copy of the job's working directory
    shared_output_dir: bool = False
    alpha: float = 0.7  # L = (1 - alpha) * L_rank + alpha * L_LM; 0 = the discriminative baseline
    # optimizer steps at the start on L_rank alone (alpha 0), then `alpha`; 0 (default) = the paper's joint loss from
    # step 1. Tiny JRMs from the toy backbone base: joint from step 1 the rationale loss erases the image comparison
    # the base learned (IF-only pairs at chance); ranking first keeps it (issue 13 notes)
    rank_warmup_steps: int = 0
    # JRM evaluation prompt (reward.jrm.prompts): "paper" (appendix C, one row per dimension) or "compact" (one
    # joint row, tiny models). null: "paper" for model.backbone, model.tiny_prompt for a tiny model, the
    # checkpoint's own for model.checkpoint; a checkpoint trained with another prompt than a set one refuses
    prompt: str | None = None
    rank_loss: Literal["paper", "hpsv3"] = "hpsv3"  # see the class docstring
    lm_reduction: Literal["token_mean", "sequence_sum"] = "token_mean"  # see the class docstring
    # optimisation (paper): AdamW (0.9, 0.95), wd 0.1, lr 2e-6 cosine with 5% warmup, 10 epochs, batch 64
    learning_rate: float = 2e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0
    epochs: int = 10
    max_steps: int | None = None  # stop early after this many optimizer steps (tests, smoke runs)
    global_batch_size: int = 64
    per_device_batch_size: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0
    # precision and memory
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on GPU; CPU always runs fp32
    gradient_checkpointing: bool = True  # non-reentrant
    max_seq_len: int = 8192
    # Ray Train: "ddp" replicates the model (explicit gradient all-reduce after accumulation); "fsdp" shards
    # parameters, gradients and optimizer state with FSDP2 (needed for the 8B backbone)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    num_workers: int = 8
    use_gpu: bool = True
    resources_per_worker_cpu: float = 1.0
    # evaluation, checkpointing, logging
    eval_every_steps: int = 50
    eval_batch_size: int = 8
    checkpoint_every_steps: int = 200
    keep_checkpoints: int = 2
    resume: str = "auto"  # "auto": latest checkpoint in output_dir; "never"; or a checkpoint directory
    wandb_project: str = "editrl-jrm"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    wandb_run_name: str | None = None
    progress_bar: bool = True

    @property
    def grad_accumulation_steps(self) -> int:
        """Micro-batches per worker per optimizer step."""
        return self.global_batch_size // (self.per_device_batch_size * self.num_workers)

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.rank_warmup_steps < 0:
            raise ConfigError(f"rank_warmup_steps must be >= 0, got {self.rank_warmup_steps}")
        if self.shared_output_dir and not Path(self.output_dir).is_absolute():
            raise ConfigError(
                f"output_dir: must be an absolute path on shared storage with shared_output_dir=true, got "
                f"{self.output_dir!r} (a relative path resolves inside each node's copy of the working directory)"
            )
        if self.annotate.enabled and not self.data.rationales:
            raise ConfigError("data.rationales: annotate.enabled needs the path of the rationale file it writes")
        from reward.jrm.loss import LM_REDUCTIONS, RANK_LOSSES
        from reward.jrm.prompts import PROMPT_STYLES

        if self.prompt is not None and self.prompt not in PROMPT_STYLES:
            raise ConfigError(f"prompt must be one of {list(PROMPT_STYLES)} or null, got {self.prompt!r}")

        if self.rank_loss not in RANK_LOSSES:
            raise ConfigError(f"rank_loss must be one of {RANK_LOSSES}, got {self.rank_loss!r}")
        if self.lm_reduction not in LM_REDUCTIONS:
            raise ConfigError(f"lm_reduction must be one of {LM_REDUCTIONS}, got {self.lm_reduction!r}")
        for key in ("global_batch_size", "per_device_batch_size", "num_workers", "epochs", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.global_batch_size % (self.per_device_batch_size * self.num_workers):
            raise ConfigError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of per_device_batch_size "
                f"({self.per_device_batch_size}) x num_workers ({self.num_workers})"
            )
        if self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ConfigError("learning_rate and max_grad_norm must be positive")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1]")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        for key in ("eval_every_steps", "checkpoint_every_steps", "keep_checkpoints", "max_seq_len"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
