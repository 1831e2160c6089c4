"""The JRM training loop of one worker (:func:`run_worker`), as named steps.

setup (data, model, optimizer, schedule, resume) → per step: accumulate gradients over micro-batches → reduce,
clip, AdamW step → held-out evaluation when due → log → checkpoint when due → report; at the end the final
model and ``metrics.json``. Rank 0 logs and writes; with ``strategy: fsdp`` every worker takes part in
evaluation and in gathering the full state (collectives).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from editrl.checkpoints import StepCheckpoints, write_dir_atomically
from editrl.config import to_yaml
from editrl.io import atomic_write_json
from reward.jrm.checkpoints import (
    MODEL_DIR,
    TrainerProgress,
    jrm_checkpoints,
    resolve_resume,
    restore_checkpoint,
    save_checkpoint,
)
from reward.jrm.data import PairBatchSampler, load_images
from reward.jrm.evaluation import pairwise_accuracy
from reward.jrm.model_init import build_model
from reward.jrm.pairs import LoadedPair, PreferencePair
from reward.jrm.parallel import ParallelPlan, as_local_tensor
from reward.jrm.rng import seed_worker
from reward.jrm.schedule import warmup_cosine_schedule
from reward.jrm.train_config import JRMModelInit, JRMTrainConfig
from reward.jrm.train_data import RationaleCoverage, drop_overlong, load_training_data

Reporter = Callable[[dict[str, float]], None]


@dataclass
class WorkerRun:
    """What one worker trains with, built by :func:`setup_worker` (resumed state already restored).

    cfg:         the run's config.
    plan:        how the model is spread over workers (ddp or fsdp).
    rank:        this worker's rank (0 logs and writes files).
    device:      where the model lives.
    start_init:  the model the run was built from (also builds the fsdp writing copy).
    model / optimizer / scheduler / sampler: the live training objects.
    params:      the trainable parameters, in the optimizer's order.
    train_pairs: the pairs the sampler's indices refer to.
    held_out:    held-out pairs with decoded images (empty on workers that do not evaluate).
    total_steps: optimizer steps of the whole run.
    progress:    step reached, eval history, wandb id.
    data_lines:  data-loading report lines (printed by rank 0).
    """

    cfg: JRMTrainConfig
    plan: ParallelPlan
    rank: int
    device: torch.device
    start_init: JRMModelInit
    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: PairBatchSampler
    params: list[torch.nn.Parameter]
    train_pairs: list[PreferencePair]
    held_out: list[LoadedPair]
    total_steps: int
    progress: TrainerProgress
    data_lines: list[str]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.output_dir)


def planned_steps(cfg: JRMTrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps of the run: ``epochs`` passes over the data, capped at ``max_steps`` if set."""
    total = cfg.epochs * batches_per_epoch
    return total if cfg.max_steps is None else min(total, cfg.max_steps)


def record_objective(model_config: Any, cfg: JRMTrainConfig) -> None:
    """Saved with the checkpoint (``jrm_config.json``): how this JRM was trained (alpha, rank loss, LM reduction)."""
    model_config.alpha = cfg.alpha
    model_config.rank_loss = cfg.rank_loss
    model_config.lm_reduction = cfg.lm_reduction


def _prepare_model(model: Any, cfg: JRMTrainConfig, plan: ParallelPlan, device: torch.device) -> list[torch.nn.Parameter]:
    """Move to ``device`` in train mode, shard or replicate; returns the trainable parameters."""
    record_objective(model.config, cfg)
    model.to(device)
    model.train()
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    plan.prepare(model)
    return [p for p in model.parameters() if p.requires_grad]


def _build_optimizer(params: list[torch.nn.Parameter], cfg: JRMTrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )


