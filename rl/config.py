"""The experiment config: one structured OmegaConf tree, validated once before any actor starts.

It composes the policy (:class:`PolicyConfig`: shared keys + per-family sections), the reward model
(:class:`RewardModelConfig`), stage 1 JRM training (:class:`JRMTrainConfig`), and this package's GRPO, Ray,
data, checkpoint, logging and eval settings. Load with :func:`load_experiment_config` (``editrl.config.load_config`` underneath), so a preset is a
small ``base:`` override and a wrong key or value is reported by its full dotted name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from editrl.config import ConfigError, load_config
from policies.policy_config import PolicyConfig
from policies.registry import default_policy_registry
from reward.jrm.train_config import JRMTrainConfig
from reward.registry import CHECKPOINT_FREE_KINDS, JRM_KINDS, RewardModelConfig, default_registry
from rl.benchmarks.config import PolicyEvalHookConfig


@dataclass
class GRPOConfig:
    """Flow-GRPO hyper-parameters (DESIGN.md section 2.3); defaults are the paper's / public recipe's.

    Update semantics (as in the public OmniGen2-RL / flow_grpo trainers): each round's kept samples are
    shuffled and split into ``num_updates_per_step`` disjoint minibatches, one optimizer step each, so every
    sample is used once per pass; ``num_epochs_per_step`` repeats that pass (same split), giving
    ``num_updates_per_step * num_epochs_per_step`` optimizer steps per round. Each step's loss is the mean over
    its minibatch's (sample, trained step) elements across all learner workers.
    (Before issue 17, ``num_updates_per_step`` meant full passes over the whole round; that is now
    ``num_epochs_per_step`` with ``num_updates_per_step = 1``.)

    Memory: the learner back-propagates ``learner_micro_batch`` (sample, trained step) rows at a time and
    accumulates the gradients (0 = one trained step of every sample of a chunk per graph); the reference
    mean of a micro-batch is computed just before it. The summed gradient equals the one-graph gradient.
    """

    num_steps: int = 300  # optimisation rounds (sample -> score -> update -> sync)
    instructions_per_step: int = 24  # groups per round (global batch = this * group_size)
    group_size: int = 12
    samples_per_chunk: int = 12  # SDE samples per sampler call (a multiple of group_size or a divisor of it)
    std_over_batch: bool = False
    advantage_clip: float = 5.0
    eps_low: float = 1e-4
    eps_high: float = 5e-4
    beta: float = 0.04
    exact_kl: bool = False  # False: mean((mu-mu_ref)^2)/(2 sigma^2) as public code; True: the Gaussian KL
    timestep_fraction: float = 0.6  # of the SDE steps (of the window when sde_window_size > 0)
    # Flow-GRPO-Fast (flow_grpo's sample.sde_window_size / sde_window_range; MixGRPO): > 0 = only a window of this
    # many consecutive steps takes the SDE, the rest the ODE, and only the window's steps are trained. Its start
    # is drawn each round (from seed and round) so the window lies in sde_window_range ([start, end) steps;
    # null = all T steps). 0 = the SDE on every step (Flow-GRPO).
    sde_window_size: int = 0
    sde_window_range: list[int] | None = None
    learning_rate: float = 4e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    num_updates_per_step: int = 2  # disjoint minibatches per round, one optimizer step each
    num_epochs_per_step: int = 1  # full passes over the round's samples (each pass: num_updates_per_step steps)
    learner_micro_batch: int = 0  # (sample, step) rows per backward; 0 = per trained step (a chunk's samples)
    max_weight_lag: int = 0  # 0: strictly on-policy; 1: sampling of round k+1 overlaps learning on round k
    seed: int = 0
    # failure budget: the run stops (naming the reward model and its last error) when a round's reward fails on
    # more than this fraction of its samples, or after more than this many consecutive rounds without an update
    max_failed_reward_fraction: float = 0.5
    max_rounds_without_update: int = 5

    def validate(self) -> None:
        for key in ("num_steps", "instructions_per_step", "group_size", "samples_per_chunk", "num_updates_per_step",
                    "num_epochs_per_step"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.learner_micro_batch < 0:
            raise ConfigError(f"learner_micro_batch must be >= 0 (0 = per trained step), got {self.learner_micro_batch}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (advantages need a spread), got {self.group_size}")
        if self.samples_per_chunk % self.group_size and self.group_size % self.samples_per_chunk:
            raise ConfigError(
                f"samples_per_chunk ({self.samples_per_chunk}) must be a multiple or divisor of group_size "
                f"({self.group_size})"
            )
        if not 0.0 < self.timestep_fraction <= 1.0:
            raise ConfigError(f"timestep_fraction must be in (0, 1], got {self.timestep_fraction}")
        if self.sde_window_size < 0:
            raise ConfigError(f"sde_window_size must be >= 0 (0 = the SDE on every step), got {self.sde_window_size}")
        if self.sde_window_range is not None:
            if self.sde_window_size == 0:
                raise ConfigError("sde_window_range is set but sde_window_size is 0 (no window); set both or neither")
            if len(self.sde_window_range) != 2:
                raise ConfigError(f"sde_window_range must be [start, end], got {self.sde_window_range}")
        for key in ("eps_low", "eps_high", "learning_rate", "max_grad_norm", "advantage_clip"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if self.max_weight_lag not in (0, 1):
            raise ConfigError(f"max_weight_lag must be 0 or 1, got {self.max_weight_lag}")
        if not 0.0 <= self.max_failed_reward_fraction <= 1.0:
            raise ConfigError(f"max_failed_reward_fraction must be in [0, 1], got {self.max_failed_reward_fraction}")
        if self.max_rounds_without_update < 0:
            raise ConfigError(f"max_rounds_without_update must be >= 0, got {self.max_rounds_without_update}")


@dataclass
class RayConfig:
    """Where the actors run.

    ``placement: split`` (the default): ``num_samplers`` PolicySampler actors, each sharing a bundle with its
    reward actor (fractional GPUs), and ``num_learner_workers`` LearnerWorker actors in bundles of their own;
    the learner's new LoRA weights are broadcast to the samplers after each round.
    ``placement: hybrid`` (verl's "hybrid engine"; the GPU presets): ``num_samplers`` bundles, each holding one
    HybridPolicyWorker (``sampler_num_cpus`` / ``sampler_num_gpus``) that samples and then trains the same
    policy in place, and its reward actor; the workers form one torch.distributed group (``learner_backend``)
    and each trains on the chunks it sampled. No weights travel; the ``learner_*`` keys are unused. With
    ``grpo.max_weight_lag = 1`` the next round is queued on each worker behind its update, so it is still
    sampled with the new weights while the driver's bookkeeping (scores, advantages, logging) overlaps it.
    A policy worker lost while sampling is replaced (at most ``max_restarts`` times); one lost during an update
    fails the round (resume from the last checkpoint), see :mod:`rl.hybrid_group`.
    """

    placement: str = "split"  # split | hybrid (see above)
    address: str | None = None  # None: join the job's cluster if inside `ray job submit`, else start one
    num_cpus: int | None = None  # for a locally started cluster only
    num_samplers: int = 1
    num_learner_workers: int = 1
    sampler_num_gpus: float = 0.0  # per sampler, within its bundle
    reward_num_gpus: float = 0.0  # per reward actor, within the same bundle as its sampler
    learner_num_gpus: float = 0.0  # per learner worker, one bundle each
    sampler_num_cpus: float = 0.25
    reward_num_cpus: float = 0.25
    learner_num_cpus: float = 0.25
    placement_strategy: str = "PACK"
    max_restarts: int = 3  # sampler / reward actor restarts before the run fails
    learner_backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    env_vars: dict[str, str] = field(
        default_factory=lambda: {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "WANDB_MODE": "offline",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    torch_threads: int = 1  # torch.set_num_threads in every actor

    @property
    def hybrid(self) -> bool:
        return self.placement == "hybrid"

    def validate(self) -> None:
        if self.placement not in ("split", "hybrid"):
            raise ConfigError(f"placement must be split or hybrid, got {self.placement!r}")
        if self.num_samplers < 1:
            raise ConfigError(f"num_samplers must be >= 1, got {self.num_samplers}")
        if self.num_learner_workers < 1:
            raise ConfigError(f"num_learner_workers must be >= 1, got {self.num_learner_workers}")
        if self.sampler_num_gpus + self.reward_num_gpus > 1.0 and (self.sampler_num_gpus % 1 or self.reward_num_gpus % 1):
            raise ConfigError("sampler_num_gpus + reward_num_gpus must fit one GPU when fractional")
        for key in ("sampler_num_gpus", "reward_num_gpus", "learner_num_gpus", "sampler_num_cpus",
                    "reward_num_cpus", "learner_num_cpus"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ConfigError(f"placement_strategy must be PACK/SPREAD/STRICT_PACK/STRICT_SPREAD, got {self.placement_strategy!r}")
        if self.learner_backend not in ("auto", "gloo", "nccl"):
            raise ConfigError(f"learner_backend must be auto, gloo or nccl, got {self.learner_backend!r}")
        if self.max_restarts < 0:
            raise ConfigError(f"max_restarts must be >= 0, got {self.max_restarts}")


@dataclass
class DataConfig:
    """Instruction JSONL for RL (format in :mod:`rl.data`).

    train_path:           the JSONL; every source image is decoded once when it is loaded, before Ray starts.
    allow_outside_paths:  accept image paths that leave the JSONL's directory (``../``, absolute paths).
    decode_workers:       threads that decode the source images at load time.
    """

    train_path: str = "???"
    seed: int = 0
    allow_outside_paths: bool = False
    decode_workers: int = 4

    def validate(self) -> None:
        if self.decode_workers < 1:
            raise ConfigError(f"decode_workers must be >= 1, got {self.decode_workers}")


@dataclass
class CheckpointConfig:
    """Checkpoints under ``output_dir/checkpoints/step_<8-digit step>`` every ``every_n_steps`` rounds."""

    every_n_steps: int = 10
    keep_last: int = 3
    resume: str = "auto"  # auto: newest intact checkpoint in output_dir if any; never; or a checkpoint directory
    # resume even though keys that change the run's meaning (model, LoRA, reward, algorithm, seeds, data)
    # differ from the checkpoint's config; the differences are logged as a deliberate override
    allow_config_change: bool = False

    def validate(self) -> None:
        if self.every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {self.every_n_steps}")
        if self.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1, got {self.keep_last}")


@dataclass
class LoggingConfig:
    """Console + wandb (offline unless ``wandb_mode`` says otherwise)."""

    wandb: bool = True
    wandb_project: str = "editrl"
    wandb_mode: str = "offline"
    run_name: str | None = None
    log_images_every_n_steps: int = 10
    num_logged_images: int = 4
    progress_bar: bool = True

    def validate(self) -> None:
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"wandb_mode must be offline, online or disabled, got {self.wandb_mode!r}")
        if self.log_images_every_n_steps < 1:
            raise ConfigError(f"log_images_every_n_steps must be >= 1, got {self.log_images_every_n_steps}")


@dataclass
class EvalHookConfig:
    """One evaluation hook; ``kind`` picks the builder in the hook registry the run is handed (see
    :mod:`rl.hook_registry`, which checks the kind before any actor starts).

    reward_pair_accuracy: ``path`` = held-out preference pairs (EditReward-Data layout); reports the reward
                          model's pairwise accuracy.
    Registered by other packages, e.g. ``world_oracle`` (:mod:`world.registries`): ``path`` = a toy-world
    instruction JSONL (held-out tasks); reports the oracle's scores of the policy's ODE edits.
    """

    kind: str = "reward_pair_accuracy"
    every_n_steps: int = 10
    path: str = "???"
    image_root: str | None = None
    limit: int | None = None

    def validate(self) -> None:
        if not self.kind:
            raise ConfigError("kind: must name an eval hook kind")
        if self.every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {self.every_n_steps}")


@dataclass
class ExperimentConfig:
    """The whole run: stage 1 (JRM training, optional) and stage 2 (Flow-GRPO)."""

    output_dir: str = "runs/flow_grpo"
    # The schema of the ``policy`` section. ``policy.kind`` picks the builder (``policies.registry``); the shared
    # keys are OmniGen2's, each diffusers family adds its section (``policy.flux_kontext``, ...), so OmegaConf
    # checks every key whichever kind is chosen.
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    reward: RewardModelConfig = field(default_factory=RewardModelConfig)
    train_jrm: bool = False  # stage 1: train JRM with ``jrm`` first unless reward.checkpoint is given
    jrm: JRMTrainConfig = field(default_factory=JRMTrainConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval_hooks: list[EvalHookConfig] = field(default_factory=list)
    policy_eval_hooks: list[PolicyEvalHookConfig] = field(default_factory=list)  # GEdit / ImgEdit subsets

    def validate(self) -> None:
        if not self.policy.use_lora:
            raise ConfigError("policy.use_lora must be true: Flow-GRPO trains (and syncs) the LoRA adapter only")
        default_policy_registry().require(self.policy.kind, "policy.kind")  # custom kinds: as for reward.kind
        default_registry().require(self.reward.kind)  # custom kinds: pass a registry to run_flow_grpo instead
        if self.train_jrm and self.reward.kind not in JRM_KINDS:
            raise ConfigError(f"train_jrm is set but reward.kind is {self.reward.kind!r} (needs one of {JRM_KINDS})")
        needs_checkpoint = self.reward.kind not in CHECKPOINT_FREE_KINDS
        if needs_checkpoint and self.reward.checkpoint is None and not self.reward.tiny and not self.train_jrm:
            raise ConfigError(
                "reward.checkpoint: required (a local checkpoint directory), unless train_jrm=true trains it in "
                "stage 1; set reward.tiny=true for a tiny random model"
            )
        if self.train_jrm and self.reward.checkpoint is None:
            model = self.jrm.model
            if not (model.checkpoint or model.backbone or model.tiny):
                raise ConfigError(
                    "jrm.model.backbone: stage 1 (train_jrm) needs a local Qwen3-VL directory (or jrm.model.checkpoint; "
                    "jrm.model.tiny=true for a tiny random JRM)"
                )
        check_sde_window_config(self.grpo, self.policy.num_inference_steps)
        if self.data.train_path == "???" or not self.data.train_path:
            raise ConfigError("data.train_path must be set")

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


def check_sde_window_config(cfg: GRPOConfig, num_steps: int) -> None:
    """The SDE window (``grpo.sde_window_size`` within ``grpo.sde_window_range``) must fit the T sampling steps."""
    if cfg.sde_window_size == 0:
        return
    start, end = cfg.sde_window_range if cfg.sde_window_range is not None else (0, num_steps)
    if not 0 <= start < end <= num_steps:
        raise ConfigError(f"grpo.sde_window_range must satisfy 0 <= start < end <= T={num_steps}, got [{start}, {end}]")
    if cfg.sde_window_size > end - start:
        raise ConfigError(
            f"grpo.sde_window_size ({cfg.sde_window_size}) does not fit grpo.sde_window_range [{start}, {end})"
        )


def load_experiment_config(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()) -> ExperimentConfig:
    """Defaults <- YAML preset chain <- ``key=value`` overrides, validated (errors name the key)."""
    return load_config(ExperimentConfig, path, overrides)
