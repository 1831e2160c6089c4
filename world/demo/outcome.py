"""What the demo's stages produced, handed as one typed object to the metrics and the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from reward.jrm.analysis import SpectrumStats
from reward.jrm.train import TrainResult
from rl.controller import RunResult
from world.demo.heldout import RLEvaluation
from world.demo.stages import PairsOutcome
from world.evaluate import PolicyEvaluation
from world.pretrain import PretrainResult
from world.stats import PairedDifference
from world.tasks import EditTask


@dataclass
class DiagnosticRewardRun:
    """A diagnostic RL run: the main run with another reward (``oracle_reward_rl``: the world's oracle, what a
    perfect reward model would give; ``null_reward_rl``: a reward blind to the edit, what the updates alone do),
    the same policy base, seeds and settings, evaluated from the main run's step-0 edits.

    name:         its metric and report name, ``oracle_reward`` or ``null_reward``.
    deltas:       name ("oracle_if", "oracle_vq", "oracle_edit_success") -> after-minus-before difference.
    gain_vs_main: name -> the main run's gain minus this run's, paired over the held-out tasks.
    """

    name: str
    rl: RunResult
    evaluation: RLEvaluation
    deltas: dict[str, PairedDifference]
    gain_vs_main: dict[str, PairedDifference]


@dataclass
class AblationArm:
    """The same RL run with the JRM of another alpha (an ``ablation_rl_alphas`` entry) as the reward, evaluated
    on the same held-out tasks as the main run (the same step-0 edits; its own JRM scores them).

    deltas: name ("oracle_if", "oracle_vq", "oracle_edit_success") -> after-minus-before difference.
    gain_vs_main: name -> the main run's gain minus this arm's, paired over the held-out tasks.
    """

    alpha: float
    rl: RunResult
    evaluation: RLEvaluation
    deltas: dict[str, PairedDifference]
    gain_vs_main: dict[str, PairedDifference]


@dataclass
class DemoOutcome:
    """Every stage's result, in order.

    heldout: the n held-out tasks.  roundtrip: oracle scores of their exact targets through the policy's VAE.
    jrm, spectra: alpha -> trained JRM and its spectrum of h, one per ``jrm_alphas`` entry.
    rl: the run with the JRM of ``rl_reward_alpha`` as the reward; evaluation: its held-out evaluation.
    deltas: name ("oracle_if", "oracle_vq", "oracle_edit_success") -> after-minus-before difference.
    ablation_arms: alpha -> the ablation arm of each ``ablation_rl_alphas`` entry, in config order.
    diagnostics: name -> each diagnostic reward run the config asks for (``oracle_reward``, ``null_reward``).
    """

    heldout: list[EditTask]
    pretrain: PretrainResult
    roundtrip: PolicyEvaluation
    pairs: PairsOutcome
    jrm: dict[float, TrainResult]
    spectra: dict[float, SpectrumStats]
    rl: RunResult
    evaluation: RLEvaluation
    deltas: dict[str, PairedDifference]
    ablation_arms: dict[float, AblationArm] = field(default_factory=dict)
    diagnostics: dict[str, DiagnosticRewardRun] = field(default_factory=dict)
