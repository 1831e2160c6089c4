"""Policy sampler: holds one copy of the policy and draws SDE rollouts for groups of instructions.

Run as a Ray actor (``ray.remote(PolicySampler)``, N replicas); also usable in-process (the sequential
baseline of the benchmark). The policy is built by the policy registry from the config's ``kind`` and used only
through :class:`policies.base.RLPolicy`. The sampler only ever receives adapter tensors from the learner,
tagged with a version (kept by the policy, the version's one owner), and refuses to sample when its weights lag
the learner by more than ``max_weight_lag`` versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from PIL import Image

from policies.base import AdapterState, RLPolicy
from policies.images import tensor_to_pil
from policies.registry import PolicyRegistry, build_policy
from policies.rollout import Rollout
from policies.settings import SamplingSettings
from rl.actor_location import Locatable
from rl.types import SampleRequest, ScoringInput, WeightSyncPayload

NO_WEIGHTS = -1


class StaleWeightsError(RuntimeError):
    """The sampler's adapter version lags the learner's by more than the configured maximum."""


class NoWeightsError(StaleWeightsError):
    """The sampler (e.g. just restarted by Ray) has not received any adapter weights yet."""


class PolicySampler(Locatable):
    """Samples groups of edits with the SDE; the adapter weights arrive by :meth:`load_weights`.

    policy_cfg:      the experiment's ``policy`` section; ``policy_cfg.kind`` is looked up in ``policy_registry``
                     (default: the built-in kinds), whose builder sets the policy's sampling defaults from it.
    max_weight_lag:  how many versions the sampler's weights may lag the learner's.
    policy:          an already built policy to sample with (hybrid placement: the learner's own, trained in
                     place, whose adapter counts as loaded); None builds one from ``policy_cfg``.
    """

    def __init__(
        self, policy_cfg: Any, *, max_weight_lag: int, torch_threads: int = 1,
        policy_registry: PolicyRegistry | None = None, policy: RLPolicy | None = None,
    ) -> None:
        torch.set_num_threads(torch_threads)
        self.max_weight_lag = max_weight_lag
        self.policy: RLPolicy = policy if policy is not None else build_policy(policy_cfg, policy_registry)
        # a built adapter is not the learner's until the first load_weights; a shared one is the learner's
        self._has_weights = policy is not None

    @property
    def version(self) -> int:
        """The policy's adapter version, or ``NO_WEIGHTS`` before the first :meth:`load_weights`."""
        return self.policy.adapter_version if self._has_weights else NO_WEIGHTS

    def load_weights(self, payload: WeightSyncPayload) -> int:
        """Install the learner's adapter tensors and their version; returns the new version."""
        self.policy.load_adapter_state(AdapterState(tensors=payload.tensors, version=payload.version))
        self._has_weights = True
        return self.version

    def get_version(self) -> int:
        return self.version

    def sampling_defaults(self) -> SamplingSettings:
        """The policy's default sampling settings (what ``edit(settings=None)`` uses)."""
        return self.policy.sampling

    def check_version(self, learner_version: int) -> None:
        """Raise :class:`StaleWeightsError` unless ``learner_version - version <= max_weight_lag``."""
        if not self._has_weights:
            raise NoWeightsError("sampler has no adapter weights yet (call load_weights first)")
        version = self.version
        lag = learner_version - version
        if lag > self.max_weight_lag:
            raise StaleWeightsError(
                f"sampler weights are version {version} but the learner is at {learner_version}: lag {lag} "
                f"exceeds max_weight_lag={self.max_weight_lag}"
            )

    def sample(self, request: SampleRequest) -> tuple[Rollout, ScoringInput]:
        """Draw ``samples_per_group`` SDE trajectories per instruction of ``request`` (the policy's sampling
        settings, i.e. the config's).

        Returns the rollout (B = n_groups * samples_per_group, groups contiguous, ``group_ids`` (B,),
        ``adapter_version`` the policy's) and the images and texts the reward actor needs (the two travel
        separately so the reward actor never receives latents).
        """
        self.check_version(request.learner_version)
        spg = request.samples_per_group
        sources: list[list[Image.Image]] = [imgs for imgs in request.sources for _ in range(spg)]
        instructions = [text for text in request.instructions for _ in range(spg)]
        generator = torch.Generator().manual_seed(request.seed)
        with torch.no_grad():
            rollout = self.policy.sample_with_logprob(
                [s if len(s) > 1 else s[0] for s in sources],
                instructions,
                replace(self.policy.sampling, sde_window=request.sde_window),
                generator=generator,
            )
        rollout.instructions = instructions
        rollout.group_ids = request.group_ids.repeat_interleave(spg)
        scoring = ScoringInput(
            sources=[s[0] for s in sources], edits=tensor_to_pil(rollout.images), instructions=instructions
        )
        return rollout, scoring

    def edit(
        self,
        sources: Sequence[Image.Image],
        instructions: Sequence[str],
        *,
        seed: int = 0,
        settings: SamplingSettings | None = None,
    ) -> list[Image.Image]:
        """ODE edits with the current weights (what evaluation hooks use); ``settings`` None = the defaults."""
        with torch.no_grad():
            return self.policy.edit(sources, instructions, seed=seed, settings=settings)
