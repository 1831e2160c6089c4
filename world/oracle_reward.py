"""The world's oracle behind :class:`reward.base.RewardModel`: a perfect reward for diagnosing RL.

RL hands a reward model only (source, edit, instruction); the oracle needs the task. Tasks are rebuilt from
the RL instruction JSONL (:func:`world.tasks.write_instruction_jsonl` records carry seed, size and
edit type) and looked up by instruction, then by the source image (instructions repeat across tasks).

Registered as reward kind ``world_oracle`` by :func:`world.registries.world_reward_registry`;
``RewardModelConfig.checkpoint`` names the instruction JSONL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from editrl.config import ConfigError
from editrl.jsonl import iter_jsonl
from reward.base import DEFAULT_DIMENSIONS, RewardScores
from reward.jrm.model import check_combine, combine_dimensions
from reward.registry import RewardModelConfig
from world.oracle import score_edit
from world.render import from_pil
from world.tasks import EditTask, task_from_record


def oracle_reward(if_score: torch.Tensor, vq_score: torch.Tensor, edit_success: torch.Tensor, combine: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) IF, (B,) VQ on 1-4, (B,) edit success in [0, 1] -> ((B, 2) mu, (B,) reward).

    reward = combine(IF, VQ) + edit_success: the integer scores tie within most GRPO groups, the fraction
    of changed pixels done right separates them (a dense shaping term the oracle's IF grade is built on).
    """
    mu = torch.stack([if_score, vq_score], dim=1).float()
    return mu, combine_dimensions(mu, DEFAULT_DIMENSIONS, combine) + edit_success.float()


class WorldOracleReward:
    """Implements :class:`reward.base.RewardModel` by scoring edits with :func:`world.oracle.score_edit`."""

    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS

    def __init__(self, tasks: Sequence[EditTask], *, combine: str = "mean") -> None:
        if not tasks:
            raise ValueError("WorldOracleReward needs at least one task")
        check_combine(combine, self.dimensions)
        self.combine = combine
        self._by_instruction: dict[str, list[EditTask]] = {}
        for task in tasks:
            self._by_instruction.setdefault(task.instruction, []).append(task)

    @classmethod
    def from_instruction_jsonl(cls, path: str | Path, *, combine: str = "mean") -> WorldOracleReward:
        """Rebuild every task of an RL instruction file (clear error naming the line on a bad record)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"world_oracle: instruction file {path} does not exist")
        tasks = []
        for number, record in iter_jsonl(path):
            try:
                tasks.append(task_from_record(record))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"world_oracle: {path}:{number}: {exc}") from None
        return cls(tasks, combine=combine)

    def task_for(self, source: Image.Image, instruction: str) -> EditTask:
        """The task with this instruction whose source image is closest to ``source``."""
        candidates = self._by_instruction.get(instruction)
        if not candidates:
            raise KeyError(f"world_oracle: no task has the instruction {instruction!r}")
        if len(candidates) == 1:
            return candidates[0]
        pixels = from_pil(source, candidates[0].size)
        distances = [float(np.abs(pixels - task.source_image).mean()) for task in candidates]
        return candidates[int(np.argmin(distances))]

    def score(self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]) -> RewardScores:
        if not len(sources) == len(edits) == len(instructions):
            raise ValueError(f"world_oracle: {len(sources)} sources, {len(edits)} edits, {len(instructions)} instructions")
        scores = [score_edit(self.task_for(s, text), e) for s, e, text in zip(sources, edits, instructions)]
        mu, reward = oracle_reward(
            torch.tensor([s.instruction_following for s in scores]),
            torch.tensor([s.visual_quality for s in scores]),
            torch.tensor([s.facts["edit_success"] for s in scores]),
            self.combine,
        )
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=reward, dimensions=self.dimensions)


def build_world_oracle(cfg: RewardModelConfig) -> WorldOracleReward:
    """Factory for kind ``world_oracle``: ``cfg.checkpoint`` is the RL instruction JSONL."""
    if not cfg.checkpoint:
        raise ConfigError("checkpoint: kind 'world_oracle' needs the RL instruction JSONL path")
    try:
        return WorldOracleReward.from_instruction_jsonl(cfg.checkpoint, combine=cfg.combine)
    except ValueError as exc:
        raise ConfigError(f"world_oracle: {exc}") from None
