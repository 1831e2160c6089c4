"""The demo's structured config: the world, each stage's sizes, and the real JRM / Flow-GRPO configs it drives.

``jrm`` is the stage-1 :class:`JRMTrainConfig` shared by the runs of every ``jrm_alphas`` entry (the demo sets
``alpha`` per run, the data paths it writes; all start from the tiny random model of ``jrm.model``); ``rl`` is
the stage-2 :class:`ExperimentConfig` (the demo fills in the pretrained policy, the JRM of ``rl_reward_alpha``
and the instruction file; each ``ablation_rl_alphas`` entry reruns it with that alpha's JRM as the reward).
Paths inside them may interpolate ``${output_dir}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from editrl.config import ConfigError
from policies.policy_config import PolicyConfig
from reward.jrm.train_config import JRMDataConfig, JRMModelInit, JRMTrainConfig
from reward.registry import RewardModelConfig
from rl.config import DataConfig, ExperimentConfig
from world.pretrain import PretrainConfig
from world.tasks import EDIT_TYPES

#: Where the demo writes what the stage configs read (``${output_dir}`` is the demo's output directory).
RL_INSTRUCTIONS = "${output_dir}/data/rl/instructions.jsonl"
TRAIN_PAIRS = "${output_dir}/data/pairs/pairs.jsonl"
EVAL_PAIRS = "${output_dir}/data/pairs_eval/pairs.jsonl"
RATIONALES = "${output_dir}/data/pairs/annotations.jsonl"


def alpha_key(alpha: float) -> str:
    """``0.7`` -> ``"0.7"``, ``0.0`` -> ``"0"`` (the spelling of an alpha in metric names and directories)."""
    return f"{alpha:g}"


def _demo_jrm() -> JRMTrainConfig:
    data = JRMDataConfig(train_pairs=TRAIN_PAIRS, held_out_pairs=EVAL_PAIRS, rationales=RATIONALES)
    return JRMTrainConfig(model=JRMModelInit(tiny=True, tiny_image_side=128), data=data, output_dir="${output_dir}/jrm")


def _demo_experiment() -> ExperimentConfig:
    """The demo's RL run: the tiny model classes (its stages fill policy.checkpoint and reward.checkpoint)."""
    return ExperimentConfig(
        output_dir="${output_dir}/rl", data=DataConfig(train_path=RL_INSTRUCTIONS),
        policy=PolicyConfig(tiny=True), reward=RewardModelConfig(tiny=True),
    )


@dataclass
class WorldConfig:
    """Image size and the edit types tasks are drawn from."""

    image_size: int = 32
    edit_types: list[str] = field(default_factory=lambda: list(EDIT_TYPES))

    def validate(self) -> None:
        if self.image_size < 16 or self.image_size % 8:
            raise ConfigError(f"image_size must be a multiple of 8 and >= 16, got {self.image_size}")
        unknown = [t for t in self.edit_types if t not in EDIT_TYPES]
        if unknown or not self.edit_types:
            raise ConfigError(f"edit_types must be a non-empty subset of {list(EDIT_TYPES)}, got {list(self.edit_types)}")