def setup_worker(cfg: JRMTrainConfig, rank: int, world_size: int, device: torch.device) -> WorkerRun:
    """Load data, build (or resume) the model, optimizer, schedule and sampler of one worker."""
    plan = ParallelPlan(cfg.strategy, world_size)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    train_pairs, held_pairs, data_lines = load_training_data(cfg.data, cfg.seed, cfg.alpha)
    resume_from = resolve_resume(cfg)
    seed_worker(cfg.seed + rank)
    start_init = JRMModelInit(checkpoint=str(resume_from / MODEL_DIR)) if resume_from else cfg.model
    model = build_model(start_init, cfg.prompt)
    train_pairs, dropped = drop_overlong(model, train_pairs, cfg.max_seq_len, cfg.data.max_pixels)
    if dropped:
        data_lines.append(f"dropped {len(dropped)} pair(s) longer than max_seq_len={cfg.max_seq_len}: {dropped[:5]}")
    sampler = PairBatchSampler(len(train_pairs), cfg.global_batch_size, cfg.seed)
    total_steps = planned_steps(cfg, sampler.batches_per_epoch)
    params = _prepare_model(model, cfg, plan, device)
    optimizer = _build_optimizer(params, cfg)
    scheduler = warmup_cosine_schedule(optimizer, total_steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    progress = TrainerProgress()
    if resume_from is not None:
        progress = restore_checkpoint(resume_from, plan, model, optimizer, scheduler, sampler)
    evaluates = rank == 0 or plan.sharded  # sharded forwards are collectives: every worker evaluates
    held_out = [load_images(p, cfg.data.max_pixels) for p in held_pairs] if evaluates else []
    return WorkerRun(
        cfg=cfg, plan=plan, rank=rank, device=device, start_init=start_init, model=model, optimizer=optimizer,
        scheduler=scheduler, sampler=sampler, params=params, train_pairs=train_pairs, held_out=held_out,
        total_steps=total_steps, progress=progress, data_lines=data_lines,
    )


class ModelWriter:
    """Writes the full model with ``save_pretrained``; under fsdp from an unsharded CPU copy, built once on first use."""

    def __init__(self, run: WorkerRun) -> None:
        self._run = run
        self._shadow: Any = None

    def save(self, target: Path, model_state: dict[str, Any]) -> None:
        run = self._run
        if not run.plan.sharded:
            run.model.save_pretrained(target)
            return
        if self._shadow is None:
            self._shadow = build_model(run.start_init, run.cfg.prompt)
            record_objective(self._shadow.config, run.cfg)
        self._shadow.load_state_dict(model_state, strict=True)
        self._shadow.save_pretrained(target)


def _start_wandb(run: WorkerRun) -> Any:
    """Rank 0's wandb run (continuing ``progress.wandb_id``), or None when disabled or not rank 0."""
    cfg = run.cfg
    if not run.is_main or cfg.wandb_mode == "disabled":
        return None
    import wandb

    wandb_run = wandb.init(
        project=cfg.wandb_project,
        name=cfg.wandb_run_name,
        mode=cfg.wandb_mode,
        dir=str(run.out_dir),
        id=run.progress.wandb_id,
        resume="allow",
        config={"yaml": to_yaml(cfg)},
    )
    run.progress.wandb_id = wandb_run.id
    return wandb_run


def _autocast(run: WorkerRun) -> AbstractContextManager[Any]:
    enabled = run.device.type == "cuda" and run.cfg.precision == "bf16"
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)


def step_alpha(cfg: JRMTrainConfig, step: int) -> float:
    """The LM weight of optimizer step ``step`` (0-based): 0 during ``rank_warmup_steps``, then ``cfg.alpha``."""
    return 0.0 if step < cfg.rank_warmup_steps else cfg.alpha


def accumulate_gradients(
    run: WorkerRun, shard: list[int], autocast: AbstractContextManager[Any], alpha: float
) -> dict[str, float]:
    """Forward and backward of ``(1-alpha) L_rank + alpha L_LM`` over this worker's share of the batch in
    micro-batches; mean losses over them."""
    from reward.jrm.objective import compute_loss

    cfg = run.cfg
    accumulation = cfg.grad_accumulation_steps
    sums = {"loss": 0.0, "rank": 0.0, "lm": 0.0, "lm_sides": 0.0}
    for m in range(accumulation):
        micro = shard[m * cfg.per_device_batch_size : (m + 1) * cfg.per_device_batch_size]
        loaded = [load_images(run.train_pairs[i], cfg.data.max_pixels) for i in micro]
        run.plan.set_gradient_sync(run.model, last_micro_batch=m == accumulation - 1)
        with autocast:
            out = compute_loss(run.model, loaded, alpha, cfg.rank_loss, cfg.lm_reduction)
        if not torch.isfinite(out.total):
            step = run.progress.step
            raise FloatingPointError(f"non-finite loss at step {step} (records {[p.pair.record_id for p in loaded]})")
        (out.total / accumulation).backward()
        sums["loss"] += float(out.total.detach()) / accumulation
        sums["rank"] += float(out.rank) / accumulation
        sums["lm"] += float(out.lm) / accumulation
        sums["lm_sides"] += out.lm_sequences  # edits of this worker's share that had a rationale
    return sums


