"""Build the toy bases: ``python -m world.bases.build --out DIR [--size reduced|full] [key=value ...]``.

Writes ``DIR/policy/`` (OmniGen2's folder layout), ``DIR/backbone/`` (a transformers Qwen3-VL folder) and
``DIR/build_info.json``; see :mod:`world.bases`. The stages run in the work folder ``.<DIR name>.work`` beside
``DIR``; each stage's folder appears there whole or not at all, and a rerun with the same stage config and
code revision reuses it (``--no-resume`` rebuilds). With ``--jobs 2`` the two stages train side by side in
worker processes, each writing its progress to ``<work folder>/<stage>.log``; the weights are the same as a
sequential build's. The work folder then replaces ``DIR`` in one rename.
``make world-bases`` runs ``--size full --out data/world_bases --jobs 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from editrl.checkpoints import write_dir_atomically
from editrl.config import ConfigError, validate_tree
from editrl.config_reference import sections_help
from editrl.io import atomic_replace_dir, atomic_write_json
from editrl.manifest import DamagedCheckpointError
from editrl.parent_watch import exit_with_parent
from world.bases.backbone import save_backbone, train_backbone, train_variety_phase
from world.bases.captions import caption_examples, comparison_examples
from world.bases.config import EVAL_TASK_START, PRESETS, BasesConfig, load_bases_config
from world.bases.metadata import (
    BASE_KINDS,
    BUILD_INFO_NAME,
    GitRevision,
    check_base,
    config_sha256,
    folder_bytes,
    git_revision,
    library_versions,
    write_base_metadata,
)
from world.bases.policy import pretrain_policy_base, save_policy_base
from world.tasks import make_tasks

REFERENCE = "docs/config-reference.md#pretrained-toy-bases-python--m-worldbasesbuild"


@dataclass
class BuildReport:
    """What a build did: the output folder, each base's size in bytes, the stages reused from the work folder,
    each stage's wall seconds (those that ran) and each base's training summary (``world_base.json``)."""

    out_dir: Path
    sizes_bytes: dict[str, int]
    reused: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, dict[str, Any]] = field(default_factory=dict)


def work_dir_of(out: Path) -> Path:
    """The work folder of output folder ``out`` (beside it, so the final rename stays on one filesystem)."""
    return out.parent / f".{out.name}.work"


def _build_policy(cfg: BasesConfig, folder: Path, git: GitRevision, progress: bool) -> None:
    training = pretrain_policy_base(cfg, progress=progress)
    save_policy_base(training, folder)
    write_base_metadata(folder, "policy", cfg, git, {
        "vae_loss_first": training.vae_losses[0] if training.vae_losses else None,
        "vae_loss_last": training.vae_losses[-1] if training.vae_losses else None,
        "flow_loss_first": training.flow_losses[0] if training.flow_losses else None,
        "flow_loss_last": training.flow_losses[-1] if training.flow_losses else None,
        "heldout_flow_loss_init": training.eval_loss_init,
        "heldout_flow_loss_trained": training.eval_loss_trained,
    })


def _build_backbone(cfg: BasesConfig, folder: Path, git: GitRevision, progress: bool) -> None:
    section = cfg.backbone
    tasks = make_tasks("pretrain", section.n_tasks, cfg.image_size, cfg.edit_types)
    held_out = make_tasks("pretrain", cfg.eval_tasks, cfg.image_size, cfg.edit_types, start=EVAL_TASK_START)
    examples = caption_examples(tasks, section.no_change_fraction, section.seed, section.match_fraction)
    eval_examples = caption_examples(held_out, section.no_change_fraction, section.seed + 1, section.match_fraction)
    training = train_backbone(section, examples, eval_examples, cfg.image_size, progress=progress)
    figures = {
        "examples": len(examples),
        "loss_first": training.losses[0] if training.losses else None,
        "loss_last": training.losses[-1] if training.losses else None,
        "heldout_answer_loss_init": training.eval_loss_init,
        "heldout_answer_loss_trained": training.eval_loss_trained,
    }
    if section.variety.steps > 0:
        phase = section.variety
        varied = comparison_examples(tasks, section.seed, phase.describe_fraction, phase.context_fraction)
        varied_eval = comparison_examples(held_out, section.seed + 1, phase.describe_fraction, phase.context_fraction)
        training = train_variety_phase(section, training, varied, varied_eval, cfg.image_size, progress=progress)
        figures.update({
            "variety_examples": len(varied),
            "variety_loss_last": training.losses[-1] if training.losses else None,
            "variety_heldout_answer_loss_init": training.eval_loss_init,
            "variety_heldout_answer_loss_trained": training.eval_loss_trained,
        })
    save_backbone(training, folder)
    write_base_metadata(folder, "backbone", cfg, git, figures)


STAGES: dict[str, Callable[[BasesConfig, Path, GitRevision, bool], None]] = {
    "policy": _build_policy,
    "backbone": _build_backbone,
}


def _reusable(folder: Path, kind: str, cfg: BasesConfig, git: GitRevision) -> bool:
    if not folder.is_dir():
        return False
    try:
        check_base(folder, kind, cfg, git)
    except (ConfigError, DamagedCheckpointError, FileNotFoundError) as exc:
        tqdm.write(f"[bases] rebuilding {kind}: the work folder's copy does not match ({exc})")
        return False
    return True


def _refuse_foreign(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / BUILD_INFO_NAME).is_file())):
        raise FileExistsError(f"--out {out} exists and is not a bases folder (no {BUILD_INFO_NAME}); pick another one")


def _run_stage(kind: str, cfg: BasesConfig, folder: Path, git: GitRevision, progress: bool) -> float:
    """Train stage ``kind`` into ``folder`` (atomically) on ``cfg.threads`` threads; its wall seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        start = time.perf_counter()
        torch.manual_seed(0)  # nothing should draw from the global generator; if something does, it is seeded
        write_dir_atomically(folder, lambda tmp: STAGES[kind](cfg, tmp, git, progress))
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def _run_stage_logged(kind: str, cfg: BasesConfig, folder: Path, git: GitRevision, progress: bool, log: Path) -> float:
    """:func:`_run_stage` in a worker process, its progress bars and messages written to ``log``."""
    streams = sys.stdout, sys.stderr
    with log.open("w", buffering=1) as stream:
        sys.stderr = sys.stdout = stream
        try:
            return _run_stage(kind, cfg, folder, git, progress)
        finally:
            sys.stdout, sys.stderr = streams