@dataclass
class PairsConfig:
    """Preference pairs for JRM: built-in candidates plus edits of the pretrained policy (its own outputs)."""

    n_train_tasks: int = 240
    n_eval_tasks: int = 60
    pairs_per_task: int = 4
    tie_fraction: float = 0.1
    policy_samples_per_task: int = 2
    policy_pairs_per_task: int = 2  # of pairs_per_task, pairs that involve the policy's own edits

    def validate(self) -> None:
        for key in ("n_train_tasks", "n_eval_tasks", "pairs_per_task"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.policy_samples_per_task < 0:
            raise ConfigError(f"policy_samples_per_task must be >= 0, got {self.policy_samples_per_task}")
        if not 0 <= self.policy_pairs_per_task <= self.pairs_per_task:
            raise ConfigError(f"policy_pairs_per_task must be in [0, pairs_per_task], got {self.policy_pairs_per_task}")
        if not 0.0 <= self.tie_fraction < 1.0:
            raise ConfigError(f"tie_fraction must be in [0, 1), got {self.tie_fraction}")


@dataclass
class EvalConfig:
    """Held-out evaluation: tasks of the ``heldout`` split, ODE edits scored by the oracle."""

    n_heldout: int = 96
    seed: int = 0
    n_grid_rows: int = 8
    n_spectrum_samples: int = 64
    bootstrap_resamples: int = 10_000
    # within-task JRM-oracle agreement before and after RL: group_size ODE edits (different noise) of each of
    # the first group_tasks held-out tasks, compared within the task as GRPO compares a group's samples
    group_tasks: int = 24
    group_size: int = 4

    def validate(self) -> None:
        if self.n_heldout < 2:
            raise ConfigError(f"n_heldout must be >= 2, got {self.n_heldout}")
        if self.group_tasks < 1 or self.group_size < 2:
            raise ConfigError(f"group_tasks must be >= 1 and group_size >= 2, got {self.group_tasks}, {self.group_size}")
        if self.n_spectrum_samples < 2:
            raise ConfigError(f"n_spectrum_samples must be >= 2, got {self.n_spectrum_samples}")


@dataclass
class ClaimsConfig:
    """The thresholds of the report's claims, each checked against the measured held-out numbers."""

    min_if_gain: float = 0.3  # RL raises held-out oracle IF by at least this
    max_vq_drop: float = 0.1  # RL lowers held-out oracle VQ by at most this
    min_pair_acc: float = 0.85  # held-out pair accuracy of the RL reward's JRM


@dataclass
class DemoConfig:
    """Everything ``python -m launch.demo`` runs, stage by stage, under ``output_dir``."""

    output_dir: str = "runs/demo"
    seed: int = 0
    n_rl_tasks: int = 400
    world: WorldConfig = field(default_factory=WorldConfig)
    # pretrained toy bases (a folder written by `make world-bases`): the policy starts from <bases>/policy and
    # every JRM from <bases>/backbone, and the `pretrain` section is not used; null: pretrain the policy here
    # and train the JRMs from jrm.model's tiny random model
    bases: str | None = None
    bases_size: str = "full"  # the build preset the bases were built from (their metadata must match it)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    jrm: JRMTrainConfig = field(default_factory=lambda: _demo_jrm())
    jrm_alphas: list[float] = field(default_factory=lambda: [0.7, 0.0])
    rl_reward_alpha: float = 0.7  # the JRM of jrm_alphas that is the RL reward; the others are baselines
    # the paper's ablation arms: the same RL run (policy base, seeds, settings) once more per alpha listed, with
    # that alpha's JRM (another jrm_alphas entry, e.g. 0.0) as the reward, evaluated like the main run; each
    # adds about the RL and eval stages' time
    ablation_rl_alphas: list[float] = field(default_factory=list)
    jrm_parallel: bool = True  # train the JRMs of all alphas at once (one Ray Train worker each)
    # torch threads of the stages that run before Ray starts (pretraining, pair building); every later stage
    # runs one thread per process, since Ray's workers share the cores
    threads_before_ray: int = 2
    # diagnostics, each repeating the RL stage (same base, seeds, settings; adds about the RL stage's time) with
    # another reward: the world's oracle (an upper bound), and a reward blind to the edit (reward.kind=noise, the
    # null control: what the updates alone do; the JRM run's gain minus its gain is what the JRM's signal did)
    oracle_reward_rl: bool = False
    null_reward_rl: bool = False
    rl: ExperimentConfig = field(default_factory=lambda: _demo_experiment())
    eval: EvalConfig = field(default_factory=EvalConfig)
    claims: ClaimsConfig = field(default_factory=ClaimsConfig)

    def validate(self) -> None:
        if self.bases is not None and not Path(self.bases).is_dir():
            raise ConfigError(f"bases: {self.bases!r} is not a folder; build it with `make world-bases` or set bases: null")
        if self.threads_before_ray < 1:
            raise ConfigError(f"threads_before_ray must be >= 1, got {self.threads_before_ray}")
        if self.n_rl_tasks < 1:
            raise ConfigError(f"n_rl_tasks must be >= 1, got {self.n_rl_tasks}")
        if self.rl_reward_alpha not in self.jrm_alphas or len(set(self.jrm_alphas)) != len(self.jrm_alphas):
            raise ConfigError(
                f"jrm_alphas must hold rl_reward_alpha ({self.rl_reward_alpha}, the RL reward) and no duplicates, "
                f"got {list(self.jrm_alphas)}"
            )
        others = [a for a in self.jrm_alphas if a != self.rl_reward_alpha]
        arms = self.ablation_rl_alphas
        if any(a not in others for a in arms) or len(set(arms)) != len(arms):
            raise ConfigError(
                f"ablation_rl_alphas must be distinct jrm_alphas entries other than rl_reward_alpha "
                f"({self.rl_reward_alpha}), i.e. drawn from {others}, got {list(self.ablation_rl_alphas)}"
            )
        if any(not 0.0 <= a <= 1.0 for a in self.jrm_alphas):
            raise ConfigError(f"jrm_alphas must lie in [0, 1], got {list(self.jrm_alphas)}")
        if self.rl.policy.height != self.world.image_size or self.rl.policy.width != self.world.image_size:
            raise ConfigError("rl.policy.height / width must equal world.image_size")
        if self.rl.reward.kind != "jrm":
            raise ConfigError(f"rl.reward.kind must be 'jrm' (the demo trains it), got {self.rl.reward.kind!r}")
