"""The Ray actors of a run and the plumbing between them: submit, gather with restarts, learn, sync.

Samplers and reward actors are restartable (``max_restarts``); a chunk whose sampler or reward actor died is
re-issued (same request, same seed) after the restarted sampler has been given the latest weights. Learner
workers are not restarted: a learner failure fails the run, which then resumes from its last checkpoint.
Hybrid placement (policy workers that sample and learn) is :class:`rl.hybrid_group.HybridActorGroup`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, ObjectLostError, RayActorError, RayTaskError

from editrl.timing import phase_timer
from policies.registry import PolicyRegistry
from reward.registry import RewardRegistry
from rl.actor_location import PlacementReport, check_colocated
from rl.config import ExperimentConfig
from rl.learner import LearnerWorker
from rl.placement import PlacementPlan
from rl.reward_actor import RewardActor
from rl.sampler import NoWeightsError, PolicySampler
from rl.types import LearnChunk, LearnerStats, RewardResult, SampleRequest, WeightSyncPayload

logger = logging.getLogger(__name__)

RESTART_ERRORS = (RayActorError, ActorUnavailableError, ObjectLostError)


@dataclass
class PendingChunk:
    """One submitted chunk: its request, which sampler/reward pair runs it, and the result refs."""

    index: int
    request: SampleRequest
    worker: int
    rollout_ref: ray.ObjectRef
    scoring_ref: ray.ObjectRef
    reward_ref: ray.ObjectRef


@dataclass
class GatheredChunk:
    """A finished chunk: the rollout stays in the object store (split placement) or in the policy worker that
    drew it (hybrid; ``rollout_ref`` then points to its key there); the reward result is local."""

    index: int
    request: SampleRequest
    worker: int
    rollout_ref: ray.ObjectRef
    scoring_ref: ray.ObjectRef
    reward: RewardResult


@dataclass
class PendingUpdate:
    """One learner round in flight on every learner worker.

    stats_ref:   -> :class:`LearnerStats` of the round (rank 0's; the workers all-reduce, so all agree).
    worker_refs: one ref per learner worker (rank order; ``worker_refs[0]`` is ``stats_ref``).
    payload_ref: -> :class:`WeightSyncPayload`, rank 0's adapter after the round (queued after its update);
                 None in hybrid placement (nothing to send).
    """

    stats_ref: ray.ObjectRef
    worker_refs: list[ray.ObjectRef]
    payload_ref: ray.ObjectRef | None


@dataclass
class CompletedUpdate:
    """A finished learner round: its stats and rank 0's new adapter, still in the object store.

    stats:       the round's :class:`LearnerStats` (``stats.version`` is the new adapter version).
    payload_ref: -> :class:`WeightSyncPayload` of that version, to broadcast to the samplers; None in hybrid
                 placement (the workers trained their own policies).
    """

    stats: LearnerStats
    payload_ref: ray.ObjectRef | None


@dataclass
class LearnerSnapshot:
    """What a checkpoint stores of the learner: its adapter (with version) and its optimizer state."""

    payload: WeightSyncPayload
    optimizer_state: dict


def _root_cause(exc: BaseException) -> BaseException:
    """Unwrap Ray task errors (a failed dependency may be wrapped once per task it flowed through)."""
    while isinstance(exc, RayTaskError) and exc.cause is not None and exc.cause is not exc:
        exc = exc.cause
    return exc


def _is_restartable(exc: BaseException) -> bool:
    """True when an actor died, or was restarted and has no weights yet: the chunk is re-issued."""
    cause = _root_cause(exc)
    return isinstance(exc, RESTART_ERRORS) or isinstance(cause, (*RESTART_ERRORS, NoWeightsError))


def _get_when_alive(call: Callable[[], ray.ObjectRef], timeout_s: float = 600.0) -> Any:
    """Run an actor call, retrying while Ray reports the actor unavailable (restarting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(call())
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def runtime_env(cfg: ExperimentConfig) -> dict:
    """Each actor's runtime environment (merged with a ``ray job submit`` job's own, which ray.init may not
    alter): ``ray.env_vars``."""
    return {"env_vars": dict(cfg.ray.env_vars)}


def reward_actor_options(cfg: ExperimentConfig, plan: PlacementPlan, bundle: int) -> dict:
    """Ray actor options of the reward actor on sampler bundle ``bundle`` (restartable)."""
    rc = cfg.ray
    return dict(num_cpus=rc.reward_num_cpus, num_gpus=rc.reward_num_gpus, max_restarts=rc.max_restarts,
                max_task_retries=0, scheduling_strategy=plan.strategy(bundle), runtime_env=runtime_env(cfg))


def start_reward_actors(
    cfg: ExperimentConfig, plan: PlacementPlan, reward_registry: RewardRegistry | None = None
) -> list[ray.actor.ActorHandle]:
    """One restartable reward actor per sampler bundle (sharing it with the sampler or policy worker there)."""
    reward_cls = ray.remote(RewardActor)
    return [
        reward_cls.options(**reward_actor_options(cfg, plan, b)).remote(
            cfg.reward, torch_threads=cfg.ray.torch_threads, registry=reward_registry
        )
        for b in plan.sampler_bundles
    ]


def placement_report(group: ActorGroup) -> PlacementReport:
    """Ask every actor of ``group`` where it runs and check that against the plan (:func:`check_colocated`)."""
    policy = ray.get([a.location.remote() for a in group.samplers])
    reward = ray.get([a.location.remote() for a in group.reward_actors])
    learners = [] if group.learners is group.samplers else ray.get([a.location.remote() for a in group.learners])
    return check_colocated(policy, reward, learners, gpus_per_bundle=math.ceil(group.cfg.ray.sampler_num_gpus))


def init_process_group(workers: list[ray.actor.ActorHandle], backend: str) -> None:
    """Join ``workers`` (rank order; each with ``rendezvous_address`` / ``init_process_group``) in one
    torch.distributed group with rank 0 as master; nothing to do for a single worker."""
    if len(workers) > 1:
        host, port = ray.get(workers[0].rendezvous_address.remote())
        ray.get([w.init_process_group.remote(host, port, backend) for w in workers])


class ActorGroup:
    """Creates the samplers, reward actors and learner workers of ``cfg`` on ``plan``'s bundles."""

    def __init__(
        self, cfg: ExperimentConfig, plan: PlacementPlan, reward_registry: RewardRegistry | None = None,
        policy_registry: PolicyRegistry | None = None,
    ) -> None:
        rc = cfg.ray
        self.cfg = cfg
        self.plan = plan
        sampler_cls = ray.remote(PolicySampler)
        learner_cls = ray.remote(LearnerWorker)
        env = runtime_env(cfg)
        self.samplers = [
            sampler_cls.options(
                num_cpus=rc.sampler_num_cpus, num_gpus=rc.sampler_num_gpus, max_restarts=rc.max_restarts,
                max_task_retries=0, scheduling_strategy=plan.strategy(b), runtime_env=env,
            ).remote(
                cfg.policy, max_weight_lag=cfg.grpo.max_weight_lag, torch_threads=rc.torch_threads,
                policy_registry=policy_registry,
            )
            for b in plan.sampler_bundles
        ]
        self.reward_actors = start_reward_actors(cfg, plan, reward_registry)
        world = len(plan.learner_bundles)
        self.learners = [
            learner_cls.options(
                num_cpus=rc.learner_num_cpus, num_gpus=rc.learner_num_gpus, max_restarts=0,
                scheduling_strategy=plan.strategy(b), runtime_env=env,
            ).remote(
                cfg.policy, cfg.grpo, rank=rank, world_size=world, torch_threads=rc.torch_threads,
                policy_registry=policy_registry,
            )
            for rank, b in enumerate(plan.learner_bundles)
        ]
        init_process_group(self.learners, rc.learner_backend)
        self.latest_payload_ref: ray.ObjectRef | None = None
        self.reissued_chunks = 0
        self.sync_bytes = 0

    #: whether new weights travel from learners to samplers after each update (False: hybrid placement)
    transfers_weights = True

    # -- weights -------------------------------------------------------------------------------------------
    def broadcast(self, payload_ref: ray.ObjectRef, num_bytes: int) -> list[ray.ObjectRef]:
        """Queue the new adapter on every sampler (after the work already queued there); returns the refs."""
        self.latest_payload_ref = payload_ref
        self.sync_bytes = num_bytes
        return [s.load_weights.remote(payload_ref) for s in self.samplers]

    def wait_sync(self, refs: list[ray.ObjectRef]) -> None:
        """Wait for queued weight loads; a sampler that died meanwhile gets the latest weights on re-issue."""
        for i, ref in enumerate(refs):
            try:
                ray.get(ref)
            except RESTART_ERRORS:
                logger.warning("sampler %d died while loading weights; it reloads them on restart", i)
                self._reload(i)

    def _reload(self, worker: int) -> None:
        """Give sampler ``worker`` the latest weights once it is alive again."""
        sampler, payload = self.samplers[worker], self.latest_payload_ref
        _get_when_alive(lambda: sampler.load_weights.remote(payload))

    def initial_payload(self) -> WeightSyncPayload:
        return ray.get(self.learners[0].weight_payload.remote())

    def restore_learners(self, adapter: dict, optimizer_state: dict, version: int) -> None:
        ray.get([w.load_state.remote(adapter, optimizer_state, version) for w in self.learners])

    def learner_state(self) -> LearnerSnapshot:
        payload_ref = self.learners[0].weight_payload.remote()
        opt_ref = self.learners[0].optimizer_state.remote()
        return LearnerSnapshot(ray.get(payload_ref), ray.get(opt_ref))

    # -- sampling and scoring ------------------------------------------------------------------------------
    def _submit(self, index: int, request: SampleRequest, worker: int) -> PendingChunk:
        rollout_ref, scoring_ref = self.samplers[worker].sample.options(num_returns=2).remote(request)
        reward_ref = self.reward_actors[worker].score.remote(scoring_ref)
        return PendingChunk(index, request, worker, rollout_ref, scoring_ref, reward_ref)

    def submit(self, requests: list[SampleRequest]) -> list[PendingChunk]:
        """Queue every chunk, round-robin over the sampler/reward pairs (each pair pipelines its chunks)."""
        return [self._submit(i, req, i % len(self.samplers)) for i, req in enumerate(requests)]

    def _reissue(self, chunk: PendingChunk, exc: BaseException) -> PendingChunk:
        self.reissued_chunks += 1
        logger.warning("chunk %d failed on worker %d (%s); re-issuing it", chunk.index, chunk.worker, type(exc).__name__)
        if self.latest_payload_ref is not None:
            self._reload(chunk.worker)
        scorer = self.reward_actors[chunk.worker]
        _get_when_alive(lambda: scorer.get_dimensions.remote())
        return self._submit(chunk.index, chunk.request, chunk.worker)

    def gather(
        self, pending: list[PendingChunk], *, timings: dict[str, float] | None = None, max_reissues: int | None = None
    ) -> list[GatheredChunk]:
        """Wait for every chunk's rollout and reward, re-issuing chunks whose actor died.

        ``timings`` (see :func:`editrl.timing.phase_timer`) accumulates the seconds waited for rollouts
        (``"sample"``) and then for the scores still missing (``"reward"``).
        """
        budget = max_reissues if max_reissues is not None else self.cfg.ray.max_restarts * len(self.samplers) + 1
        timings = {} if timings is None else timings
        done: dict[int, GatheredChunk] = {}
        todo = list(pending)
        while todo:
            with phase_timer("sample", timings):
                ray.wait([c.rollout_ref for c in todo], num_returns=len(todo), fetch_local=False)
            with phase_timer("reward", timings):
                ray.wait([c.reward_ref for c in todo], num_returns=len(todo), fetch_local=False)
            retry = []
            for chunk in todo:
                try:
                    # a failed sampler task propagates its error into the reward task that consumed it
                    result = ray.get(chunk.reward_ref)
                except Exception as exc:
                    if not _is_restartable(exc) or budget <= 0:
                        raise
                    budget -= 1
                    retry.append(self._reissue(chunk, exc))
                    continue
                done[chunk.index] = GatheredChunk(
                    chunk.index, chunk.request, chunk.worker, chunk.rollout_ref, chunk.scoring_ref, result
                )
            todo = retry
        return [done[i] for i in sorted(done)]

    # -- learning ------------------------------------------------------------------------------------------
    def learn(
        self, gathered: list[GatheredChunk], chunks: list[LearnChunk], minibatch_elements: list[int], num_samples: int
    ) -> PendingUpdate:
        """Start one learner round on all workers (chunks dealt round-robin) and queue rank 0's new adapter.

        minibatch_elements: kept (sample, trained step) elements of each minibatch over all workers (every
                            worker takes one optimizer step per non-empty minibatch and epoch).
        num_samples:        kept samples over all workers.
        """
        world = len(self.learners)
        refs = []
        for rank, worker in enumerate(self.learners):
            mine = [i for i in range(len(gathered)) if i % world == rank]
            refs.append(
                worker.learn.remote(
                    [gathered[i].rollout_ref for i in mine], [chunks[i] for i in mine], minibatch_elements, num_samples
                )
            )
        payload_ref = self.learners[0].weight_payload.remote()
        return PendingUpdate(stats_ref=refs[0], worker_refs=refs, payload_ref=payload_ref)

    def wait_learn(self, update: PendingUpdate) -> CompletedUpdate:
        """Wait for every learner worker to finish the round; its new adapter stays in the object store."""
        stats: LearnerStats = ray.get(update.stats_ref)
        ray.get(update.worker_refs)
        return CompletedUpdate(stats, update.payload_ref)

    def kill_all(self) -> None:
        for handle in [*self.samplers, *self.reward_actors, *self.learners]:
            ray.kill(handle, no_restart=True)

