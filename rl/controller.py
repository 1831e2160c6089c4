"""The Flow-GRPO controller: each round reads sample -> score -> advantages -> update -> sync.

A round (:meth:`FlowGRPORun._round`) waits for the chunks ``_sample`` queued on the samplers (``_score``:
rollouts, then their rewards), computes advantages (``_advantages``), trains (``_update``) and hands the new
weights to the samplers (``_sync``); the time each phase waits goes to :class:`rl.types.RoundTiming` through
:func:`editrl.timing.phase_timer`.

With ``grpo.max_weight_lag = 1`` the next round's sampling is queued while the learner works on the
current one (samplers use weights one version old); with 0 it is strictly on-policy. Eval hooks run every
K steps, checkpoints are written every N steps (and at the end), and ``checkpoint.resume=auto`` continues
after a killed driver at the next round with the data position of the checkpoint: nothing repeated, nothing
skipped.

Placement (``ray.placement``): ``split`` runs samplers and learners as separate actors and ``_sync`` sends the
new LoRA weights to the samplers; ``hybrid`` (:mod:`rl.hybrid_group`) runs one policy worker per bundle that
samples and trains the same policy in place, so ``_sync`` sends nothing and only the versions are checked.
"""


from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch
from omegaconf import OmegaConf

from editrl.config import to_yaml
from editrl.timing import phase_timer
from policies.registry import PolicyRegistry
from reward.registry import RewardRegistry
from rl.actor_group import ActorGroup, CompletedUpdate, GatheredChunk, PendingChunk, placement_report
from rl.algorithms import (
    assign_minibatches,
    draw_sde_window,
    group_advantages,
    minibatch_element_counts,
    trained_step_indices,
)
from rl.checkpoint import TrainingState, save_checkpoint
from rl.config import ExperimentConfig, GRPOConfig, RayConfig
from rl.data import InstructionDataset, load_reference_images
from rl.failure_budget import FailureBudget
from rl.hook_registry import HookRegistry, build_eval_hooks, default_hook_registry
from rl.hooks import EvalHook
from rl.hybrid_group import HybridActorGroup
from rl.logging import RunLogger
from rl.placement import PlacementPlan, reserve
from rl.preflight import RunInputs, preflight
from rl.remote_proxies import RemotePolicy, RemoteRewardModel
from rl.types import LearnChunk, RewardResult, RoundAdvantages, RoundSummary, RoundTiming, SampleRequest

#: Resumes that changed the config append one JSON line here (in ``output_dir``).
CONFIG_CHANGE_LOG = "config_changes.jsonl"

logger = logging.getLogger("editrl.rl")

_SEED_STRIDE = 1_000_003


@dataclass
class RunResult:
    """What a finished (or resumed-and-finished) run reports.

    start_step: the round the run started at (> 0 after a resume).
    steps_completed: rounds completed in total, including those before a resume.
    summaries: one per round run by this call.
    eval_metrics: step -> hook metrics.
    samples_per_second: SDE samples drawn per wall-clock second over this call's rounds.
    """

    output_dir: Path
    start_step: int
    steps_completed: int
    adapter_version: int
    last_checkpoint: Path | None
    summaries: list[RoundSummary] = field(default_factory=list)
    eval_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    samples_per_second: float = 0.0
    wall_time: float = 0.0
    sync_bytes: int = 0
    #: where the actors ran (:meth:`rl.actor_location.PlacementReport.as_dict`)
    placement: dict = field(default_factory=dict)


def ensure_ray(cfg: RayConfig) -> None:
    """Join the job's cluster (``ray job submit`` sets RAY_ADDRESS) or ``cfg.address``, else start one.

    ``cfg.env_vars`` reach the actors through each actor's runtime environment (see :mod:`rl.actor_group`).
    """
    if ray.is_initialized():
        return
    joining = cfg.address is not None or "RAY_ADDRESS" in os.environ
    ray.init(address=cfg.address, num_cpus=None if joining else cfg.num_cpus, include_dashboard=False)


