"""Evaluate a policy (GEdit-Bench, ImgEdit-Bench) or a reward model (EditReward-Bench, TIGER's EditReward-Bench,
MMRB2 image editing) on a locally downloaded benchmark release; writes JSON and a markdown table.

    python launch/evaluate.py policy --bench gedit --data DIR --checkpoint OMNIGEN2_DIR [--lora DIR]
        [--judge-config configs/eval_judge_gpt41.yaml] [--set judge.openai.max_concurrency=4] [--out DIR]
    python launch/evaluate.py policy --bench gedit --data DIR --checkpoint runs/<run>/checkpoints/latest [--base DIR]
    python launch/evaluate.py reward --bench editreward_bench --data DIR --reward jrm --checkpoint JRM_DIR
    python launch/evaluate.py reward --bench mmrb2 --data DIR --reward judge --judge-config configs/eval_judge_gpt41.yaml
    python launch/evaluate.py self-correct --from runs/eval/gedit --jrm JRM_DIR [--config configs/eval_gedit.yaml]
        [--thresholds 7 6 5 4 3] [--loop N] [--out DIR]
    python launch/evaluate.py analyze --from runs/eval/gedit --checkpoint alpha0=DIR --checkpoint jrm=DIR
        [--device cuda --dtype bfloat16] [--out DIR]

``self-correct`` (JRM paper section 4.4, Table 3): the edits of a previous ``policy --bench gedit`` run (its
``--out``) whose VIEScore is below the thresholds are critiqued by JRM's language head and edited again by the
same policy with the instruction extended by the critique; JRM's score head and the judge score both
(:mod:`rl.benchmarks.self_correct`). ``--loop N`` runs RationalRewards' Generate-Critique-Refine loop instead:
N - 1 critique-and-refine rounds, the best of the N candidates by JRM score. ``analyze`` (section 4.3, Fig. 6):
h of several JRMs on the same policy outputs; spectrum, effective rank, spectral entropy, isotropy and a 3-D
PCA aligned by Procrustes (:mod:`reward.jrm.analysis`).

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

    fix = sub.add_parser("self-correct", help="critique low-scoring GEdit edits with JRM, re-edit, score before/after")
    fix.add_argument("--from", dest="eval_dir", required=True, help="the --out of a previous `policy --bench gedit` run")
    fix.add_argument("--jrm", required=True, help=f"JRM checkpoint directory (a training run's final/), or '{TINY}'")
    fix.add_argument("--data", default=None, help="the GEdit release (default: the one the run recorded)")
    fix.add_argument("--checkpoint", default=None, help="the policy (as for `policy`; default: the one the run recorded)")
    fix.add_argument("--lora", default=None)
    fix.add_argument("--base", default=None)
    fix.add_argument("--device", default="cpu", help="device of the policy and of JRM")
    fix.add_argument("--dtype", default="float32", help="dtype of the policy and of JRM (e.g. bfloat16)")
    fix.add_argument("--config", default=None, help="YAML preset of rl.benchmarks.config.PolicyBenchConfig (the judge)")
    fix.add_argument("--judge-config", default=None, help="YAML of reward.judges.config.JudgeConfig")
    fix.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a PolicyBenchConfig key (judge.*, parsing, edit.* on top of the recorded settings)")
    fix.add_argument("--thresholds", type=float, nargs="+", default=[7.0, 6.0, 5.0, 4.0, 3.0],
                     help="table rows: the items whose VIEScore is below each (the largest selects what is corrected)")
    fix.add_argument("--metric", choices=("O", "SC", "PQ"), default="O", help="the VIEScore metric thresholds refer to")
    fix.add_argument("--loop", type=int, default=None, metavar="N",
                     help="RationalRewards' test-time loop: N - 1 critique/refine rounds, best of N by JRM score (N >= 2)")
    fix.add_argument("--rejudge-before", action="store_true",
                     help="judge the original edits again with this judge for the Δ (selection uses the saved VIEScores)")
    fix.add_argument("--max-new-tokens", type=int, default=512, help="critique length (tokens per dimension)")
    fix.add_argument("--max-critique-chars", type=int, default=1000, help="critique cut to this many characters")
    fix.add_argument("--batch-size", type=int, default=1, help="edits per policy call")
    fix.add_argument("--jrm-batch-size", type=int, default=None, help="edits per JRM forward (default: the checkpoint's)")
    fix.add_argument("--out", default=None, help="output directory (default <--from>/self_correct or .../loop_<N>)")

    ana = sub.add_parser("analyze", help="representation analysis of h of several JRMs on the same policy outputs")
    ana.add_argument("--from", dest="eval_dir", required=True, help="the --out of a previous `policy --bench gedit` run")
    ana.add_argument("--checkpoint", action="append", required=True, metavar="NAME=DIR",
                     help="a JRM checkpoint, e.g. alpha0=DIR (repeat; the first is the Procrustes reference)")
    ana.add_argument("--data", default=None, help="the GEdit release (default: the one the run recorded)")
    ana.add_argument("--device", default="cpu")
    ana.add_argument("--dtype", default="float32", help="e.g. bfloat16 (statistics are computed in float64)")
    ana.add_argument("--batch-size", type=int, default=8)
    ana.add_argument("--max-items", type=int, default=None, help="the first N edits of the run")
    ana.add_argument("--out", default=None, help="output directory (default <--from>/analysis)")
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
        checkpoint=None if checkpoint == TINY else checkpoint, tiny=checkpoint == TINY, lora_checkpoint=lora,
        device=device, dtype=dtype,
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
        kind=kind, checkpoint=None if checkpoint == TINY else checkpoint, tiny=checkpoint == TINY, device=device,
        dtype=dtype, batch_size=batch_size,
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


def _load_jrm(checkpoint: str, device: str, dtype: str, batch_size: int | None = None):
    import torch

    from editrl.dtypes import torch_dtype
    from reward.jrm.model import JRM

    if checkpoint == TINY:
        model = JRM.build_tiny(seed=0)
        model.backbone.to(device=torch.device(device), dtype=torch_dtype(dtype))
        model.head.to(device=torch.device(device))
    else:
        model = JRM.from_pretrained(checkpoint, device=device, dtype=torch_dtype(dtype))
    if batch_size is not None:
        model.config.batch_size = batch_size
    return model


def _recorded_policy(settings: dict, args: argparse.Namespace):
    """The policy of ``--checkpoint`` (as for ``policy``), else the one the evaluated run recorded."""
    if args.checkpoint is not None:
        return _load_policy(args.checkpoint, args.lora, args.device, args.dtype, args.base)
    if args.lora is not None or args.base is not None:
        raise ConfigError("--lora / --base: only together with --checkpoint")
    if settings.get("rl_checkpoint"):
        return _load_policy(settings["rl_checkpoint"], None, args.device, args.dtype, settings.get("checkpoint"))
    if not settings.get("checkpoint"):
        raise ConfigError("the evaluated run recorded no policy checkpoint; pass --checkpoint")
    return _load_policy(settings["checkpoint"], settings.get("lora"), args.device, args.dtype)


def run_self_correct(args: argparse.Namespace):
    """``self-correct``: Table 3 (or the best-of-N loop) from a previous GEdit run's edits and VIEScores."""
    from reward.judges.config import JudgeConfig, build_judge
    from rl.benchmarks.config import PolicyBenchConfig, resolve_image_encoding
    from rl.benchmarks.gedit import GEditBenchmark
    from rl.benchmarks.saved_outputs import load_policy_outputs
    from rl.benchmarks.self_correct import SelfCorrectConfig, run_self_correction, write_self_correction

    if args.loop is not None and args.loop < 2:
        raise ConfigError(f"--loop: N must be >= 2 (the original and at least one refinement), got {args.loop}")
    saved = load_policy_outputs(args.eval_dir, args.data)
    recorded = saved.settings
    overrides = ["bench=gedit", f"data_dir={args.data or recorded.get('data_dir', '')}"]
    if args.config is None and recorded.get("parsing"):
        overrides.append(f"parsing={recorded['parsing']}")
    overrides += args.overrides
    cfg = load_config(PolicyBenchConfig, args.config, overrides)
    if args.judge_config is not None:
        judge_overrides = [o.removeprefix("judge.") for o in args.overrides if o.startswith("judge.")]
        cfg.judge = load_config(JudgeConfig, args.judge_config, judge_overrides)
    edit_keys = {o.split("=", 1)[0].removeprefix("edit.") for o in args.overrides if o.startswith("edit.")}
    edit_kwargs = {**saved.edit_kwargs, **{k: v for k, v in cfg.edit.as_kwargs().items() if k in edit_keys}}
    sc_cfg = SelfCorrectConfig(
        thresholds=tuple(args.thresholds), metric=args.metric,
        rounds=1 if args.loop is None else args.loop - 1, select="last" if args.loop is None else "best_jrm",
        max_new_tokens=args.max_new_tokens, max_critique_chars=args.max_critique_chars, batch_size=args.batch_size,
        rejudge_before=args.rejudge_before,
    )
    sc_cfg.validate()
    default_out = Path(args.eval_dir) / ("self_correct" if args.loop is None else f"loop_{args.loop}")
    out_dir = Path(args.out) if args.out is not None else default_out
    bench = GEditBenchmark(cfg.parsing, resolve_image_encoding("gedit", cfg.image_encoding))
    judge = build_judge(cfg.judge)
    policy, identity = _recorded_policy(recorded, args)
    jrm = _load_jrm(args.jrm, args.device, args.dtype, args.jrm_batch_size)
    settings = {
        "from": str(Path(args.eval_dir).resolve()), "jrm": args.jrm, "device": args.device, "dtype": args.dtype,
        "parsing": cfg.parsing, "judge_of_original": recorded.get("judge"), "policy": identity,
        "edits_dir": str(out_dir / "edits"),
    }
    result = run_self_correction(
        saved.edits, policy, jrm, bench, judge, sc_cfg, seed=saved.seed, edit_kwargs=edit_kwargs,
        edits_dir=out_dir / "edits", settings=settings,
    )
    if recorded.get("judge") not in (None, judge.name):
        result.notes.append(f"the original VIEScores were judged by {recorded.get('judge')!r}, the results by {judge.name!r}")
    write_self_correction(result, out_dir)
    return result


