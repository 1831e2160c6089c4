"""Evaluate a policy (GEdit-Bench, ImgEdit-Bench) or a reward model (EditReward-Bench, TIGER's EditReward-Bench,
MMRB2 image editing) on a locally downloaded benchmark release; writes JSON and a markdown table.

    python launch/evaluate.py policy --bench gedit --data DIR --checkpoint OMNIGEN2_DIR [--lora DIR]
        [--judge-config configs/eval_judge_gpt41.yaml] [--set judge.openai.max_concurrency=4] [--out DIR]
    python launch/evaluate.py policy --bench gedit --data DIR --checkpoint runs/<run>/checkpoints/latest [--base DIR]
    python launch/evaluate.py reward --bench editreward_bench --data DIR --reward jrm --checkpoint JRM_DIR
    python launch/evaluate.py reward --bench mmrb2 --data DIR --reward judge --judge-config configs/eval_judge_gpt41.yaml

``--checkpoint tiny`` builds the tiny random-config model (smoke tests). A policy ``--checkpoint`` (or ``--lora``)
may also be an RL run: its ``output_dir``, ``<output_dir>/checkpoints/step_<N>``, or ``.../checkpoints/latest``
(the newest); the policy is then rebuilt from that run's recorded config with the checkpoint's adapter
(:mod:`rl.run_checkpoint`), on the run's base model unless ``--base`` (or, with ``--lora``, ``--checkpoint``)
names another. Also runs as
``python -m launch.evaluate``; either way the project is imported as installed (``pip install -e .``).
``--reward`` takes the reward registry's kinds (:func:`reward.registry.default_registry`) or ``judge``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from editrl.config import ConfigError, load_config
from reward.registry import RewardModelConfig, build_reward_model, default_registry

if TYPE_CHECKING:
    from reward.benchmarks.report import BenchmarkReport

POLICY_BENCHES = ("gedit", "imgedit")
REWARD_BENCHES = ("editreward_bench", "tiger_editreward_bench", "mmrb2")
JUDGE = "judge"  # a VLM judge's VIEScore: not a reward model kind of the registry
TINY = "tiny"


def reward_choices() -> tuple[str, ...]:
    """What ``--reward`` accepts: the reward registry's kinds, then ``judge``."""
    return (*default_registry().names, JUDGE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="target", required=True)

    pol = sub.add_parser("policy", help="edit with the policy (ODE) and judge the edits with a VLM")
    pol.add_argument("--bench", choices=POLICY_BENCHES, required=True)
    pol.add_argument("--data", required=True, help="the downloaded benchmark release")
    pol.add_argument("--checkpoint", required=True,
                     help=f"OmniGen2 pipeline directory, '{TINY}', or an RL run directory / one of its checkpoints "
                          "(<run>/checkpoints/step_<N> or <run>/checkpoints/latest)")
    pol.add_argument("--lora", default=None,
                     help="LoRA adapter on --checkpoint: a peft / diffusers directory, or an RL run / checkpoint")
    pol.add_argument("--base", default=None,
                     help=f"with an RL --checkpoint: the OmniGen2 directory (or '{TINY}') instead of the run's own")
    pol.add_argument("--device", default="cpu")
    pol.add_argument("--dtype", default="float32")
    pol.add_argument("--config", default=None, help="YAML preset of rl.benchmarks.config.PolicyBenchConfig")
    pol.add_argument("--judge-config", default=None, help="YAML of reward.judges.config.JudgeConfig")
    pol.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a PolicyBenchConfig key, e.g. edit.text_guidance_scale=5.0 or judge.openai.model=gpt-4o")
    pol.add_argument("--max-items-per-group", type=int, default=None)
    pol.add_argument("--out", default=None, help="output directory (default runs/eval/<bench>)")

    rew = sub.add_parser("reward", help="preference accuracy of a reward model")
    rew.add_argument("--bench", choices=REWARD_BENCHES, required=True)
    rew.add_argument("--data", required=True, help="the downloaded benchmark release")
    rew.add_argument("--reward", choices=reward_choices(), required=True,
                     help="'judge' scores with a VLM judge's VIEScore (see --judge-config); its failures are excluded and counted")
    rew.add_argument("--checkpoint", default=None, help=f"reward model directory, or '{TINY}' (not used by 'judge')")
    rew.add_argument("--judge-config", default=None, help="YAML of reward.judges.config.JudgeConfig (for --reward judge)")
    rew.add_argument("--device", default="cpu")
    rew.add_argument("--dtype", default="float32")
    rew.add_argument("--batch-size", type=int, default=8)
    rew.add_argument("--max-items", type=int, default=None, help="first N pairs/groups (per subset for TIGER's)")
    rew.add_argument("--map", dest="dimension_map", action="append", default=[], metavar="BENCH_DIM=SCORE",
                     help="EditReward-Bench: which score answers a bench dimension, e.g. consistency=visual_quality")
    rew.add_argument("--score-field", default="reward", help="TIGER / MMRB2: the score that ranks candidates")
    rew.add_argument("--tie-threshold", type=float, default=None, help="TIGER 2-pair ties (default: calibrated)")
    rew.add_argument("--multi-image", choices=("concat", "first"), default="concat", help="MMRB2 several inputs")
    rew.add_argument("--out", default=None, help="output directory (default runs/eval/<bench>)")
    return parser


