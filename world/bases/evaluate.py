"""Measure built bases against issue 13's targets: ``python -m world.bases.evaluate --bases DIR [--jrm-steps N]``.

Policy base: held-out oracle IF / VQ / edit success of its ODE edits under the demo's sampling settings (:func:`world.evaluate.oracle_scores_of_policy`
on the ``heldout`` split, the demo's), the IF histogram, and the within-group spread GRPO's advantages need: for
``groups`` tasks, ``group_size`` SDE samples each (the demo's sampling settings), the mean over tasks of the
standard deviation of their oracle IF, the share of groups whose IF differs at all (the others give GRPO no
advantage), and the mean best IF of a group: the IF the policy would reach if RL only taught it to pick the best of
the edits it already samples, an estimate of the headroom RL has without learning anything new. The target is a
held-out IF of 2.0-3.0 with real spread.

Backbone base (``--jrm-steps N`` > 0): a JRM is fine-tuned from it with :func:`reward.jrm.train.train_jrm` (the
demo's JRM section, ``alpha`` and ``learning_rate`` as given) on oracle-scored pairs of the ``pairs`` split with
RuleTeacher rationales, and its held-out pair accuracy (``pairs_eval`` split) is reported per dimension and
overall and per pair case (:func:`reward.metrics.pair_case`); ``--jrm-steps 0`` skips it. The target is an overall
accuracy of 0.85 (alpha 0.7). Whether the trained JRM reads the edit at all is probed on exact edits of held-out
tasks (:func:`edit_sensitivity`): how often its IF score ranks the exact target above the unchanged source, and
above the same target under another task's instruction.

Writes the figures to ``--out`` (JSON) and prints them.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from editrl.config import load_config, validate_tree
from editrl.io import atomic_write_json
from policies.base import RLPolicy
from reward.base import INSTRUCTION_FOLLOWING
from reward.jrm.model import JRM
from reward.jrm.train_config import JRMTrainConfig
from world.bases.config import REPO_ROOT, BasesConfig, load_bases_config
from world.bases.load import backbone_model_init, check_bases, load_policy_base
from world.demo.config import DemoConfig
from world.evaluate import oracle_scores_of_policy, score_images
from world.render import to_pil
from world.tasks import EditTask, make_tasks


@dataclass
class PolicyBaseFigures:
    """Held-out oracle means of ODE edits, the IF histogram (score -> count) and the SDE within-group IF spread."""

    n_heldout: int
    oracle_if: float
    oracle_vq: float
    oracle_edit_success: float
    if_histogram: dict[int, int]
    groups: int
    group_size: int
    sde_if_mean: float
    sde_if_within_group_std: float
    sde_share_groups_with_spread: float
    sde_if_best_of_group: float


def within_group_std(scores: np.ndarray) -> float:
    """(groups, group_size) -> mean over groups of the population std within each group."""
    return float(scores.std(axis=1).mean())


def share_with_spread(scores: np.ndarray) -> float:
    """(groups, group_size) -> share of groups whose scores are not all equal."""
    return float((scores.max(axis=1) > scores.min(axis=1)).mean())


def best_of_group(scores: np.ndarray) -> float:
    """(groups, group_size) -> mean over groups of the best score in the group."""
    return float(scores.max(axis=1).mean())


def policy_figures(policy: RLPolicy, n_heldout: int, groups: int, group_size: int, image_size: int, seed: int = 0) -> PolicyBaseFigures:
    """Held-out ODE edits scored by the oracle, and ``groups`` x ``group_size`` SDE samples' IF spread."""
    held = make_tasks("heldout", n_heldout, image_size)
    ode = oracle_scores_of_policy(policy, held, seed=seed)
    grouped = []
    for task in held[:groups]:
        generators = [torch.Generator().manual_seed(seed + 1000 + k) for k in range(group_size)]
        with torch.no_grad():
            rollout = policy.sample_with_logprob([to_pil(task.source_image)] * group_size, [task.instruction] * group_size,
                                                 generator=generators)
        images = [to_pil(image.permute(1, 2, 0).numpy()) for image in rollout.images]
        grouped.append(score_images([task] * group_size, images).instruction_following)
    sde = np.stack(grouped).astype(np.float64)
    return PolicyBaseFigures(
        n_heldout=len(held), oracle_if=float(ode.instruction_following.mean()),
        oracle_vq=float(ode.visual_quality.mean()), oracle_edit_success=float(ode.edit_success.mean()),
        if_histogram=dict(sorted(Counter(int(v) for v in ode.instruction_following).items())),
        groups=groups, group_size=group_size, sde_if_mean=float(sde.mean()), sde_if_within_group_std=within_group_std(sde),
        sde_share_groups_with_spread=share_with_spread(sde), sde_if_best_of_group=best_of_group(sde),
    )


