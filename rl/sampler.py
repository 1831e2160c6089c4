"""Policy sampler: holds one copy of the policy and draws SDE rollouts for groups of instructions.

Run as a Ray actor (``ray.remote(PolicySampler)``, N replicas); also usable in-process (the sequential
baseline of the benchmark). The sampler only ever receives LoRA tensors from the learner, tagged with a
version, and refuses to sample when its weights lag the learner by more than ``max_weight_lag`` versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from policies.omnigen2.config import OmniGen2PolicyConfig, build_pipeline
from policies.omnigen2.image_processing import tensor_to_pil
from policies.rollout import Rollout
from rl.types import SampleRequest, ScoringInput, WeightSyncPayload

NO_WEIGHTS = -1


class StaleWeightsError(RuntimeError):
    """The sampler's adapter version lags the learner's by more than the configured maximum."""


class NoWeightsError(StaleWeightsError):
    """The sampler (e.g. just restarted by Ray) has not received any adapter weights yet."""


class PolicySampler:
    """Samples groups of edits with the SDE; the adapter weights arrive by :meth:`load_weights`."""

    def __init__(self, policy_cfg: OmniGen2PolicyConfig, *, max_weight_lag: int, torch_threads: int = 1) -> None:
        torch.set_num_threads(torch_threads)
        self.cfg = policy_cfg
        self.max_weight_lag = max_weight_lag
        self.pipeline = build_pipeline(policy_cfg)
        self.version = NO_WEIGHTS

    def load_weights(self, payload: WeightSyncPayload) -> int:
        """Install the learner's adapter tensors; returns the new version."""
        self.pipeline.load_adapter_state_dict(payload.tensors)
        self.version = payload.version
        return self.version

    def get_version(self) -> int:
        return self.version

    def check_version(self, learner_version: int) -> None:
        """Raise :class:`StaleWeightsError` unless ``learner_version - version <= max_weight_lag``."""
        if self.version == NO_WEIGHTS:
            raise NoWeightsError("sampler has no adapter weights yet (call load_weights first)")
        lag = learner_version - self.version
        if lag > self.max_weight_lag:
            raise StaleWeightsError(
                f"sampler weights are version {self.version} but the learner is at {learner_version}: lag {lag} "
                f"exceeds max_weight_lag={self.max_weight_lag}"
            )

    def sample(self, request: SampleRequest) -> tuple[Rollout, ScoringInput]:
        """Draw ``samples_per_group`` SDE trajectories per instruction of ``request``.

        Returns the rollout (B = n_groups * samples_per_group, groups contiguous, ``group_ids`` (B,)) and the
        images and texts the reward actor needs (the two travel separately so the reward actor never
        receives latents).
        """
        self.check_version(request.learner_version)
        spg = request.samples_per_group
        sources: list[list[Image.Image]] = [imgs for imgs in request.sources for _ in range(spg)]
        instructions = [text for text in request.instructions for _ in range(spg)]
        cfg = self.cfg
        generator = torch.Generator().manual_seed(request.seed)
        with torch.no_grad():
            rollout = self.pipeline.sample_with_logprob(
                [s if len(s) > 1 else s[0] for s in sources],
                instructions,
                num_inference_steps=cfg.num_inference_steps,
                noise_level=cfg.noise_level,
                text_guidance_scale=cfg.text_guidance_scale,
                image_guidance_scale=cfg.image_guidance_scale,
                cfg_range=tuple(cfg.cfg_range),
                height=cfg.height,
                width=cfg.width,
                generator=generator,
            )
        rollout.adapter_version = self.version
        rollout.instructions = instructions
        rollout.group_ids = request.group_ids.repeat_interleave(spg)
        scoring = ScoringInput(
            sources=[s[0] for s in sources], edits=tensor_to_pil(rollout.images), instructions=instructions
        )
        return rollout, scoring

    def edit(
        self, sources: Sequence[Image.Image], instructions: Sequence[str], *, seed: int = 0, **edit_settings: Any
    ) -> list[Image.Image]:
        """ODE edits with the current weights (what evaluation hooks use); settings go to the pipeline."""
        with torch.no_grad():
            return self.pipeline.edit(sources, instructions, seed=seed, **edit_settings)