def chunk_requests(
    records: list, images: list, *, step: int, group_size: int, samples_per_chunk: int, seed: int, learner_version: int,
    sde_window: tuple[int, int] | None = None,
) -> list[SampleRequest]:
    """Split a round's groups into sampler calls: whole groups per call, or one group over several calls.
    Every call of the round samples with the round's ``sde_window`` (None = the SDE on every step)."""
    requests: list[SampleRequest] = []
    if samples_per_chunk >= group_size:
        per = samples_per_chunk // group_size
        spans = [(list(range(g, min(g + per, len(records)))), group_size) for g in range(0, len(records), per)]
    else:
        spans = [([g], samples_per_chunk) for g in range(len(records)) for _ in range(group_size // samples_per_chunk)]
    for c, (groups, spg) in enumerate(spans):
        requests.append(
            SampleRequest(
                record_ids=[records[g].record_id for g in groups],
                instructions=[records[g].instruction for g in groups],
                sources=[images[g] for g in groups],
                group_ids=torch.tensor(groups, dtype=torch.long),
                samples_per_group=spg,
                seed=((seed * _SEED_STRIDE + step) * 10_007 + c) % (2**63),
                learner_version=learner_version,
                sde_window=sde_window,
            )
        )
    return requests


def round_sde_window(cfg_grpo: GRPOConfig, num_steps: int, step: int) -> tuple[int, int] | None:
    """Round ``step``'s SDE window (None: no window), drawn from (seed, step) alone so a re-run draws it again."""
    gen = torch.Generator().manual_seed((cfg_grpo.seed * _SEED_STRIDE + step) * 7 + 3)
    window_range = tuple(cfg_grpo.sde_window_range) if cfg_grpo.sde_window_range is not None else None
    return draw_sde_window(num_steps, cfg_grpo.sde_window_size, window_range, gen)


def round_advantages(
    requests: list[SampleRequest], rewards: list[RewardResult], *, num_steps: int, cfg_grpo: GRPOConfig, step: int
) -> RoundAdvantages:
    """Advantages over the whole round (by group id), split back per chunk, with trained step indices and
    each kept sample's minibatch (``cfg_grpo.num_updates_per_step`` disjoint minibatches over the round).

    requests / rewards: one per chunk, in chunk order. Step indices and minibatches come from a generator
    seeded by (seed, step) alone, so a re-run or resumed round trains the same steps in the same minibatches.
    """
    reward = torch.cat([r.reward for r in rewards])
    group_ids = torch.cat([q.group_ids.repeat_interleave(q.samples_per_group) for q in requests])
    adv = group_advantages(reward, group_ids, std_over_batch=cfg_grpo.std_over_batch, clip=cfg_grpo.advantage_clip)
    gen = torch.Generator().manual_seed(cfg_grpo.seed * _SEED_STRIDE + step)
    indices = []
    for q, r in zip(requests, rewards):
        span, first = _window_span(q.sde_window, num_steps)
        indices.append(trained_step_indices(r.reward.shape[0], span, cfg_grpo.timestep_fraction, gen, offset=first))
    minibatch = assign_minibatches(adv.valid, cfg_grpo.num_updates_per_step, gen)
    chunks: list[LearnChunk] = []
    offset = 0
    for idx in indices:
        n = idx.shape[0]
        part = slice(offset, offset + n)
        chunks.append(LearnChunk(adv.advantages[part], adv.valid[part], idx, minibatch[part]))
        offset += n
    kept = adv.advantages[adv.valid]
    k = indices[0].shape[1]  # every chunk of a round trains the same number of steps
    return RoundAdvantages(
        chunks=chunks,
        n_samples=reward.numel(),
        n_kept=int(adv.valid.sum()),
        n_zero_spread=int(adv.n_zero_spread),
        n_nonfinite=int(adv.n_nonfinite),
        mean=float(kept.mean()) if kept.numel() else 0.0,
        std=float(kept.std(unbiased=False)) if kept.numel() else 0.0,
        abs_max=float(kept.abs().max()) if kept.numel() else 0.0,
        minibatch_elements=minibatch_element_counts(minibatch, cfg_grpo.num_updates_per_step, k),
    )


def _window_span(window: tuple[int, int] | None, num_steps: int) -> tuple[int, int]:
    """(how many steps take the SDE, the first of them) under ``window`` (None = all T steps from 0)."""
    return (num_steps, 0) if window is None else (window[1] - window[0], window[0])


@dataclass
class RewardStatistics:
    """Statistics of one round's rewards, over finite values only.

    mean / std: ``"reward"`` (the combined scalar) and each dimension name -> mean / population std of that
                column over the round's N samples; a column without a finite value is absent.
    """

    mean: dict[str, float]
    std: dict[str, float]


def reward_statistics(rewards: list[RewardResult]) -> RewardStatistics:
    """Mean and std of the finite combined reward and of each dimension's mean score."""
    reward = torch.cat([r.reward for r in rewards])
    mu = torch.cat([r.mu for r in rewards])
    stats = RewardStatistics({}, {})
    columns = {"reward": reward, **{name: mu[:, d] for d, name in enumerate(rewards[0].dimensions)}}
    for name, col in columns.items():
        col = col[torch.isfinite(col)]
        if col.numel():
            stats.mean[name] = float(col.mean())
            stats.std[name] = float(col.std(unbiased=False))
    return stats


class FlowGRPORun:
    """One run of stage 2 on live actors (created by :func:`run_flow_grpo`).

    Between rounds it holds the pipeline's state: ``pending``, the next round's chunks already queued on the
    samplers, and ``pending_sync``, weight loads queued behind them and not yet waited for.
    """

    def __init__(
        self, cfg: ExperimentConfig, actors: ActorGroup, inputs: RunInputs, hook_registry: HookRegistry | None = None
    ) -> None:
        self.cfg = cfg
        self.actors = actors
        self.inputs = inputs
        self.hook_registry = hook_registry
        self.out = cfg.output_path
        self.out.mkdir(parents=True, exist_ok=True)
        self.dataset = InstructionDataset(inputs.records, seed=cfg.data.seed)
        self.failure_budget = FailureBudget(
            cfg.grpo.max_failed_reward_fraction, cfg.grpo.max_rounds_without_update, reward_name=cfg.reward.kind
        )
        self.positions: dict[int, int] = {}
        self.record_ids: dict[int, list[str]] = {}
        self.version = 0
        self.sync_bytes = 0
        self.start_step = 0
        self.last_checkpoint: Path | None = None
        self.hooks: list[EvalHook] = []
        self.pending: list[PendingChunk] = []
        self.pending_sync: list[ray.ObjectRef] = []

    # -- state ---------------------------------------------------------------------------------------------
    def _restore(self) -> str:
        """Restore the checkpoint the preflight chose (if any); returns the wandb run id to continue."""
        ckpt = self.inputs.resume
        if ckpt is None:
            return ""
        path = ckpt.path
        self._record_config_changes(ckpt.state.step)
        self.actors.restore_learners(ckpt.adapter, ckpt.optimizer, ckpt.state.adapter_version)
        if "torch_cpu" in ckpt.rng:
            torch.set_rng_state(ckpt.rng["torch_cpu"])
        self.start_step = ckpt.state.step
        self.dataset.position = ckpt.state.data_position
        self.version = ckpt.state.adapter_version
        self.last_checkpoint = path
        logger.info("resumed from %s at step %d (data position %d)", path, self.start_step, self.dataset.position)
        return ckpt.state.wandb_run_id

    def _record_config_changes(self, step: int) -> None:
        """Log how the resumed run's config differs from the checkpoint's, and append it to the change log."""
        changes = self.inputs.changes
        if changes is None or not (changes.mutable or changes.fixed):
            return
        for change in changes.mutable:
            logger.info("config change at step %d: %s", step, change)
        for change in changes.fixed:
            logger.warning("config change at step %d (deliberate override, checkpoint.allow_config_change): %s", step, change)
        entry = {
            "step": step,
            "applied": [str(c) for c in changes.mutable],
            "overridden": [str(c) for c in changes.fixed],
        }
        with open(self.out / CONFIG_CHANGE_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _initial_sync(self) -> None:
        """Give every sampler the learner's starting weights (fresh or restored) and wait until they hold them."""
        payload = self.actors.initial_payload()
        self.version = payload.version
        # bytes sent after each update: the adapter in split placement, nothing in hybrid
        self.sync_bytes = payload.num_bytes if self.actors.transfers_weights else 0
        self.actors.wait_sync(self.actors.broadcast(ray.put(payload), self.sync_bytes))

    def _checkpoint(self, completed_steps: int, run_id: str) -> None:
        snapshot = self.actors.learner_state()
        state = TrainingState(completed_steps, self.positions[completed_steps - 1], snapshot.payload.version, run_id)
        self.last_checkpoint = save_checkpoint(
            self.out, state, snapshot.payload.tensors, snapshot.optimizer_state, {"torch_cpu": torch.get_rng_state()},
            to_yaml(self.cfg), keep_last=self.cfg.checkpoint.keep_last,
        )

    # -- the round: sample -> score -> advantages -> update -> sync ----------------------------------------
    def _sample(self, step: int, learner_version: int) -> list[PendingChunk]:
        """Pick the round's instructions and queue its chunks on the samplers (scoring follows each chunk)."""
        g = self.cfg.grpo
        records = self.dataset.take(g.instructions_per_step)
        self.positions[step] = self.dataset.position
        self.record_ids[step] = [r.record_id for r in records]
        images = [load_reference_images(r) for r in records]
        requests = chunk_requests(
            records, images, step=step, group_size=g.group_size, samples_per_chunk=g.samples_per_chunk,
            seed=g.seed, learner_version=learner_version,
            sde_window=round_sde_window(g, self.cfg.policy.num_inference_steps, step),
        )
        return self.actors.submit(requests)

    def _queue_round(self, step: int, learner_version: int) -> None:
        """Queue round ``step`` on the samplers as ``pending`` (nothing past the last round)."""
        self.pending = self._sample(step, learner_version) if step < self.cfg.grpo.num_steps else []

    def _score(self, timings: dict[str, float]) -> list[GatheredChunk]:
        """Wait for the queued chunks' rollouts and rewards (timed as ``sample`` and ``reward``)."""
        gathered = self.actors.gather(self.pending, timings=timings)
        self.pending = []
        return gathered

    def _await_sync(self, timings: dict[str, float]) -> None:
        """Wait for the weight loads the last round queued behind this round's sampling (timed as ``sync``)."""
        with phase_timer("sync", timings):
            self.actors.wait_sync(self.pending_sync)
        self.pending_sync = []

    def _advantages(self, step: int, gathered: list[GatheredChunk]) -> RoundAdvantages:
        return round_advantages(
            [c.request for c in gathered], [c.reward for c in gathered],
            num_steps=self.cfg.policy.num_inference_steps, cfg_grpo=self.cfg.grpo, step=step,
        )

    def _update(
        self, step: int, gathered: list[GatheredChunk], adv: RoundAdvantages, timings: dict[str, float]
    ) -> CompletedUpdate | None:
        """Train on the kept samples (waiting timed as ``learn``); None when no sample is kept.

        With ``grpo.max_weight_lag >= 1`` the next round is queued first, so its sampling overlaps the learner.
        """
        if adv.n_kept == 0:
            logger.warning("step %d: no sample with a reward spread; skipping the update", step)
            return None
        in_flight = self.actors.learn(gathered, adv.chunks, adv.minibatch_elements, adv.n_kept)
        if self.cfg.grpo.max_weight_lag >= 1:
            self._queue_round(step + 1, self.version + 1)  # overlaps the learner
        with phase_timer("learn", timings):
            update = self.actors.wait_learn(in_flight)
        self.version = update.stats.version
        return update

    def _sync(self, step: int, update: CompletedUpdate | None, timings: dict[str, float]) -> None:
        """Queue the new weights on every sampler, behind the work already queued there.

        With ``grpo.max_weight_lag = 0`` wait for them (timed as ``sync``) and only then queue the next round;
        otherwise the next round waits for them after its sampling (:meth:`_await_sync`). Without an update
        the samplers keep their weights and the next round is queued now.
        """
        if update is None:
            self._queue_round(step + 1, self.version)
            return
        refs = self.actors.broadcast(update.payload_ref, self.actors.sync_bytes)
        if self.cfg.grpo.max_weight_lag >= 1:
            self.pending_sync = refs
            return
        with phase_timer("sync", timings):
            self.actors.wait_sync(refs)
        self._queue_round(step + 1, self.version)

    def _round(self, step: int, run_logger: RunLogger, eval_metrics: dict[int, dict[str, float]]) -> RoundSummary:
        """Round ``step`` on the chunks queued for it (queueing the next), then log, evaluate and checkpoint."""
        timings: dict[str, float] = {}
        with phase_timer("total", timings):
            gathered = self._score(timings)
            self._await_sync(timings)
            adv = self._advantages(step, gathered)
            update = self._update(step, gathered, adv, timings)
            self._sync(step, update, timings)
        self._account_failures(step, gathered, adv, update)
        summary = self._summarise(step, gathered, adv, update, RoundTiming.from_phases(timings))
        self._report(step, summary, gathered, run_logger, eval_metrics)
        return summary

    def _account_failures(
        self, step: int, gathered: list[GatheredChunk], adv: RoundAdvantages, update: CompletedUpdate | None
    ) -> None:
        """Charge the round to the failure budget (raises, before any checkpoint, once it is spent)."""
        errors = [c.reward.error for c in gathered if c.reward.error]
        self.failure_budget.record_round(
            step, n_samples=adv.n_samples, n_failed=adv.n_nonfinite, updated=update is not None,
            error=errors[-1] if errors else "",
        )

    # -- reporting -----------------------------------------------------------------------------------------
    def _summarise(
        self, step: int, gathered: list[GatheredChunk], adv: RoundAdvantages, update: CompletedUpdate | None,
        timing: RoundTiming,
    ) -> RoundSummary:
        rewards = reward_statistics([c.reward for c in gathered])
        return RoundSummary(
            step=step, reward_mean=rewards.mean, reward_std=rewards.std, advantage_mean=adv.mean,
            advantage_std=adv.std, advantage_abs_max=adv.abs_max, n_samples=adv.n_samples, n_kept=adv.n_kept,
            n_zero_spread=adv.n_zero_spread, n_reward_failed=adv.n_nonfinite,
            learner=update.stats if update is not None else None, timing=timing,
            sync_bytes=self.sync_bytes if update is not None else 0, sampler_restarts=self.actors.reissued_chunks,
        )

    def _report(
        self, step: int, summary: RoundSummary, gathered: list[GatheredChunk], run_logger: RunLogger,
        eval_metrics: dict[int, dict[str, float]],
    ) -> None:
        """Sample images, due eval hooks, the round's log line, and a checkpoint when one is due."""
        cfg = self.cfg
        if (step + 1) % cfg.logging.log_images_every_n_steps == 0:
            self._log_images(step, gathered, run_logger)
        self._run_hooks(step, run_logger, eval_metrics)
        # log before the checkpoint: a round logged but not checkpointed is re-run (and re-logged) on
        # resume, so the last entry per step in rounds.jsonl is what the weights saw
        run_logger.log_round(summary, self.record_ids.pop(step))
        if (step + 1) % cfg.checkpoint.every_n_steps == 0 or step + 1 == cfg.grpo.num_steps:
            self._checkpoint(step + 1, run_logger.run_id)

    def _log_images(self, step: int, gathered: list[GatheredChunk], run_logger: RunLogger) -> None:
        scoring = ray.get(gathered[0].scoring_ref)
        n = min(self.cfg.logging.num_logged_images, len(scoring.edits))
        rewards = gathered[0].reward.reward
        run_logger.log_images(
            step, [(f"{scoring.instructions[i]} | r={float(rewards[i]):.3f}", scoring.edits[i]) for i in range(n)]
        )

    def _run_hooks(self, step: int, run_logger: RunLogger, results: dict[int, dict[str, float]]) -> None:
        due = [h for h in self.hooks if (step + 1) % h.every_n_steps == 0]
        if not due:
            return
        policy = RemotePolicy(self.actors.samplers[0])
        metrics: dict[str, float] = {}
        for hook in due:
            result = hook(policy, step)
            metrics.update(result.metrics)
            if result.images:
                run_logger.log_images(step, result.images)
        results[step] = metrics
        run_logger.log_metrics(step, metrics)

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg, g = self.cfg, self.cfg.grpo
        run_id = self._restore()
        self._initial_sync()
        if cfg.eval_hooks or cfg.policy_eval_hooks:
            reward_model = RemoteRewardModel(self.actors.reward_actors[0])
            self.hooks = build_eval_hooks(cfg.eval_hooks, reward_model, cfg.policy_eval_hooks, self.hook_registry)
        run_logger = RunLogger(
            cfg.logging, self.out, total_steps=g.num_steps, start_step=self.start_step,
            config_dict=OmegaConf.to_container(OmegaConf.structured(cfg)), run_id=run_id,
        )
        result = RunResult(
            self.out, self.start_step, self.start_step, self.version, self.last_checkpoint, sync_bytes=self.sync_bytes
        )
        t_start = time.perf_counter()
        try:
            self._queue_round(self.start_step, self.version)
            for step in range(self.start_step, g.num_steps):
                result.summaries.append(self._round(step, run_logger, result.eval_metrics))
                result.steps_completed = step + 1
        finally:
            run_logger.close()
        result.wall_time = time.perf_counter() - t_start
        samples = sum(s.n_samples for s in result.summaries)
        result.samples_per_second = samples / result.wall_time if result.wall_time > 0 else 0.0
        result.adapter_version = self.version
        result.last_checkpoint = self.last_checkpoint
        return result


def start_actors(
    cfg: ExperimentConfig, plan: PlacementPlan, reward_registry: RewardRegistry | None = None,
    policy_registry: PolicyRegistry | None = None,
) -> ActorGroup:
    """The run's actors on ``plan``: split placement (samplers + learners) or hybrid (``ray.placement``)."""
    group = HybridActorGroup if cfg.ray.hybrid else ActorGroup
    return group(cfg, plan, reward_registry, policy_registry)


def run_flow_grpo(
    cfg: ExperimentConfig,
    reward_registry: RewardRegistry | None = None,
    *,
    hook_registry: HookRegistry | None = None,
    policy_registry: PolicyRegistry | None = None,
) -> RunResult:
    """Reserve the placement group, start the actors, run all rounds, release everything.

    ``reward_registry``: where ``cfg.reward.kind`` is looked up (default: the built-in kinds); pass an
    extended registry (``default_registry().extended(...)``) to train against a reward of your own.
    ``hook_registry``: where each ``cfg.eval_hooks[i].kind`` is looked up (default: the built-in kinds, see
    :func:`rl.hook_registry.default_hook_registry`).
    ``policy_registry``: likewise for ``cfg.policy.kind`` (``policies.registry.default_policy_registry()``).
    All three, every input path, the instruction data (images decoded) and the checkpoint to resume are
    checked by :func:`rl.preflight.preflight` before Ray or any actor starts.
    """
    hook_registry = hook_registry or default_hook_registry()
    inputs = preflight(
        cfg, reward_registry=reward_registry, policy_registry=policy_registry, hook_registry=hook_registry
    )
    ensure_ray(cfg.ray)
    plan = reserve(cfg.ray)
    actors = start_actors(cfg, plan, reward_registry, policy_registry)
    try:
        placement = placement_report(actors)
        (logger.info if placement.ok else logger.warning)("actor placement: %s", placement.summary())
        result = FlowGRPORun(cfg, actors, inputs, hook_registry).run()
        result.placement = placement.as_dict()
        return result
    finally:
        actors.kill_all()
        plan.remove()
