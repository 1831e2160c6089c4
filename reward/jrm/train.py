"""Stage 1: train the JRM on preference pairs with Ray Train (``TorchTrainer``, one worker per GPU).

Each optimizer step takes one global batch of pairs from a seeded, resumable sampler; every worker takes its
strided share and runs it in micro-batches of ``per_device_batch_size`` (gradient accumulation); gradients
are averaged across workers (:mod:`reward.jrm.parallel`: replicated "ddp" or sharded "fsdp"), clipped, and
AdamW steps with a cosine schedule after a linear warmup. Held-out pairwise accuracy is computed every
``eval_every_steps`` and logged to wandb by rank 0, which also writes checkpoints that resume exactly (full
model, optimizer, scheduler, sampler position, RNG states) with :mod:`editrl.io` (weights and optimizer
tensors as safetensors); every step's metrics are appended to ``<output_dir>/train_log.jsonl``. The final
model is saved with ``JRM.save_pretrained`` under ``<output_dir>/final`` so ``reward.registry`` can load it.

Checkpoints are our own (atomic, in ``<output_dir>/checkpoints``) rather than Ray's ``Checkpoint`` objects,
so a run resumes the same way in-process or on Ray (``resume: auto`` picks the latest). Ray Train gets the
metrics through ``ray.train.report``.

:func:`train_jrm` launches the Ray job; :func:`run_worker` is the per-worker loop (also callable in-process
with ``world_size=1``, which is what the exact-resume test does).
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from editrl.config import ConfigError, to_yaml
from editrl.io import atomic_replace_dir, atomic_save_safetensors, atomic_write_json
from reward.base import INSTRUCTION_FOLLOWING, VISUAL_QUALITY
from reward.jrm.annotate import attach_rationales
from reward.jrm.data import PairBatchSampler, load_images, load_preference_pairs, split_pairs
from reward.jrm.pairs import LoadedPair, PreferencePair
from reward.jrm.parallel import (
    ParallelPlan,
    as_local_tensor,
    flatten_optimizer_state,
    unflatten_optimizer_state,
)
from reward.jrm.train_config import JRMDataConfig, JRMModelInit, JRMTrainConfig

__all__ = ["JRMDataConfig", "JRMModelInit", "JRMTrainConfig", "TrainResult", "run_worker", "train_jrm"]

CHECKPOINT_PREFIX = "step_"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TrainResult:
    """checkpoint_dir: the final ``JRM.save_pretrained`` directory; metrics: final held-out accuracies etc."""

    checkpoint_dir: str
    metrics: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- schedule


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    Warmup: ``(step + 1) / warmup_steps`` for step < warmup_steps; after it, ``min_ratio + (1 - min_ratio) *
    0.5 * (1 + cos(pi * progress))`` with progress = (step - warmup) / max(1, total - warmup).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------- evaluation


def pairwise_accuracy(model: Any, pairs: Sequence[LoadedPair], batch_size: int) -> dict[str, float]:
    """Held-out pairwise accuracy: per dimension and overall.

    Per dimension d: over pairs whose human d-scores differ, correct iff the model's mean scores differ in
    the same direction (a model tie counts as wrong). Overall: over non-tie pairs (path1 preferred), correct
    iff the combined reward of path1 is strictly higher. ``n/...`` give the number of pairs counted; an
    ``acc/...`` key is absent when nothing was counted for it.
    """
    correct = {INSTRUCTION_FOLLOWING: 0, VISUAL_QUALITY: 0, "overall": 0}
    counted = dict.fromkeys(correct, 0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            sources = [p.source for p in batch] * 2
            edits = [p.preferred for p in batch] + [p.rejected for p in batch]
            instructions = [p.pair.instruction for p in batch] * 2
            scores = model.score(sources, edits, instructions)
            b = len(batch)
            for name, attr in ((INSTRUCTION_FOLLOWING, "instruction_following"), (VISUAL_QUALITY, "visual_quality")):
                if name not in scores.dimensions:
                    continue
                margin = scores.column(name)[:b] - scores.column(name)[b:]
                for i, p in enumerate(batch):
                    human = getattr(p.pair.scores_preferred, attr) - getattr(p.pair.scores_rejected, attr)
                    if human != 0:
                        counted[name] += 1
                        correct[name] += int(float(margin[i]) * human > 0)
            reward_margin = scores.reward[:b] - scores.reward[b:]
            for i, p in enumerate(batch):
                if not p.pair.tie:
                    counted["overall"] += 1
                    correct["overall"] += int(float(reward_margin[i]) > 0)
    model.train(was_training)
    out = {f"acc/{k}": correct[k] / counted[k] for k in correct if counted[k]}
    out.update({f"n/{k}": float(v) for k, v in counted.items()})
    return out


# ---------------------------------------------------------------------------------------------- model I/O


def build_model(init: JRMModelInit) -> Any:
    """The JRM to start from (see :class:`JRMModelInit`)."""
    from reward.jrm.model import JRM

    init.require_choice()
    if init.checkpoint:
        return JRM.from_pretrained(init.checkpoint)
    if init.backbone:
        return JRM.from_backbone(init.backbone)
    return JRM.build_tiny(
        seed=init.tiny_seed,
        config=tiny_jrm_config(init),
        hidden_size=init.tiny_hidden_size,
        num_layers=init.tiny_num_layers,
        vision_hidden_size=init.tiny_vision_hidden_size,
        vision_depth=init.tiny_vision_depth,
    )


def tiny_jrm_config(init: JRMModelInit) -> Any:
    """The :class:`JRMConfig` of a tiny JRM: head width from ``init``; image budget ``tiny_image_side``^2 if set."""
    from reward.jrm.model import JRMConfig
    from reward.jrm.tiny import TINY_JRM_MAX_PIXELS, TINY_JRM_MIN_PIXELS

    init.validate()
    side = init.tiny_image_side
    min_pixels, max_pixels = (TINY_JRM_MIN_PIXELS, TINY_JRM_MAX_PIXELS) if side is None else (side * side, side * side)
    return JRMConfig(
        head_mlp_size=init.tiny_head_mlp_size, min_pixels=min_pixels, max_pixels=max_pixels, max_region_index=7,
        prompt=init.tiny_prompt,
    )


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _rng_state() -> tuple[dict[str, torch.Tensor], Any]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = st
    return tensors, random.getstate()


def _restore_rng(tensors: dict[str, torch.Tensor], python_state: Any) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    out_dir: Path,
    save_model: Callable[[Path], None],
    optimizer_state: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    sampler: PairBatchSampler,
    step: int,
    extra: dict[str, Any],
) -> Path:
    """Write ``<out_dir>/step_<N>`` atomically (a temporary directory renamed into place).

    save_model(dir) writes the full model with ``JRM.save_pretrained``; optimizer_state is the full,
    name-keyed optimizer state (:meth:`ParallelPlan.full_state`).
    """
    final = out_dir / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = out_dir / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(tmp / "model")
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state)
    atomic_save_safetensors(tmp / "optimizer.safetensors", opt_tensors)
    rng_tensors, python_rng = _rng_state()
    atomic_save_safetensors(tmp / "rng.safetensors", rng_tensors)
    atomic_write_json(
        tmp / "trainer_state.json",
        {
            "step": step,
            "sampler": sampler.state_dict(),
            "scheduler": scheduler.state_dict(),
            "optimizer": opt_meta,
            "python_rng": python_rng,
            **extra,
        },
    )
    atomic_replace_dir(tmp, final)
    return final


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints under ``out_dir``, oldest first."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))


def _prune(out_dir: Path, keep: int) -> None:
    for old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)


def resolve_resume(cfg: JRMTrainConfig) -> Path | None:
    """The checkpoint to resume from: ``resume`` = "auto" (latest, if any), "never", or a directory."""
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        found = list_checkpoints(Path(cfg.output_dir) / "checkpoints")
        return found[-1] if found else None
    path = Path(cfg.resume)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(f"resume: {path} is not a checkpoint directory (no trainer_state.json)")
    return path


# --------------------------------------------------------------------------------------------------- data


def load_training_data(cfg: JRMDataConfig, seed: int) -> tuple[list[PreferencePair], list[PreferencePair], list[str]]:
    """(train pairs, held-out pairs, report lines), with rationales joined in when configured."""
    if not cfg.train_pairs:
        raise ConfigError("data.train_pairs: a preference-pair file is required")
    pairs, report = load_preference_pairs(
        cfg.train_pairs, cfg.image_root, on_error=cfg.on_error, image_check=cfg.image_check
    )
    lines = [report.summary()]
    if cfg.held_out_pairs:
        held, held_report = load_preference_pairs(
            cfg.held_out_pairs, cfg.held_out_image_root, on_error=cfg.on_error, image_check=cfg.image_check
        )
        lines.append(held_report.summary())
        train = pairs
    else:
        train, held = split_pairs(pairs, cfg.held_out_fraction, seed)
    if cfg.rationales:
        train, missing = attach_rationales(train, cfg.rationales)
        lines.append(f"rationales joined from {cfg.rationales}; {missing} side(s) without one")
    return train, held, lines


#: Upper bound on the chat-template tokens around the prompt (system turn, roles, vision markers, <|reward|>).
TEMPLATE_TOKEN_SLACK = 64


def sequence_length_bound(model: Any, pair: PreferencePair, max_pixels: int) -> int:
    """An upper bound on the token length of either side of ``pair`` (prompt, both images, rationale).

    Images contribute at most ``max_pixels / (patch_size * merge_size)^2`` tokens each; text is tokenized.
    """
    from reward.jrm.prompts import evaluation_prompt

    processor = model.image_processor
    pixels = min(max_pixels, model.config.max_pixels)
    image_tokens = pixels // (processor.patch_size * processor.merge_size) ** 2
    prompt = len(model.tokenizer(evaluation_prompt(pair.instruction, model.config.prompt))["input_ids"])
    rationale = max((len(model.tokenizer(t)["input_ids"]) for t in pair.rationales.values()), default=0)
    return prompt + 2 * image_tokens + rationale + TEMPLATE_TOKEN_SLACK


def drop_overlong(
    model: Any, pairs: Sequence[PreferencePair], max_seq_len: int, max_pixels: int
) -> tuple[list[PreferencePair], list[str]]:
    """(pairs whose length bound fits ``max_seq_len``, ids of the dropped ones)."""
    kept, dropped = [], []
    for pair in pairs:
        (kept if sequence_length_bound(model, pair, max_pixels) <= max_seq_len else dropped).append(pair)
    return kept, [p.record_id for p in dropped]


# ---------------------------------------------------------------------------------------------- the loop


Reporter = Callable[[dict[str, float]], None]


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
    from reward.jrm.objective import compute_loss

    device = torch.device(device)
    plan = ParallelPlan(cfg.strategy, world_size)
    is_main = rank == 0
    out_dir = Path(cfg.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    train_pairs, held_pairs, data_lines = load_training_data(cfg.data, cfg.seed)
    resume_from = resolve_resume(cfg)
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    start_init = JRMModelInit(checkpoint=str(resume_from / "model")) if resume_from else cfg.model
    model = build_model(start_init)
    train_pairs, dropped = drop_overlong(model, train_pairs, cfg.max_seq_len, cfg.data.max_pixels)
    if dropped:
        data_lines.append(f"dropped {len(dropped)} pair(s) longer than max_seq_len={cfg.max_seq_len}: {dropped[:5]}")
    sampler = PairBatchSampler(len(train_pairs), cfg.global_batch_size, cfg.seed)
    total_steps = cfg.epochs * sampler.batches_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    warmup_steps = math.ceil(cfg.warmup_ratio * total_steps)
    model.config.alpha = cfg.alpha  # saved with the checkpoint: how this JRM was trained
    model.to(device)
    model.train()
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    plan.prepare(model)
    params = [p for _, p in _trainable(model)]
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, cfg.min_lr_ratio)
    )
    step = 0
    history: list[dict[str, float]] = []
    wandb_id = None
    if resume_from is not None:
        state = json.loads((resume_from / "trainer_state.json").read_text())
        opt_state = unflatten_optimizer_state(load_file(resume_from / "optimizer.safetensors"), state["optimizer"])
        plan.load_optimizer(model, optimizer, opt_state)
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        _restore_rng(load_file(resume_from / "rng.safetensors"), state["python_rng"])
        step, history, wandb_id = state["step"], state.get("history", []), state.get("wandb_id")

    shadow: list[Any] = []  # fsdp: an unsharded CPU copy on rank 0, built once, that writes checkpoints

    def save_full_model(target: Path, model_state: dict[str, Any]) -> None:
        if not plan.sharded:
            model.save_pretrained(target)
            return
        if not shadow:
            shadow.append(build_model(start_init))
            shadow[0].config.alpha = cfg.alpha
        shadow[0].load_state_dict(model_state, strict=True)
        shadow[0].save_pretrained(target)

    run = None
    if is_main and cfg.wandb_mode != "disabled":
        import wandb

        run = wandb.init(
            project=cfg.wandb_project,
            name=cfg.wandb_run_name,
            mode=cfg.wandb_mode,
            dir=str(out_dir),
            id=wandb_id,
            resume="allow",
            config={"yaml": to_yaml(cfg)},
        )
        wandb_id = run.id
    if is_main:
        for line in data_lines:
            tqdm.write(line)
    evaluates = is_main or plan.sharded  # sharded forwards are collectives: every worker evaluates
    held_loaded = [load_images(p, cfg.data.max_pixels) for p in held_pairs] if evaluates else []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.precision == "bf16")
    accumulation = cfg.grad_accumulation_steps
    bar = tqdm(total=total_steps, initial=step, desc="jrm", unit="step", disable=not (is_main and cfg.progress_bar))
    last_metrics: dict[str, float] = {}
    while step < total_steps:
        shard = PairBatchSampler.shard(sampler.next_batch(), rank, world_size)
        optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "rank": 0.0, "lm": 0.0}
        for m in range(accumulation):
            micro = shard[m * cfg.per_device_batch_size : (m + 1) * cfg.per_device_batch_size]
            loaded = [load_images(train_pairs[i], cfg.data.max_pixels) for i in micro]
            plan.set_gradient_sync(model, last_micro_batch=m == accumulation - 1)
            with autocast:
                out = compute_loss(model, loaded, cfg.alpha)
            if not torch.isfinite(out.total):
                raise FloatingPointError(f"non-finite loss at step {step} (records {[p.pair.record_id for p in loaded]})")
            (out.total / accumulation).backward()
            sums["loss"] += float(out.total.detach()) / accumulation
            sums["rank"] += float(out.rank) / accumulation
            sums["lm"] += float(out.lm) / accumulation
        plan.reduce_gradients(params)
        grad_norm = as_local_tensor(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"non-finite gradient norm at step {step}")
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)
        metrics = {
            "train/loss": sums["loss"],
            "train/rank_loss": sums["rank"],
            "train/lm_loss": sums["lm"],
            "train/grad_norm": float(grad_norm),
            "train/lr": scheduler.get_last_lr()[0],
            "epoch": float(sampler.state.epoch),
        }
        boundary = step == total_steps
        if evaluates and held_loaded and (step % cfg.eval_every_steps == 0 or boundary):
            with plan.gathered(model):
                accuracy = pairwise_accuracy(model, held_loaded, cfg.eval_batch_size)
            metrics.update({f"eval/{k}": v for k, v in accuracy.items()})
            history.append({"step": float(step), **{k: v for k, v in metrics.items() if k.startswith("eval/")}})
            bar.set_postfix(acc=f"{metrics.get('eval/acc/overall', float('nan')):.3f}")
        if run is not None:
            run.log(metrics, step=step)
        if is_main:
            with (out_dir / "train_log.jsonl").open("a", encoding="utf-8") as log:
                log.write(json.dumps({"step": step, **metrics}) + "\n")
        last_metrics = metrics
        if step % cfg.checkpoint_every_steps == 0 or boundary:
            model_state, optimizer_state = plan.full_state(model, optimizer)  # a collective under fsdp
            if is_main:
                save_checkpoint(
                    ckpt_dir,
                    lambda target, state=model_state: save_full_model(target, state),
                    optimizer_state,
                    scheduler,
                    sampler,
                    step,
                    {"history": history, "wandb_id": wandb_id},
                )
                _prune(ckpt_dir, cfg.keep_checkpoints)
        if report is not None and (step % cfg.eval_every_steps == 0 or boundary):
            report({"step": float(step), **metrics})
    bar.close()
    model_state, _ = plan.full_state(model, optimizer)
    if not is_main:
        return {}
    final_dir = out_dir / "final"
    tmp = out_dir / ".final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_full_model(tmp, model_state)
    atomic_replace_dir(tmp, final_dir)
    final = {"step": float(step), **last_metrics}
    atomic_write_json(out_dir / "metrics.json", {"final": final, "history": history})
    if run is not None:
        run.finish()
    return final


# ------------------------------------------------------------------------------------------------ Ray job


def _ray_worker_entry(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(max(1, int(config["threads"])))
    ctx = ray.train.get_context()
    run_worker(
        config["cfg"],
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        report=ray.train.report,
    )


def with_absolute_paths(cfg: JRMTrainConfig) -> JRMTrainConfig:
    """A copy with every path resolved against the driver's working directory (Ray workers may run elsewhere)."""

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else path

    data = replace(
        cfg.data,
        train_pairs=absolute(cfg.data.train_pairs) or "",
        image_root=absolute(cfg.data.image_root),
        held_out_pairs=absolute(cfg.data.held_out_pairs),
        held_out_image_root=absolute(cfg.data.held_out_image_root),
        rationales=absolute(cfg.data.rationales),
    )
    model = replace(cfg.model, checkpoint=absolute(cfg.model.checkpoint), backbone=absolute(cfg.model.backbone))
    resume = cfg.resume if cfg.resume in ("auto", "never") else absolute(cfg.resume) or cfg.resume
    return replace(cfg, data=data, model=model, output_dir=absolute(cfg.output_dir) or "", resume=resume)


def train_jrm(cfg: JRMTrainConfig) -> TrainResult:
    """Run stage-1 training as a Ray Train ``TorchTrainer`` job; returns the final checkpoint and metrics."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg.model.require_choice()
    if not cfg.data.train_pairs:
        raise ConfigError("data.train_pairs: a preference-pair file is required")
    cfg = with_absolute_paths(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "config.json", {"yaml": to_yaml(cfg)})
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(
            include_dashboard=False,
            num_cpus=max(2, math.ceil(cfg.num_workers * cfg.resources_per_worker_cpu) + 1),
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        )
    trainer = TorchTrainer(
        _ray_worker_entry,
        train_loop_config={"cfg": cfg, "threads": max(1, int(cfg.resources_per_worker_cpu))},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.resources_per_worker_cpu},
        ),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(name="jrm_train", storage_path=str(out_dir / "ray")),
    )
    try:
        trainer.fit()
    finally:
        if started_ray:
            ray.shutdown()
    metrics = json.loads((out_dir / "metrics.json").read_text())["final"]
    return TrainResult(checkpoint_dir=str(out_dir / "final"), metrics=metrics)