def _run_stages(kinds: list[str], cfg: BasesConfig, work: Path, git: GitRevision, progress: bool, jobs: int) -> dict[str, float]:
    """Run the ``kinds`` stages, ``jobs`` at a time in worker processes when ``jobs`` > 1; their wall seconds.
    A failed stage fails the build after the others finish, so their folders stay in the work folder for a rerun."""
    if jobs <= 1 or len(kinds) <= 1:
        seconds = {}
        for kind in kinds:
            tqdm.write(f"[bases] {kind}: building")
            seconds[kind] = _run_stage(kind, cfg, work / kind, git, progress)
        return seconds
    context = multiprocessing.get_context("spawn")  # no forked copies of the parent's threads and torch state
    # a worker whose parent is killed (``kill PID``) stops instead of training on for nobody
    with ProcessPoolExecutor(max_workers=min(jobs, len(kinds)), mp_context=context,
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {}
        for kind in kinds:
            log = work / f"{kind}.log"
            tqdm.write(f"[bases] {kind}: building in a worker process; progress in {log}")
            futures[kind] = pool.submit(_run_stage_logged, kind, cfg, work / kind, git, progress, log)
        seconds, errors = {}, {}
        for kind, future in futures.items():
            try:
                seconds[kind] = future.result()
                tqdm.write(f"[bases] {kind}: done in {seconds[kind]:.0f} s")
            except Exception as exc:  # reported below, after the other stages finish
                errors[kind] = exc
    if errors:
        kind, exc = next(iter(errors.items()))
        raise RuntimeError(f"bases stage {kind!r} failed (log: {work / f'{kind}.log'}): {exc}") from exc
    return seconds


def build_bases(cfg: BasesConfig, out: str | Path, *, resume: bool = True, progress: bool = True,
                jobs: int = 1) -> BuildReport:
    """Build both bases into ``out`` (replaced as a whole at the end), ``jobs`` stages at a time; see the module
    docstring."""
    validate_tree(cfg)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out)
    _refuse_foreign(out)
    git, work = git_revision(), work_dir_of(out)
    work.mkdir(parents=True, exist_ok=True)
    report = BuildReport(out, {})
    pending = []
    for kind in BASE_KINDS:
        if resume and _reusable(work / kind, kind, cfg, git):
            tqdm.write(f"[bases] {kind}: reusing {work / kind} (same stage config and code revision)")
            report.reused.append(kind)
        else:
            pending.append(kind)
    report.seconds = _run_stages(pending, cfg, work, git, progress, jobs)
    for kind in BASE_KINDS:
        report.training[kind] = check_base(work / kind, kind, cfg, git)["training"]
        report.sizes_bytes[kind] = folder_bytes(work / kind)
    total = sum(report.sizes_bytes.values())
    if total > cfg.max_total_mb * 1e6:
        raise ValueError(
            f"max_total_mb: the bases take {total / 1e6:.2f} MB ({report.sizes_bytes} bytes), over the limit of "
            f"{cfg.max_total_mb} MB; the built stages stay in {work}"
        )
    for kind in BASE_KINDS:
        (work / f"{kind}.log").unlink(missing_ok=True)
    whole = dataclasses.asdict(cfg)
    atomic_write_json(work / BUILD_INFO_NAME, {
        "config": whole, "config_sha256": config_sha256(whole), "git_rev": git.rev, "git_dirty": git.dirty,
        "versions": library_versions(), "sizes_bytes": {**report.sizes_bytes, "total": total},
        "wall_seconds": report.seconds, "reused_stages": report.reused, "training": report.training,
    })
    atomic_replace_dir(work, out)
    return report


def main(argv: Sequence[str] | None = None) -> BuildReport:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=sections_help(BasesConfig, reference=REFERENCE),
    )
    parser.add_argument("--out", required=True, help="output folder (replaced as a whole when the build succeeds)")
    parser.add_argument("--size", choices=sorted(PRESETS), default="full", help="preset: configs/world_bases[_reduced].yaml")
    parser.add_argument("--config", default=None, help="another preset YAML (instead of --size)")
    parser.add_argument("--no-resume", action="store_true", help="rebuild every stage, even one the work folder has")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--jobs", type=int, default=1,
                        help="stages trained side by side in worker processes (2: policy and backbone at once)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. policy.flow_steps=100 backbone.seed=1")
    args = parser.parse_args(argv)
    cfg = load_bases_config(args.size, args.overrides, args.config)
    report = build_bases(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress, jobs=args.jobs)
    total = sum(report.sizes_bytes.values())
    print(f"bases in {report.out_dir}: {total / 1e6:.2f} MB ({report.sizes_bytes}); reused {report.reused or 'none'}")
    for kind, summary in report.training.items():
        print(f"  {kind}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return report


if __name__ == "__main__":
    main()