def run_analyze(args: argparse.Namespace) -> str:
    """``analyze``: h of each ``--checkpoint`` on a previous GEdit run's edits; spectra and aligned 3-D PCA."""
    from editrl.dtypes import torch_dtype
    from reward.jrm.analysis import compare_checkpoints, summary_lines
    from rl.benchmarks.saved_outputs import load_policy_outputs

    checkpoints: dict[str, str] = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint must be NAME=DIR, got {item!r}")
        if name in checkpoints:
            raise ConfigError(f"--checkpoint: the name {name!r} is given twice")
        checkpoints[name] = path
    saved = load_policy_outputs(args.eval_dir, args.data)
    edits = saved.edits[: args.max_items] if args.max_items is not None else saved.edits
    samples = [(s.item.load_source(), s.edit, s.item.instruction) for s in edits]
    out_dir = Path(args.out) if args.out is not None else Path(args.eval_dir) / "analysis"
    stats = compare_checkpoints(
        checkpoints, samples, out_dir, args.batch_size, device=args.device, dtype=torch_dtype(args.dtype),
        labels=[s.item.group for s in edits],
        settings={"from": str(Path(args.eval_dir).resolve()), "items": [s.item.key for s in edits],
                  "device": args.device, "dtype": args.dtype},
    )
    return "\n".join(summary_lines(stats))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.target == "self-correct":
            result = run_self_correct(args)
            print(result.to_markdown())
            return 0
        if args.target == "analyze":
            print(run_analyze(args))
            return 0
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
