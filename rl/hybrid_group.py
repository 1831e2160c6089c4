"""The actors of a run in hybrid placement: one :class:`HybridPolicyWorker` and one reward actor per bundle.

The controller drives it through :class:`rl.actor_group.ActorGroup`'s interface: ``submit`` / ``gather``
queue each chunk on a policy worker and its co-located reward actor (round-robin, as in split placement), and
``learn`` hands every worker the keys of the chunks it sampled itself, so rollouts never leave the worker that
drew them (no object-store round trip of latents). ``broadcast`` loads a payload only at the start of a run
(or a resume: every rank starts from rank 0's adapter); after an update there is nothing to send, and
``wait_learn`` checks that every worker reports the same new adapter version.

Faults: a reward actor that dies is restarted and its chunk re-issued (re-sampled under the same seed and
weights, so the same rollout), as in split placement. A policy worker that dies while the round is sampled or
scored is replaced between collectives: a new worker on its bundle gets a survivor's adapter, optimizer state
and version, all workers form a new process group, and every chunk of the round queued on the dead worker
(its rollouts died with it) is sampled again on the new one (at most ``ray.max_restarts`` replacements per
run). A policy worker that dies during an update cannot be replaced (its peers wait for it inside a
collective), nor can the only worker: the round then fails with :class:`PolicyWorkerLostError` after every
worker is killed, so no survivor stays blocked and the driver never hangs; ``run_flow_grpo`` releases the
placement group, and ``checkpoint.resume=auto`` continues from the last checkpoint with the data position it
recorded.
"""

from __future__ import annotations

import logging

import ray

from policies.registry import PolicyRegistry
from reward.registry import RewardRegistry
from rl.actor_group import (
    RESTART_ERRORS,
    ActorGroup,
    CompletedUpdate,
    GatheredChunk,
    PendingChunk,
    PendingUpdate,
    _get_when_alive,
    _root_cause,
    init_process_group,
    runtime_env,
    start_reward_actors,
)
from rl.config import ExperimentConfig
from rl.hybrid_worker import HybridPolicyWorker
from rl.placement import PlacementPlan
from rl.types import LearnChunk, LearnerStats, SampleRequest

logger = logging.getLogger(__name__)


def policy_worker_options(cfg: ExperimentConfig, plan: PlacementPlan, rank: int) -> dict:
    """Ray actor options of hybrid policy worker ``rank``: its bundle's share (``sampler_num_*``), never
    restarted by Ray (a lost rank is replaced by the group, see the module docstring)."""
    rc = cfg.ray
    return dict(num_cpus=rc.sampler_num_cpus, num_gpus=rc.sampler_num_gpus, max_restarts=0, max_task_retries=0,
                scheduling_strategy=plan.strategy(plan.sampler_bundles[rank]), runtime_env=runtime_env(cfg))


class PolicyWorkerLostError(RuntimeError):
    """A hybrid policy worker died; the round cannot complete (resume from the last checkpoint)."""


class WeightVersionMismatchError(RuntimeError):
    """After an update the policy workers report different adapter versions."""


