"""The demo's held-out evaluation: the policy before RL and at every RL checkpoint, scored by the oracle and by
the RL reward model, with paired-bootstrap differences (held-out tasks come from a split no stage trains on)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from editrl.io import atomic_write_json
from policies.omnigen2.config import build_pipeline
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from reward.base import DEFAULT_DIMENSIONS, RewardModel
from reward.jrm.model import combine_dimensions
from reward.registry import build_reward_model
from rl.checkpoint import list_checkpoints, load_checkpoint
from world.demo.config import DemoConfig
from world.demo.stages import rl_policy_config
from world.evaluate import PolicyEvaluation, oracle_scores_of_policy
from world.render import to_pil
from world.stats import PairedDifference, paired_bootstrap, pairwise_agreement
from world.tasks import EditTask


@dataclass
class RLEvaluation:
    """Held-out oracle scores at step 0 (the pretrained policy) and after each RL checkpoint.

    rewards: per step, the (n,) reward the RL reward model gives the same held-out edits (empty when none
    was scored) — set beside the oracle, it shows whether the policy learned what the reward model over-rates.
    group_agreement: the reward model's within-task agreement with the oracle before and after RL (empty
    when none was scored; see :func:`group_agreement`).
    """

    steps: list[int]
    results: list[PolicyEvaluation]
    rewards: list[np.ndarray] = field(default_factory=list)
    group_agreement: list[float] = field(default_factory=list)

    @property
    def before(self) -> PolicyEvaluation:
        return self.results[0]

    @property
    def after(self) -> PolicyEvaluation:
        return self.results[-1]

    def oracle_before(self) -> RLEvaluation:
        """Step 0's oracle scores alone: the ``pretrained`` of :func:`stage_eval` for a run whose reward model
        differs from this one's (its rewards and agreement are scored anew)."""
        return RLEvaluation(self.steps[:1], self.results[:1])

    def agreement(self, combine: str) -> list[float]:
        """Per step, :func:`pairwise_agreement` of the reward model with the oracle over the held-out edits."""
        return [pairwise_agreement(r, oracle_combined(res, combine)) for r, res in zip(self.rewards, self.results)]


def oracle_combined(result: PolicyEvaluation, combine: str) -> np.ndarray:
    """(n,) the oracle's IF and VQ combined the way the RL reward combines the reward model's."""
    mu = torch.tensor(np.stack([result.instruction_following, result.visual_quality], axis=1), dtype=torch.float32)
    return combine_dimensions(mu, DEFAULT_DIMENSIONS, combine).numpy()


#: Noise seeds of the within-task agreement edits start here, apart from the held-out edits' seeds.
GROUP_SEED_OFFSET = 100_000


def score_with_reward_model(reward_model: RewardModel, tasks: Sequence[EditTask], result: PolicyEvaluation, batch_size: int) -> np.ndarray:
    """(n,) rewards of the evaluated edits; a non-finite reward is an error naming the task."""
    rewards: list[float] = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start : start + batch_size]
        scores = reward_model.score(
            [to_pil(t.source_image) for t in chunk], result.images[start : start + len(chunk)], [t.instruction for t in chunk]
        )
        rewards.extend(scores.reward.tolist())
    values = np.asarray(rewards, dtype=np.float64)
    bad = [t.task_id for t, v in zip(tasks, values) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"reward model gave non-finite rewards for held-out tasks {bad[:5]}")
    return values


def group_agreement(cfg: DemoConfig, policy: OmniGen2EditPipeline, reward_model: RewardModel, tasks: Sequence[EditTask]) -> float:
    """Within-task :func:`pairwise_agreement` of the reward model with the oracle over ``eval.group_size`` ODE
    edits (different noise seeds) of each task: the comparison GRPO's group-relative advantages rest on."""
    repeated = [task for task in tasks for _ in range(cfg.eval.group_size)]
    result = oracle_scores_of_policy(policy, repeated, seed=cfg.eval.seed + GROUP_SEED_OFFSET)
    rewards = score_with_reward_model(reward_model, repeated, result, cfg.rl.reward.batch_size)
    groups = np.repeat(np.arange(len(tasks)), cfg.eval.group_size)
    return pairwise_agreement(rewards, oracle_combined(result, cfg.rl.reward.combine), groups)