def train_step(run: WorkerRun, autocast: AbstractContextManager[Any]) -> dict[str, float]:
    """One optimizer step on the next global batch; returns the ``train/*`` metrics and ``epoch``."""
    shard = PairBatchSampler.shard(run.sampler.next_batch(), run.rank, run.plan.world_size)
    alpha = step_alpha(run.cfg, run.progress.step)
    run.optimizer.zero_grad(set_to_none=True)
    losses = accumulate_gradients(run, shard, autocast, alpha)
    run.plan.reduce_gradients(run.params)
    grad_norm = as_local_tensor(torch.nn.utils.clip_grad_norm_(run.params, run.cfg.max_grad_norm))
    if not torch.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite gradient norm at step {run.progress.step}")
    run.optimizer.step()
    run.scheduler.step()
    run.progress.step += 1
    return {
        "train/alpha": alpha,
        "train/loss": losses["loss"],
        "train/rank_loss": losses["rank"],
        "train/lm_loss": losses["lm"],
        "train/lm_sides": losses["lm_sides"],  # rank 0's edits with a rationale this step (the others: L_rank only)
        "train/grad_norm": float(grad_norm),
        "train/lr": run.scheduler.get_last_lr()[0],
        "epoch": float(run.sampler.state.epoch),
    }


def evaluate_held_out(run: WorkerRun) -> dict[str, float]:
    """``eval/*`` held-out accuracies (gathering sharded parameters first); also appended to the history."""
    with run.plan.gathered(run.model):
        accuracy = pairwise_accuracy(run.model, run.held_out, run.cfg.eval_batch_size)
    metrics = {f"eval/{k}": v for k, v in accuracy.items()}
    run.progress.history.append({"step": float(run.progress.step), **metrics})
    return metrics


def append_train_log(out_dir: Path, step: int, metrics: dict[str, float]) -> None:
    """One line of ``<out_dir>/train_log.jsonl``: ``{"step": ..., **metrics}``."""
    with (out_dir / "train_log.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps({"step": step, **metrics}) + "\n")


def checkpoint_step(run: WorkerRun, writer: ModelWriter, checkpoints: StepCheckpoints) -> None:
    """Gather the full state (a collective under fsdp); rank 0 writes it and prunes old checkpoints."""
    model_state, optimizer_state = run.plan.full_state(run.model, run.optimizer)
    if not run.is_main:
        return
    save_checkpoint(
        checkpoints,
        lambda target: writer.save(target, model_state),
        optimizer_state,
        run.scheduler,
        run.sampler,
        run.progress,
    )
    checkpoints.prune(run.cfg.keep_checkpoints)


def finish(run: WorkerRun, writer: ModelWriter, last_metrics: dict[str, float]) -> dict[str, float]:
    """Gather the full model (a collective); rank 0 writes ``final/`` and ``metrics.json``, returns the final
    metrics (other ranks return {})."""
    model_state, _ = run.plan.full_state(run.model, run.optimizer)
    if not run.is_main:
        return {}
    write_dir_atomically(run.out_dir / "final", lambda tmp: writer.save(tmp, model_state))
    final = {"step": float(run.progress.step), **last_metrics}
    objective = {"alpha": run.cfg.alpha, "rank_loss": run.cfg.rank_loss, "lm_reduction": run.cfg.lm_reduction}
    coverage = asdict(RationaleCoverage.of(run.train_pairs))  # how joint the run really was
    atomic_write_json(
        run.out_dir / "metrics.json",
        {"final": final, "objective": objective, "rationales": coverage, "history": run.progress.history},
    )
    return final


def run_worker(
    cfg: JRMTrainConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    report: Reporter | None = None,
) -> dict[str, float]:
    """The training loop of one worker; returns rank 0's final metrics (other ranks return {}).

    With ``world_size > 1`` the default process group must already be initialised (Ray Train does it).
    """
    run = setup_worker(cfg, rank, world_size, torch.device(device))
    writer = ModelWriter(run)
    checkpoints = jrm_checkpoints(cfg.output_dir)
    wandb_run = _start_wandb(run)
    if run.is_main:
        for line in run.data_lines:
            tqdm.write(line)
    autocast = _autocast(run)
    bar = tqdm(
        total=run.total_steps, initial=run.progress.step, desc="jrm", unit="step",
        disable=not (run.is_main and cfg.progress_bar),
    )
    last_metrics: dict[str, float] = {}
    while run.progress.step < run.total_steps:
        metrics = train_step(run, autocast)
        step = run.progress.step
        bar.update(1)
        boundary = step == run.total_steps
        if run.held_out and (step % cfg.eval_every_steps == 0 or boundary):
            metrics.update(evaluate_held_out(run))
            bar.set_postfix(acc=f"{metrics.get('eval/acc/overall', float('nan')):.3f}")
        if wandb_run is not None:
            wandb_run.log(metrics, step=step)
        if run.is_main:
            append_train_log(run.out_dir, step, metrics)
        last_metrics = metrics
        if step % cfg.checkpoint_every_steps == 0 or boundary:
            checkpoint_step(run, writer, checkpoints)
        if report is not None and (step % cfg.eval_every_steps == 0 or boundary):
            report({"step": float(step), **metrics})
    bar.close()
    final = finish(run, writer, last_metrics)
    if wandb_run is not None:
        wandb_run.finish()
    return final