class HybridActorGroup(ActorGroup):
    """Policy workers (sampler and learner rank ``i`` in one actor) and reward actors on ``plan``'s bundles.

    ``samplers`` and ``learners`` are both the list of policy workers (the controller's eval hooks edit on
    ``samplers[0]``; checkpoints read rank 0's adapter and optimizer from ``learners[0]``).
    """

    transfers_weights = False

    def __init__(
        self, cfg: ExperimentConfig, plan: PlacementPlan, reward_registry: RewardRegistry | None = None,
        policy_registry: PolicyRegistry | None = None,
    ) -> None:
        rc = cfg.ray
        self.cfg = cfg
        self.plan = plan
        self.policy_registry = policy_registry
        self.workers = [self._start_worker(rank) for rank in range(len(plan.sampler_bundles))]
        self.samplers = self.workers
        self.learners = self.workers
        self.reward_actors = start_reward_actors(cfg, plan, reward_registry)
        init_process_group(self.workers, rc.learner_backend)
        self.latest_payload_ref: ray.ObjectRef | None = None
        self.reissued_chunks = 0
        self.sync_bytes = 0
        self.replaced_workers = 0
        # per rank: how often its worker was replaced, and per chunk (request seed) the rank's count when the
        # chunk was queued: a chunk queued before its worker was replaced lost its rollout with it
        self.generation = [0] * len(self.workers)
        self.submitted_generation: dict[int, int] = {}

    def _start_worker(self, rank: int) -> ray.actor.ActorHandle:
        """Policy worker ``rank`` on its bundle (not restarted by Ray: :meth:`_replace` rebuilds the group)."""
        return (
            ray.remote(HybridPolicyWorker)
            .options(**policy_worker_options(self.cfg, self.plan, rank))
            .remote(
                self.cfg.policy, self.cfg.grpo, rank=rank, world_size=len(self.plan.sampler_bundles),
                torch_threads=self.cfg.ray.torch_threads, policy_registry=self.policy_registry,
            )
        )

    def _replace(self, dead: int, exc: BaseException) -> None:
        """Replace dead policy worker ``dead`` between updates: a new worker on its bundle with a survivor's
        adapter, optimizer state and version, and a new process group of all workers (the old one lost a rank;
        no collective is in flight while sampling). Without a survivor, or past ``ray.max_restarts``
        replacements, the round fails (:class:`PolicyWorkerLostError`)."""
        survivors = [w for rank, w in enumerate(self.workers) if rank != dead]
        if not survivors or self.replaced_workers >= self.cfg.ray.max_restarts:
            self._lost(dead, "sampling", exc)
        self.replaced_workers += 1
        logger.warning("policy worker %d died (%s); replacing it and rebuilding the process group", dead, type(exc).__name__)
        try:
            payload_ref, optimizer_ref = survivors[0].weight_payload.remote(), survivors[0].optimizer_state.remote()
            self.workers[dead] = self._start_worker(dead)
            ray.get([w.shutdown.remote() for w in survivors])
            init_process_group(self.workers, self.cfg.ray.learner_backend)
            payload = ray.get(payload_ref)
            ray.get(self.workers[dead].load_state.remote(payload.tensors, ray.get(optimizer_ref), payload.version))
        except Exception as again:
            self._lost(dead, "replacing it", again)
        self.generation[dead] += 1

    # -- weights -------------------------------------------------------------------------------------------
    def broadcast(self, payload_ref: ray.ObjectRef | None, num_bytes: int) -> list[ray.ObjectRef]:
        """Load ``payload_ref`` into every worker (start / resume); None (after an update) sends nothing."""
        if payload_ref is None:
            return []
        self.sync_bytes = num_bytes
        return [w.load_weights.remote(payload_ref) for w in self.workers]

    def wait_sync(self, refs: list[ray.ObjectRef]) -> None:
        self._get_all(refs, "loading weights")

    # -- sampling and scoring ------------------------------------------------------------------------------
    def _submit(self, index: int, request: SampleRequest, worker: int) -> PendingChunk:
        self.submitted_generation[request.seed] = self.generation[worker]
        return super()._submit(index, request, worker)

    def _reissue(self, chunk: PendingChunk, exc: BaseException) -> PendingChunk:
        """Re-issue a chunk whose reward actor or policy worker died (the worker replaced first)."""
        if self.generation[chunk.worker] == self.submitted_generation[chunk.request.seed]:
            try:
                ray.get(self.workers[chunk.worker].get_version.remote())
            except RESTART_ERRORS as dead:
                self._replace(chunk.worker, dead)
        self.reissued_chunks += 1
        logger.warning("chunk %d failed on bundle %d (%s); re-issuing it", chunk.index, chunk.worker, type(exc).__name__)
        scorer = self.reward_actors[chunk.worker]
        _get_when_alive(lambda: scorer.get_dimensions.remote())
        return self._submit(chunk.index, chunk.request, chunk.worker)

    def gather(
        self, pending: list[PendingChunk], *, timings: dict[str, float] | None = None, max_reissues: int | None = None
    ) -> list[GatheredChunk]:
        """As :meth:`ActorGroup.gather`; chunks already scored on a worker that was replaced since (their
        rollouts died with it) are sampled again on its replacement, under the same seed and weights."""
        gathered = super().gather(pending, timings=timings, max_reissues=max_reissues)
        while lost := [g for g in gathered if self.submitted_generation[g.request.seed] != self.generation[g.worker]]:
            self.reissued_chunks += len(lost)
            again = {g.index: g for g in super().gather(
                [self._submit(g.index, g.request, g.worker) for g in lost], timings=timings, max_reissues=max_reissues
            )}
            gathered = [again.get(g.index, g) for g in gathered]
        return gathered

    # -- learning ------------------------------------------------------------------------------------------
    def learn(
        self, gathered: list[GatheredChunk], chunks: list[LearnChunk], minibatch_elements: list[int], num_samples: int
    ) -> PendingUpdate:
        """Start one update on all workers, each on the chunks it sampled (named by their request seeds)."""
        refs = []
        for rank, worker in enumerate(self.workers):
            mine = [i for i, g in enumerate(gathered) if g.worker == rank]
            keys = [gathered[i].request.seed for i in mine]
            refs.append(worker.learn.remote(keys, [chunks[i] for i in mine], minibatch_elements, num_samples))
        for g in gathered:  # trained on (or failed with the round): no longer tracked
            self.submitted_generation.pop(g.request.seed, None)
        return PendingUpdate(stats_ref=refs[0], worker_refs=refs, payload_ref=None)

    def wait_learn(self, update: PendingUpdate) -> CompletedUpdate:
        """Wait for every worker's update; all must report the same new adapter version."""
        stats: list[LearnerStats] = self._get_all(update.worker_refs, "learning")
        versions = [s.version for s in stats]
        if len(set(versions)) != 1:
            self.kill_all()
            raise WeightVersionMismatchError(f"policy workers disagree on the adapter version after an update: {versions}")
        return CompletedUpdate(stats[0], None)

    def _get_all(self, refs: list[ray.ObjectRef], phase: str) -> list:
        """Results of one call per worker, taken as they finish. The first failure kills every worker (the
        others may wait in a collective for the failed one) and is raised: :class:`PolicyWorkerLostError`
        when a worker died, else the worker's own error."""
        remaining = list(refs)
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            try:
                ray.get(ready[0])
            except Exception as exc:
                if isinstance(exc, RESTART_ERRORS) or isinstance(_root_cause(exc), RESTART_ERRORS):
                    self._lost(refs.index(ready[0]), phase, exc)
                self.kill_all()
                raise
        return ray.get(refs)

    def _lost(self, worker: int, phase: str, exc: BaseException) -> None:
        self.kill_all()
        raise PolicyWorkerLostError(
            f"policy worker {worker} died while {phase}; hybrid placement cannot replace a rank of its process "
            f"group mid-round, so every worker was stopped. Run again with checkpoint.resume=auto to continue "
            f"from the last checkpoint"
        ) from exc