def stage_eval(
    cfg: DemoConfig,
    policy_dir: Path,
    heldout: Sequence[EditTask],
    rl_dir: str | None = None,
    jrm_dir: str | None = None,
    pretrained: RLEvaluation | None = None,
) -> RLEvaluation:
    """ODE edits of the held-out tasks by the pretrained policy and by every RL adapter saved under ``rl_dir``;
    with ``jrm_dir``, each step's edits are also scored by that JRM (the RL reward), and its within-task
    agreement with the oracle is measured before and after RL. ``pretrained``: an evaluation of the same
    pretrained policy and JRM whose step 0 is reused instead of recomputed."""
    pipeline = build_pipeline(rl_policy_config(cfg, policy_dir))
    reward_model = build_reward_model(replace(cfg.rl.reward, checkpoint=jrm_dir)) if jrm_dir is not None else None
    group_tasks = heldout[: cfg.eval.group_tasks]
    with pipeline.adapter_disabled():
        steps, results = [0], [pretrained.before if pretrained is not None else oracle_scores_of_policy(pipeline, heldout, seed=cfg.eval.seed)]
        group_scores = pretrained.group_agreement[:1] if pretrained is not None else []
        if reward_model is not None and not group_scores:
            group_scores = [group_agreement(cfg, pipeline, reward_model, group_tasks)]
    checkpoints = list_checkpoints(rl_dir or cfg.rl.output_dir)
    for path in tqdm(checkpoints, desc="eval: RL checkpoints"):
        checkpoint = load_checkpoint(path)
        pipeline.load_adapter_state_dict(checkpoint.adapter)
        steps.append(checkpoint.state.step)
        results.append(oracle_scores_of_policy(pipeline, heldout, seed=cfg.eval.seed))
    evaluation = RLEvaluation(steps, results)
    if reward_model is not None:
        if checkpoints:  # the last checkpoint's adapter is loaded
            group_scores.append(group_agreement(cfg, pipeline, reward_model, group_tasks))
        reused = pretrained.rewards[:1] if pretrained is not None else []
        evaluation.rewards = reused + [
            score_with_reward_model(reward_model, heldout, r, cfg.rl.reward.batch_size) for r in results[len(reused) :]
        ]
        evaluation.group_agreement = group_scores
    return evaluation


#: (metric name, PolicyEvaluation attribute) of the oracle scores whose differences the demo reports.
SCORES = (("oracle_if", "instruction_following"), ("oracle_vq", "visual_quality"), ("oracle_edit_success", "edit_success"))


def score_deltas(cfg: DemoConfig, evaluation: RLEvaluation) -> dict[str, PairedDifference]:
    """Paired-bootstrap after-minus-before differences of the oracle's IF, VQ and edit success."""
    return {
        name: paired_bootstrap(
            getattr(evaluation.before, attr), getattr(evaluation.after, attr),
            n_resamples=cfg.eval.bootstrap_resamples, seed=cfg.seed,
        )
        for name, attr in SCORES
    }


def gain_differences(cfg: DemoConfig, evaluation: RLEvaluation, other: RLEvaluation) -> dict[str, PairedDifference]:
    """Paired-bootstrap difference of two RL runs' after-minus-before gains on the same held-out tasks:
    ``evaluation``'s gain minus ``other``'s, per task, for the oracle's IF, VQ and edit success."""
    if evaluation.before.task_ids != other.before.task_ids:
        raise ValueError("the two evaluations scored different held-out tasks; their gains do not pair")
    return {
        name: paired_bootstrap(
            getattr(other.after, attr) - getattr(other.before, attr),
            getattr(evaluation.after, attr) - getattr(evaluation.before, attr),
            n_resamples=cfg.eval.bootstrap_resamples, seed=cfg.seed,
        )
        for name, attr in SCORES
    }


def write_heldout_scores(path: Path, evaluation: RLEvaluation) -> Path:
    """Per evaluated step, the oracle's IF and VQ of every held-out task (JSON, task order of ``task_ids``)."""
    atomic_write_json(path, {
        "task_ids": evaluation.before.task_ids,
        "steps": evaluation.steps,
        "instruction_following": [r.instruction_following.tolist() for r in evaluation.results],
        "visual_quality": [r.visual_quality.tolist() for r in evaluation.results],
    })
    return path