def edit_sensitivity(model: JRM, tasks: Sequence[EditTask]) -> dict[str, float]:
    """Does a JRM read the edit and the instruction? On exact edits of ``tasks`` (at least 2): the share of tasks
    whose IF score ranks the exact target above the unchanged source (a no-op), and above the same target scored
    under the next task's instruction. 0.5 is a model blind to that input; 1.0 reads it on every task."""
    if len(tasks) < 2:
        raise ValueError(f"edit_sensitivity needs at least 2 tasks, got {len(tasks)}")
    sources = [to_pil(t.source_image) for t in tasks]
    targets = [to_pil(t.target_image) for t in tasks]
    instructions = [t.instruction for t in tasks]
    shifted = instructions[1:] + instructions[:1]
    with torch.no_grad():
        right = model.score(sources, targets, instructions).column(INSTRUCTION_FOLLOWING)
        no_op = model.score(sources, sources, instructions).column(INSTRUCTION_FOLLOWING)
        other = model.score(sources, targets, shifted).column(INSTRUCTION_FOLLOWING)
    return {"target_over_noop": float((right > no_op).double().mean()),
            "own_over_other_instruction": float((right > other).double().mean())}


def jrm_eval_config(bases_dir: Path, cfg: BasesConfig, demo: DemoConfig, work: Path, *, alpha: float, steps: int,
                    learning_rate: float, rank_warmup_steps: int = 0, n_train_tasks: int = 600) -> JRMTrainConfig:
    """The JRM run :func:`jrm_figures` trains: the demo's JRM section started from the backbone base, for exactly
    ``steps`` optimizer steps (the demo's epoch count is raised to ``steps`` so it never caps them), the compact
    prompt, data under ``work/pairs_<n_train_tasks>`` (one folder per pair set; rationales only when ``alpha`` > 0)."""
    data = work / f"pairs_{n_train_tasks}"
    jrm_cfg = dataclasses.replace(
        demo.jrm, model=backbone_model_init(bases_dir, cfg, head_mlp_size=demo.jrm.model.tiny_head_mlp_size),
        alpha=alpha, max_steps=steps, epochs=max(demo.jrm.epochs, steps), rank_warmup_steps=rank_warmup_steps,
        eval_every_steps=steps, learning_rate=learning_rate, prompt="compact",
        output_dir=str(work / f"jrm_alpha_{alpha:g}"), progress_bar=False, wandb_mode="disabled",
        data=dataclasses.replace(demo.jrm.data, train_pairs=str(data / "pairs.jsonl"),
                                 held_out_pairs=str(data / "pairs_eval.jsonl"),
                                 rationales=str(data / "rationales.jsonl") if alpha > 0 else None),
    )
    validate_tree(jrm_cfg)
    return jrm_cfg


