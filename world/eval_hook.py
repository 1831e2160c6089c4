"""An RL eval hook: every K steps, the policy's ODE edits of fixed held-out world tasks, scored by the oracle."""

from __future__ import annotations

from collections.abc import Sequence

from editrl.jsonl import read_jsonl
from policies.base import EditingPolicy
from reward.base import RewardModel
from rl.config import EvalHookConfig
from rl.hooks import EvalResult
from world.evaluate import oracle_scores_of_policy
from world.tasks import EditTask, task_from_record


class WorldOracleHook:
    """Implements :class:`rl.hooks.EvalHook`; metrics ``world_oracle/if``, ``/vq``, ``/edit_success``."""

    def __init__(self, tasks: Sequence[EditTask], every_n_steps: int, *, seed: int = 0, num_images: int = 4, name: str = "world_oracle") -> None:
        if not tasks:
            raise ValueError("WorldOracleHook needs at least one task")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.tasks = list(tasks)
        self.every_n_steps = every_n_steps
        self.seed = seed
        self.num_images = num_images
        self.name = name

    def __call__(self, policy: EditingPolicy, step: int) -> EvalResult:
        result = oracle_scores_of_policy(policy, self.tasks, seed=self.seed)
        metrics = {
            f"{self.name}/if": float(result.instruction_following.mean()),
            f"{self.name}/vq": float(result.visual_quality.mean()),
            f"{self.name}/edit_success": float(result.edit_success.mean()),
        }
        images = [(f"{task.instruction}", image) for task, image in zip(self.tasks, result.images[: self.num_images])]
        return EvalResult(metrics=metrics, images=images, n_items=len(self.tasks))


def build_world_oracle_hook(cfg: EvalHookConfig, reward_model: RewardModel) -> WorldOracleHook:
    """Builder of hook kind ``world_oracle``: ``cfg.path`` is a toy-world instruction JSONL (held-out tasks),
    of which the first ``cfg.limit`` are edited; the reward model is not used."""
    records = read_jsonl(cfg.path)
    tasks = [task_from_record(r) for r in records[: cfg.limit]]
    return WorldOracleHook(tasks, cfg.every_n_steps)
