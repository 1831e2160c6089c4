"""Hybrid policy worker (``ray.placement: hybrid``): one policy that samples and then trains in place.

As verl's hybrid engine: each GPU (bundle) holds one worker whose policy is built once; the worker draws SDE
rollouts with it (:class:`rl.sampler.PolicySampler` logic) and then trains that very policy object
(:class:`rl.learner.LearnerWorker` logic), so no weights travel between sampling and learning. The workers
form one torch.distributed group for the update (gloo on CPU, NCCL on GPU) and each trains on the chunks it
sampled itself: a rollout stays in the worker that drew it, keyed by its request's seed, and only the images
and texts to score (and that key) leave it. The adapter version is the policy's, as everywhere: sampling still
checks it against the controller's (``max_weight_lag``), and the controller checks after every update that
all workers report the same new version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from policies.registry import PolicyRegistry
from policies.rollout import Rollout
from policies.settings import SamplingSettings
from rl.actor_location import Locatable
from rl.config import GRPOConfig
from rl.learner import LearnerWorker
from rl.sampler import PolicySampler
from rl.types import LearnChunk, LearnerStats, SampleRequest, ScoringInput, WeightSyncPayload


class MissingRolloutError(KeyError):
    """A chunk to train on was not sampled by this worker (or was already trained on)."""


class HybridPolicyWorker(Locatable):
    """Rank ``rank`` of ``world_size`` policy workers: a :class:`LearnerWorker` and a :class:`PolicySampler`
    around the same policy.

    policy_cfg / grpo_cfg: the experiment's ``policy`` and ``grpo`` sections (as for the two it composes).
    """

    def __init__(
        self, policy_cfg: Any, grpo_cfg: GRPOConfig, *, rank: int = 0, world_size: int = 1, torch_threads: int = 1,
        policy_registry: PolicyRegistry | None = None,
    ) -> None:
        self.learner = LearnerWorker(
            policy_cfg, grpo_cfg, rank=rank, world_size=world_size, torch_threads=torch_threads,
            policy_registry=policy_registry,
        )
        self.sampler = PolicySampler(
            policy_cfg, max_weight_lag=grpo_cfg.max_weight_lag, torch_threads=torch_threads, policy=self.learner.policy
        )
        self.rollouts: dict[int, Rollout] = {}  # request seed -> a rollout sampled here and not yet trained on

    # -- process group and weights (the learner's) ---------------------------------------------------------
    def rendezvous_address(self) -> tuple[str, int]:
        return self.learner.rendezvous_address()

    def init_process_group(self, master_addr: str, master_port: int, backend: str) -> int:
        return self.learner.init_process_group(master_addr, master_port, backend)

    def get_version(self) -> int:
        return self.learner.version

    def weight_payload(self) -> WeightSyncPayload:
        return self.learner.weight_payload()

    def optimizer_state(self) -> dict:
        return self.learner.optimizer_state()

    def load_state(self, adapter: dict, optimizer_state: dict | None, version: int) -> int:
        return self.learner.load_state(adapter, optimizer_state, version)

    def load_weights(self, payload: WeightSyncPayload) -> int:
        """Set the adapter and version (the run's start or resume: every rank begins from rank 0's weights);
        the optimizer state is kept."""
        return self.learner.load_state(payload.tensors, None, payload.version)

    def learning_rates(self) -> list[float]:
        return self.learner.learning_rates()

    # -- sampling (the sampler's) --------------------------------------------------------------------------
    def sample(self, request: SampleRequest) -> tuple[int, ScoringInput]:
        """Draw the chunk (as :meth:`PolicySampler.sample`) and keep its rollout here.

        Returns (the rollout's key, ``request.seed``, to name it in :meth:`learn`; the reward actor's input).
        A re-issued chunk (same seed) replaces the rollout of its first attempt.
        """
        rollout, scoring = self.sampler.sample(request)
        self.rollouts[request.seed] = rollout
        return request.seed, scoring

    def sampling_defaults(self) -> SamplingSettings:
        return self.sampler.sampling_defaults()

    def edit(
        self, sources: Sequence[Image.Image], instructions: Sequence[str], *, seed: int = 0,
        settings: SamplingSettings | None = None,
    ) -> list[Image.Image]:
        return self.sampler.edit(sources, instructions, seed=seed, settings=settings)

    def held_rollouts(self) -> int:
        """How many sampled chunks wait here to be trained on."""
        return len(self.rollouts)

    # -- the update (the learner's, on the rollouts sampled here) -----------------------------------------
    def learn(
        self, keys: list[int], chunks: list[LearnChunk], minibatch_elements: Sequence[int], num_samples: int
    ) -> LearnerStats:
        """One learner round (all workers call together) on this worker's chunks, named by their keys from
        :meth:`sample`; the trained rollouts are dropped. Arguments otherwise as :meth:`LearnerWorker.learn`."""
        missing = [k for k in keys if k not in self.rollouts]
        if missing:
            raise MissingRolloutError(f"rank {self.learner.rank} holds no rollout for chunk seed(s) {missing}")
        rollouts = [self.rollouts.pop(k) for k in keys]
        return self.learner.learn(rollouts, chunks, minibatch_elements, num_samples)

    def shutdown(self) -> None:
        self.learner.shutdown()