def jrm_figures(bases_dir: Path, cfg: BasesConfig, demo: DemoConfig, work: Path, *, alpha: float, steps: int,
                learning_rate: float, rank_warmup_steps: int = 0, n_train_tasks: int = 600,
                n_eval_tasks: int = 60) -> dict[str, float]:
    """Fine-tune a JRM (:func:`jrm_eval_config`) on oracle pairs of ``n_train_tasks`` tasks with RuleTeacher
    rationales; its held-out accuracy and edit sensitivity."""
    from reward.jrm.train import train_jrm
    from world.data_files import WorldDataConfig, ensure_world_data
    from world.pairs import write_preference_pairs

    jrm_cfg = jrm_eval_config(bases_dir, cfg, demo, work, alpha=alpha, steps=steps, learning_rate=learning_rate,
                              rank_warmup_steps=rank_warmup_steps, n_train_tasks=n_train_tasks)
    held_out = Path(jrm_cfg.data.held_out_pairs)
    data = held_out.parent
    # training pairs and their rationales as a run's stage 1 builds them; the held-out pairs from their own split
    world = WorldDataConfig(build_if_missing=True, image_size=cfg.image_size, n_pair_tasks=n_train_tasks, n_instructions=1)
    ensure_world_data(world, str(data / "instructions.jsonl"), jrm_cfg)
    eval_tasks = make_tasks("pairs_eval", n_eval_tasks, cfg.image_size)
    if not held_out.is_file():
        write_preference_pairs(eval_tasks, data, seed=0, name=held_out.name)
    result = train_jrm(jrm_cfg)
    figures = {k.removeprefix("eval/"): float(v) for k, v in result.metrics.items() if k.startswith("eval/")}
    model = JRM.from_pretrained(result.checkpoint_dir)
    model.eval()
    sensitivity = edit_sensitivity(model, eval_tasks)
    return {**figures, **{f"sensitivity/{k}": v for k, v in sensitivity.items()}}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", type=Path, required=True, help="a folder written by python -m world.bases.build")
    parser.add_argument("--size", default="full", help="the build preset the bases were built from")
    parser.add_argument("--heldout", type=int, default=96)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--text-guidance-scale", type=float, default=None, help="CFG text scale (default: the demo's)")
    parser.add_argument("--image-guidance-scale", type=float, default=None, help="CFG image scale (default: the demo's)")
    parser.add_argument("--jrm-steps", type=int, default=0, help="fine-tune a JRM from the backbone for N steps (0: skip)")
    parser.add_argument("--jrm-alpha", type=float, default=0.7)
    parser.add_argument("--jrm-learning-rate", type=float, default=1e-3)
    parser.add_argument("--jrm-rank-warmup-steps", type=int, default=0,
                        help="train on L_rank alone for the first N JRM steps, then the joint loss")
    parser.add_argument("--jrm-train-tasks", type=int, default=600, help="tasks whose oracle pairs train the JRM")
    parser.add_argument("--work", type=Path, default=Path("runs/world_bases_eval"))
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: <work>/evaluation.json)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides the bases were built with")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_bases_config(args.size, args.overrides)
    check_bases(args.bases, cfg)
    start = time.perf_counter()
    demo = load_config(DemoConfig, REPO_ROOT / "configs" / "demo.yaml")
    sampling = {key: getattr(demo.rl.policy, key)
                for key in ("num_inference_steps", "noise_level", "text_guidance_scale", "image_guidance_scale", "cfg_range")}
    for key in ("text_guidance_scale", "image_guidance_scale"):
        if getattr(args, key) is not None:
            sampling[key] = getattr(args, key)
    # CFG's negative branches get the prompt the policy saw when its conditions were dropped
    policy = load_policy_base(args.bases, cfg, use_lora=False, negative_prompt=cfg.policy.uncond_prompt, **sampling)
    report: dict = {"bases": str(args.bases), "sampling": sampling, "policy": dataclasses.asdict(
        policy_figures(policy, args.heldout, args.groups, args.group_size, cfg.image_size))}
    if args.jrm_steps > 0:
        report["jrm"] = {"alpha": args.jrm_alpha, "steps": args.jrm_steps, "learning_rate": args.jrm_learning_rate,
                         "rank_warmup_steps": args.jrm_rank_warmup_steps, "train_tasks": args.jrm_train_tasks,
                         **jrm_figures(args.bases, cfg, demo, args.work, alpha=args.jrm_alpha, steps=args.jrm_steps,
                                       learning_rate=args.jrm_learning_rate,
                                       rank_warmup_steps=args.jrm_rank_warmup_steps,
                                       n_train_tasks=args.jrm_train_tasks)}
    report["wall_seconds"] = time.perf_counter() - start
    out = args.out or args.work / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    print(report)
    return report


if __name__ == "__main__":
    main()
