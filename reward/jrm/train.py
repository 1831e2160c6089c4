"""Stage 1: train the JRM on preference pairs with Ray Train (``TorchTrainer``, one worker per GPU).

Each optimizer step takes one global batch of pairs from a seeded, resumable sampler; every worker takes its
strided share and runs it in micro-batches of ``per_device_batch_size`` (gradient accumulation); gradients
are averaged across workers (:mod:`reward.jrm.parallel`: replicated "ddp" or sharded "fsdp"), clipped, and
AdamW steps with a cosine schedule after a linear warmup (:mod:`reward.jrm.schedule`). Held-out pairwise
accuracy (:mod:`reward.jrm.evaluation`) is computed every ``eval_every_steps`` and logged to wandb by rank 0,
which also writes checkpoints that resume exactly (:mod:`reward.jrm.checkpoints`: full model, optimizer,
scheduler, sampler position, RNG states); every step's metrics are appended to
``<output_dir>/train_log.jsonl``. The final model is saved with ``JRM.save_pretrained`` under
``<output_dir>/final`` so ``reward.registry`` can load it.

Checkpoints are our own (atomic, in ``<output_dir>/checkpoints``) rather than Ray's ``Checkpoint`` objects,
so a run resumes the same way in-process or on Ray (``resume: auto`` picks the latest). Ray Train gets the
metrics through ``ray.train.report``.

This module launches the Ray job (:func:`train_jrm`); :func:`reward.jrm.train_loop.run_worker` is the
per-worker loop (also callable in-process with ``world_size=1``, which is what the exact-resume test does).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from editrl.config import ConfigError, to_yaml
from editrl.io import atomic_write_json
from reward.jrm.annotate import AnnotationSummary
from reward.jrm.train_config import JRMDataConfig, JRMModelInit, JRMTrainConfig
from reward.jrm.train_data import load_pair_split, load_training_data
from reward.jrm.train_loop import run_worker

logger = logging.getLogger(__name__)

__all__ = ["JRMDataConfig", "JRMModelInit", "JRMTrainConfig", "TrainResult", "run_worker", "train_jrm"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TrainResult:
    """checkpoint_dir: the final ``JRM.save_pretrained`` directory; metrics: final held-out accuracies etc."""

    checkpoint_dir: str
    metrics: dict[str, float] = field(default_factory=dict)


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


def _check_pairs_before_ray(cfg: JRMTrainConfig) -> None:
    """Read every pair file once in the driver (records, columns, paths; images decode in the workers), so a
    malformed file, a wrong image root, or alpha > 0 without rationales fails before the cluster starts; logs
    the load report (with the rationale counts)."""
    quick = replace(cfg.data, image_check="exists" if cfg.data.image_check == "decode" else cfg.data.image_check)
    for line in load_training_data(quick, cfg.seed, cfg.alpha)[2]:
        logger.info("preference data: %s", line)


def run_annotation(cfg: JRMTrainConfig) -> AnnotationSummary | None:
    """``annotate.enabled``: have the configured teacher write ``data.rationales`` for the training pairs.

    Resumable (:func:`reward.jrm.annotate.annotate_pairs`): an existing file's finished edits are skipped, so a
    complete file costs one read and no teacher call. Rejected edits are counted in the returned summary (and
    logged); their pairs train without a rationale. None when the step is disabled.
    """
    if not cfg.annotate.enabled:
        return None
    from reward.jrm.annotate import annotate_pairs, pending_edits
    from reward.jrm.teachers.config import build_teacher

    job = cfg.annotate
    if job.teacher is None or not cfg.data.rationales:
        raise ConfigError("annotate.teacher and data.rationales: both are required when annotate.enabled")
    quick = replace(cfg.data, image_check="exists" if cfg.data.image_check == "decode" else cfg.data.image_check)
    train, _, _ = load_pair_split(quick, cfg.seed)
    if not pending_edits(train, cfg.data.rationales, job.retry_rejected):  # complete: no teacher (nor its key)
        summary = AnnotationSummary(out_path=cfg.data.rationales, already_done=2 * len(train))
        logger.info("annotation: %s", summary.summary())
        return summary
    teacher = build_teacher(job.teacher)
    try:
        summary = annotate_pairs(
            train, teacher, cfg.data.rationales, max_retries=job.max_retries, batch_size=job.batch_size,
            max_pixels=job.max_pixels, max_regions=job.max_regions, retry_rejected=job.retry_rejected,
            template=job.template, progress=cfg.progress_bar,
        )
    finally:
        close = getattr(teacher, "close", None)
        if callable(close):
            close()
    logger.info("annotation: %s", summary.summary())
    return summary


def train_jrm(cfg: JRMTrainConfig) -> TrainResult:
    """Run stage-1 training as a Ray Train ``TorchTrainer`` job; returns the final checkpoint and metrics."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg.model.require_choice()
    if not cfg.data.train_pairs:
        raise ConfigError("data.train_pairs: a preference-pair file is required")
    cfg = with_absolute_paths(cfg)
    run_annotation(cfg)
    _check_pairs_before_ray(cfg)
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
