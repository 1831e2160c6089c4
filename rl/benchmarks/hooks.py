"""RL eval hooks: GEdit-Bench / ImgEdit-Bench on a fixed subset every K steps, with sample edits to log."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from policies.base import EditingPolicy
from reward.judges.base import Judge
from reward.judges.config import build_judge
from rl.benchmarks.base import EditItem, PolicyBenchmark
from rl.benchmarks.config import PolicyEvalHookConfig, resolve_image_encoding
from rl.benchmarks.gedit import GEditBenchmark, load_gedit_bench
from rl.benchmarks.imgedit import ImgEditBenchmark, load_imgedit_bench, resolve_imgedit_prompts
from rl.benchmarks.runner import evaluate_policy
from rl.hooks import EvalResult


def fixed_subset(items: Sequence[EditItem], per_group: int, seed: int) -> list[EditItem]:
    """Up to ``per_group`` items of each group, drawn once with ``seed`` (the same subset at every step)."""
    by_group: dict[str, list[EditItem]] = defaultdict(list)
    for item in items:
        by_group[item.group].append(item)
    rng = random.Random(seed)
    chosen: list[EditItem] = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda it: it.key)
        chosen += rng.sample(members, min(per_group, len(members)))
    return chosen


class PolicyBenchmarkHook:
    """:class:`rl.hooks.EvalHook` running a policy benchmark; metrics are ``<name>/overall`` (the headline
    metric), ``<name>/<metric>`` (over groups), ``<name>/<metric>/<group>`` and ``<name>/failures``."""

    def __init__(
        self,
        name: str,
        bench: PolicyBenchmark,
        items: Sequence[EditItem],
        judge: Judge,
        *,
        every_n_steps: int,
        seed: int = 0,
        batch_size: int = 1,
        num_images: int = 4,
        edit_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.every_n_steps = every_n_steps
        self.bench, self.items, self.judge = bench, list(items), judge
        self.seed, self.batch_size, self.num_images = seed, batch_size, num_images
        self.edit_kwargs = edit_kwargs or {}

    def __call__(self, policy: EditingPolicy, step: int) -> EvalResult:
        outcome = evaluate_policy(
            policy, self.bench, self.items, self.judge,
            seed=self.seed, batch_size=self.batch_size, edit_kwargs=self.edit_kwargs, settings={"step": step},
            keep_edits=self.num_images,
        )
        report = outcome.report
        metrics = {f"{self.name}/{m}": v for m, v in report.overall.items()}
        if self.bench.headline_metric in report.overall:
            metrics[f"{self.name}/overall"] = report.overall[self.bench.headline_metric]
        for g in report.groups:
            metrics.update({f"{self.name}/{m}/{g.name}": v for m, v in g.metrics.items()})
        for subset in report.subsets.values():
            metrics.update({f"{self.name}/{subset.name}/{m}": v for m, v in subset.overall.items()})
        metrics[f"{self.name}/failures"] = float(report.n_failures)
        images = [
            (f"{self.name} step {step} [{it.group}] {it.instruction}", outcome.edits[it.key])
            for it in self.items[: self.num_images]
        ]
        return EvalResult(metrics=metrics, images=images, n_items=report.n_items, n_failures=report.n_failures)


def build_policy_eval_hook(cfg: PolicyEvalHookConfig, judge: Judge | None = None) -> PolicyBenchmarkHook:
    """The hook described by ``cfg`` (the judge is built from ``cfg.judge`` unless given)."""
    cfg.validate()
    bench: PolicyBenchmark
    encoding = resolve_image_encoding(cfg.bench, cfg.image_encoding)
    if cfg.bench == "gedit":
        bench, items = GEditBenchmark(cfg.parsing, encoding), load_gedit_bench(cfg.data_dir, cfg.language)
    else:
        prompts, _ = resolve_imgedit_prompts(cfg.imgedit_prompts, cfg.data_dir)
        bench, items = ImgEditBenchmark(prompts, cfg.parsing, encoding), load_imgedit_bench(cfg.data_dir)
    return PolicyBenchmarkHook(
        cfg.bench,
        bench,
        fixed_subset(items, cfg.items_per_group, cfg.subset_seed),
        judge if judge is not None else build_judge(cfg.judge),
        every_n_steps=cfg.every_n_steps,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        num_images=cfg.num_images,
        edit_kwargs=cfg.edit.as_kwargs(),
    )
