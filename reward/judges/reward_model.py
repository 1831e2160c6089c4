"""A VLM judge used as a reward model (VIEScore), so judges can be compared with JRM on the reward benchmarks.

Per edit the judge answers VIEScore's two questions (DESIGN §3): instruction following = SC =
min(success, over-editing), visual quality = PQ = min(naturalness, artifacts), reward = O = sqrt(SC * PQ),
all on 0-10. As in GEdit-Bench, the edit is resized to the source's size first. An edit whose answers failed
gets NaN scores: the benchmarks count it as a failure and exclude it (``allow_failures``), never as a zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image

from reward.base import DEFAULT_DIMENSIONS, RewardScores
from reward.judges.base import Judge, JudgeRequest
from reward.judges.prompts.viescore import (
    VIESCORE_FORMAT,
    perceptual_quality_prompt,
    semantic_consistency_prompt,
)


class VIEScoreJudgeReward:
    """:class:`reward.base.RewardModel` answering with a judge's VIEScore; NaN rows mark failed judgements."""

    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.name = f"viescore:{judge.name}"
        self._calls = 0

    def score(self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]) -> RewardScores:
        if not len(sources) == len(edits) == len(instructions):
            raise ValueError(f"got {len(sources)} sources, {len(edits)} edits, {len(instructions)} instructions")
        self._calls += 1
        requests: list[JudgeRequest] = []
        for i, (source, edit, instruction) in enumerate(zip(sources, edits, instructions)):
            source = source.convert("RGB")
            edit = edit.convert("RGB").resize(source.size)
            rid = f"call{self._calls}/{i}"
            requests.append(JudgeRequest(f"{rid}/SC", semantic_consistency_prompt(instruction), [source, edit], VIESCORE_FORMAT))
            requests.append(JudgeRequest(f"{rid}/PQ", perceptual_quality_prompt(), [edit], VIESCORE_FORMAT))
        answers = self.judge.judge(requests)
        mu = torch.full((len(edits), 2), float("nan"))
        for i in range(len(edits)):
            sc, pq = answers[2 * i], answers[2 * i + 1]
            if sc.scores is not None and pq.scores is not None:
                mu[i, 0], mu[i, 1] = min(sc.scores), min(pq.scores)
        reward = torch.tensor([float("nan") if math.isnan(a) else math.sqrt(a * b) for a, b in mu.tolist()])
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=reward, dimensions=self.dimensions)