def _load_policy(checkpoint: str, lora: str | None, device: str, dtype: str, base: str | None = None):
    """(policy, settings): the policy to evaluate and what identifies it (recorded in the report)."""
    from policies.omnigen2 import build_pipeline
    from policies.omnigen2.config import OmniGen2PolicyConfig
    from rl.run_checkpoint import find_rl_checkpoint, load_rl_policy

    rl_checkpoint = find_rl_checkpoint(checkpoint) if checkpoint != TINY else None
    rl_lora = find_rl_checkpoint(lora) if lora is not None else None
    if rl_checkpoint is not None or rl_lora is not None:
        if rl_checkpoint is not None and lora is not None:
            raise ConfigError("--lora: an RL --checkpoint brings its own adapter; drop --lora (or pass the run as --lora)")
        if rl_lora is not None and base is not None:
            raise ConfigError("--base: with an RL run as --lora, the base is --checkpoint")
        source, base = (checkpoint, base) if rl_checkpoint is not None else (lora, checkpoint)
        loaded = load_rl_policy(
            source, base=None if base in (None, TINY) else base, tiny_base=base == TINY, device=device, dtype=dtype
        )
        base_dir = loaded.policy_config.checkpoint
        return loaded.policy, {
            "checkpoint": base_dir if base_dir is not None else TINY,
            "lora": None,
            "rl_checkpoint": str(loaded.checkpoint.resolve()),
            "rl_step": loaded.step,
        }
    if base is not None:
        raise ConfigError("--base: only with an RL run or checkpoint as --checkpoint")
    cfg = OmniGen2PolicyConfig(
        checkpoint=None if checkpoint == TINY else checkpoint, lora_checkpoint=lora, device=device, dtype=dtype,
    )
    cfg.validate()
    return build_pipeline(cfg), {"checkpoint": checkpoint, "lora": lora}


def _load_reward(args: argparse.Namespace):
    kind, checkpoint, device, dtype, batch_size = args.reward, args.checkpoint, args.device, args.dtype, args.batch_size
    if kind == JUDGE:
        from reward.judges.config import JudgeConfig, build_judge
        from reward.judges.reward_model import VIEScoreJudgeReward

        return VIEScoreJudgeReward(build_judge(load_config(JudgeConfig, args.judge_config)))
    if checkpoint is None:
        raise ConfigError(f"--checkpoint is required for --reward {kind} (a directory, or '{TINY}')")
    cfg = RewardModelConfig(
        kind=kind, checkpoint=None if checkpoint == TINY else checkpoint, device=device, dtype=dtype, batch_size=batch_size,
    )
    cfg.validate()
    return build_reward_model(cfg)


def run_policy(args: argparse.Namespace) -> BenchmarkReport:
    from editrl.io import atomic_write_json
    from reward.benchmarks.report import write_report
    from reward.judges.config import JudgeConfig, build_judge
    from rl.benchmarks.config import PolicyBenchConfig, resolve_image_encoding
    from rl.benchmarks.gedit import GEDIT_EN_SIZE, GEditBenchmark, load_gedit_bench
    from rl.benchmarks.imgedit import (
        IMGEDIT_BASIC_SIZE,
        ImgEditBenchmark,
        load_imgedit_bench,
        resolve_imgedit_prompts,
    )
    from rl.benchmarks.runner import evaluate_policy

    overrides = [f"bench={args.bench}", f"data_dir={args.data}", *args.overrides]
    if args.max_items_per_group is not None:
        overrides.append(f"max_items_per_group={args.max_items_per_group}")
    if args.out is not None:
        overrides.append(f"out_dir={args.out}")
    cfg = load_config(PolicyBenchConfig, args.config, overrides)
    if args.judge_config is not None:
        judge_overrides = [o.removeprefix("judge.") for o in args.overrides if o.startswith("judge.")]
        cfg.judge = load_config(JudgeConfig, args.judge_config, judge_overrides)
    out_dir = Path(cfg.out_dir) / cfg.bench if args.out is None else Path(cfg.out_dir)

    settings: dict = {"data_dir": cfg.data_dir}
    encoding = resolve_image_encoding(cfg.bench, cfg.image_encoding)
    settings.update(parsing=cfg.parsing, image_encoding=asdict(encoding))
    if cfg.bench == "gedit":
        bench, items = GEditBenchmark(cfg.parsing, encoding), load_gedit_bench(cfg.data_dir, cfg.language, cfg.max_items_per_group)
        settings["language"] = cfg.language
    else:
        prompts, source = resolve_imgedit_prompts(cfg.imgedit_prompts, cfg.data_dir)
        bench = ImgEditBenchmark(prompts, cfg.parsing, encoding)
        items = load_imgedit_bench(cfg.data_dir, cfg.max_items_per_group)
        settings["judge_prompts"] = source
    judge = build_judge(cfg.judge)
    policy, identity = _load_policy(args.checkpoint, args.lora, args.device, args.dtype, args.base)
    settings.update(identity)
    edit_kwargs = cfg.edit.as_kwargs()
    # Saved edits are reused only by a run with the same policy (an RL checkpoint by its resolved step directory,
    # so "latest" never reuses an older step's edits) and the same sampling settings.
    fingerprint = hashlib.sha256(
        json.dumps([identity, args.dtype, cfg.seed, sorted(edit_kwargs.items())], default=str, sort_keys=True).encode()
    ).hexdigest()[:12]
    settings["edits_dir"] = str(out_dir / "edits" / fingerprint)
    outcome = evaluate_policy(
        policy, bench, items, judge,
        seed=cfg.seed, batch_size=cfg.batch_size, edit_kwargs=edit_kwargs,
        edits_dir=out_dir / "edits" / fingerprint, reuse_edits=cfg.reuse_edits, settings=settings,
    )
    expected = GEDIT_EN_SIZE if cfg.bench == "gedit" and cfg.language == "en" else IMGEDIT_BASIC_SIZE
    if cfg.bench == "imgedit" or cfg.language == "en":
        if len(items) != expected:
            outcome.report.notes.append(f"evaluated {len(items)} of the benchmark's {expected} samples: not comparable to published numbers")
    write_report(outcome.report, out_dir)
    atomic_write_json(out_dir / f"{cfg.bench}_items.json", [asdict(o) for o in outcome.items])
    return outcome.report


def _dimension_map(pairs: list[str]) -> dict[str, str]:
    from reward.benchmarks.editreward_bench import default_dimension_map

    mapping = default_dimension_map()
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"--map {item!r} is not of the form BENCH_DIM=SCORE")
        key, value = item.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


def run_reward(args: argparse.Namespace) -> BenchmarkReport:
    from reward.benchmarks import editreward_bench, mmrb2, tiger_editreward_bench
    from reward.benchmarks.report import write_report

    common = {"batch_size": args.batch_size, "allow_failures": args.reward == JUDGE}
    if args.bench == "editreward_bench":
        bench_cfg = editreward_bench.EditRewardBenchConfig(
            dimension_map=_dimension_map(args.dimension_map), max_pairs=args.max_items, **common
        )
        bench_cfg.validate()
        data = editreward_bench.load_editreward_bench(args.data, args.max_items)
        report = editreward_bench.run_editreward_bench(_load_reward(args), data, bench_cfg)
    elif args.bench == "tiger_editreward_bench":
        tiger_cfg = tiger_editreward_bench.TigerBenchConfig(
            score_field=args.score_field, tie_threshold=args.tie_threshold, max_groups_per_subset=args.max_items, **common
        )
        tiger_cfg.validate()
        groups = tiger_editreward_bench.load_tiger_bench(args.data, args.max_items)
        report = tiger_editreward_bench.run_tiger_bench(_load_reward(args), groups, tiger_cfg)
    else:
        mmrb2_cfg = mmrb2.MMRB2Config(
            score_field=args.score_field, multi_image=args.multi_image, max_pairs=args.max_items, **common
        )
        mmrb2_cfg.validate()
        pairs = mmrb2.load_mmrb2_edit(args.data, args.max_items)
        report = mmrb2.run_mmrb2(_load_reward(args), pairs, mmrb2_cfg)
    report.settings.update({"reward": args.reward, "checkpoint": args.checkpoint, "data_dir": args.data})
    write_report(report, Path(args.out) if args.out else Path("runs/eval") / args.bench)
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = run_policy(args) if args.target == "policy" else run_reward(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(report.to_markdown())
    if report.n_items and report.n_failures == report.n_items:
        print("evaluate: error: every item failed (see the failures in the items JSON)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
