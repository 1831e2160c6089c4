"""`make demo`: the whole method end to end on the toy world at CPU scale, with numbers a skeptic can check.

Stages (each on the real classes of this repository):
  1. world data: RL instruction JSONL (train split) and held-out tasks (a split no training stage uses);
  2. pretrain the tiny OmniGen2 policy (autoencoder + flow matching), stopped while imperfect;
  3. preference pairs scored by the oracle, rationales from the RuleTeacher through ``annotate_pairs``, and
     JRM trained with alpha = 0.7 and the alpha = 0 baseline by ``train_jrm`` (Ray Train);
  4. Flow-GRPO with the alpha = 0.7 JRM as the reward (``run_flow_grpo``, Ray actors);
  5. held-out evaluation of every RL checkpoint (ODE edits scored by the oracle), spectra of h, and
     ``report.md`` + ``metrics.json`` + PNG plots under ``output_dir``.

    python -m launch.demo --config configs/demo.yaml [key=value ...]
    python -m launch.demo --config configs/demo_smoke.yaml     # the same stages, reduced (< 5 minutes)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from editrl.config import load_config, validate_tree
from editrl.io import atomic_write_bytes, atomic_write_json
from policies.omnigen2.config import OmniGen2PolicyConfig, build_pipeline
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from reward.base import DEFAULT_DIMENSIONS, RewardModel
from reward.jrm.analysis import SpectrumStats, collect_features, jrm_feature_fn, plot_spectra, spectrum_stats
from reward.jrm.annotate import AnnotationSummary, annotate_pairs
from reward.jrm.data import load_images, load_preference_pairs
from reward.jrm.model import JRM, combine_dimensions
from reward.jrm.train import REPO_ROOT, TrainResult, train_jrm
from reward.registry import build_reward_model
from rl.checkpoint import list_checkpoints, load_checkpoint
from rl.controller import RunResult, run_flow_grpo
from world.config import DemoConfig
from world.corruptions import Candidate
from world.evaluate import PolicyEvaluation, evaluate_autoencoder, oracle_scores_of_policy
from world.pairs import PairBuildReport, write_preference_pairs
from world.pretrain import PretrainResult, pretrain_policy
from world.registries import WORLD_ORACLE_KIND, world_hook_registry, world_reward_registry
from world.render import from_pil, to_pil
from world.report import markdown_table, plot_curves, plot_sample_grid, write_markdown
from world.stats import PairedDifference, paired_bootstrap, pairwise_agreement
from world.tasks import EditTask, make_tasks, write_instruction_jsonl
from world.teacher import RuleTeacher

#: A file marking a directory as the demo's own (only such a directory is cleared on a rerun).
MARKER = ".editrl_demo"


@dataclass
class StageClock:
    """Wall seconds per stage, in order."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kwargs):
        tqdm.write(f"[demo] stage {len(self.seconds) + 1}: {name}")
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - start
        tqdm.write(f"[demo] stage {name} done in {self.seconds[name]:.1f}s")
        return out


def prepare_output_dir(path: Path) -> None:
    """Start from an empty directory: clear a previous demo run, refuse a foreign non-empty directory."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).is_file():
            raise FileExistsError(f"output_dir {path} is not empty and was not written by the demo; pick another one")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / MARKER, b"written by launch.demo; cleared on the next run\n")


def alpha_key(alpha: float) -> str:
    """``0.7`` -> ``"0.7"``, ``0.0`` -> ``"0"`` (the metric names' spelling)."""
    return f"{alpha:g}"


# ------------------------------------------------------------------------------------------------ stages


def stage_world(cfg: DemoConfig, out: Path) -> list[EditTask]:
    """Write the RL instruction file; return the held-out tasks (their split is never trained on)."""
    size, types = cfg.world.image_size, cfg.world.edit_types
    write_instruction_jsonl(make_tasks("rl", cfg.n_rl_tasks, size, types), Path(cfg.rl.data.train_path).parent)
    heldout = make_tasks("heldout", cfg.eval.n_heldout, size, types)
    write_instruction_jsonl(heldout, out / "data" / "heldout")
    return heldout


def stage_pretrain(cfg: DemoConfig, out: Path) -> PretrainResult:
    tasks = make_tasks("pretrain", cfg.pretrain.n_tasks, cfg.world.image_size, cfg.world.edit_types)
    return pretrain_policy(cfg.pretrain, tasks, out / "policy_pretrained", cfg.rl.policy.sampling_settings())


def policy_candidates(pipeline: OmniGen2EditPipeline, tasks: Sequence[EditTask], n_samples: int, seed: int) -> dict[str, list[Candidate]]:
    """``n_samples`` ODE edits per task from the pretrained policy (different noise seeds)."""
    out: dict[str, list[Candidate]] = {t.task_id: [] for t in tasks}
    for k in range(n_samples):
        result = oracle_scores_of_policy(pipeline, tasks, seed=seed + 100_003 * (k + 1))
        for task, image in zip(tasks, result.images):
            out[task.task_id].append(Candidate("policy", from_pil(image, task.size)))
    return out


@dataclass
class PairsOutcome:
    train: PairBuildReport
    held_out: PairBuildReport
    annotation: AnnotationSummary


def stage_pairs(cfg: DemoConfig, policy: OmniGen2EditPipeline) -> PairsOutcome:
    """Oracle-scored pairs (built-in candidates + the pretrained policy's edits) and RuleTeacher rationales."""
    size, types, p = cfg.world.image_size, cfg.world.edit_types, cfg.pairs
    reports = {}
    for name, split, n, path in (
        ("train", "pairs", p.n_train_tasks, cfg.jrm.data.train_pairs),
        ("held_out", "pairs_eval", p.n_eval_tasks, cfg.jrm.data.held_out_pairs),
    ):
        tasks = make_tasks(split, n, size, types)
        extra = policy_candidates(policy, tasks, p.policy_samples_per_task, cfg.seed)
        target = Path(path)
        reports[name] = write_preference_pairs(
            tasks, target.parent, seed=cfg.seed, pairs_per_task=p.pairs_per_task, tie_fraction=p.tie_fraction,
            extra_candidates=extra, extra_pairs_per_task=p.policy_pairs_per_task, name=target.name,
        )
        tqdm.write(f"[demo] {name} pairs: {reports[name].n_records} records ({reports[name].n_ties} ties)")
    pairs, load_report = load_preference_pairs(cfg.jrm.data.train_pairs)
    tqdm.write(f"[demo] {load_report.summary()}")
    annotation = annotate_pairs(pairs, RuleTeacher(), cfg.jrm.data.rationales, max_retries=0)
    tqdm.write(f"[demo] {annotation.summary()}")
    if annotation.written_rejected:
        raise RuntimeError(f"the RuleTeacher's answers failed validation: {annotation.rejection_reasons}")
    return PairsOutcome(reports["train"], reports["held_out"], annotation)


def stage_jrm(cfg: DemoConfig, out: Path, alpha: float) -> TrainResult:
    """Train one JRM; both alphas start from the same tiny random model (``jrm.model``, seeded by ``tiny_seed``)."""
    run_cfg = replace(
        cfg.jrm,
        alpha=alpha,
        output_dir=str(out / f"jrm_alpha_{alpha_key(alpha)}"),
        wandb_run_name=f"demo-jrm-alpha-{alpha_key(alpha)}",
    )
    validate_tree(run_cfg)
    return train_jrm(run_cfg)


def stage_jrms(cfg: DemoConfig, out: Path) -> dict[float, TrainResult]:
    """Train one JRM per alpha; with ``jrm_parallel`` the runs share one local Ray cluster and run at once
    (each is a one-worker Ray Train job pinned to ``resources_per_worker_cpu`` cores)."""
    if not cfg.jrm_parallel or len(cfg.jrm_alphas) == 1:
        return {alpha: stage_jrm(cfg, out, alpha) for alpha in cfg.jrm_alphas}
    import ray

    started = not ray.is_initialized()  # train_jrm joins a running cluster; start one sized for all runs at once
    if started:
        cpus = len(cfg.jrm_alphas) * cfg.jrm.num_workers * cfg.jrm.resources_per_worker_cpu
        ray.init(include_dashboard=False, num_cpus=math.ceil(cpus), runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    try:
        with ThreadPoolExecutor(max_workers=len(cfg.jrm_alphas), thread_name_prefix="jrm") as pool:
            futures = {alpha: pool.submit(stage_jrm, cfg, out, alpha) for alpha in cfg.jrm_alphas}
            return {alpha: future.result() for alpha, future in futures.items()}
    finally:
        if started:
            ray.shutdown()


def jrm_spectrum(checkpoint_dir: str, cfg: DemoConfig) -> SpectrumStats:
    """Singular spectrum of h over the preferred edits of the first held-out pairs."""
    pairs, _ = load_preference_pairs(cfg.jrm.data.held_out_pairs)
    samples = [load_images(p, cfg.jrm.data.max_pixels) for p in pairs[: cfg.eval.n_spectrum_samples]]
    model = JRM.from_pretrained(checkpoint_dir)
    return spectrum_stats(collect_features(jrm_feature_fn(model), samples, batch_size=cfg.jrm.eval_batch_size))


def rl_policy_config(cfg: DemoConfig, policy_dir: Path) -> OmniGen2PolicyConfig:
    return replace(cfg.rl.policy, checkpoint=str(policy_dir), lora_checkpoint=None)


def stage_rl(cfg: DemoConfig, policy_dir: Path, jrm_dir: str) -> RunResult:
    rl_cfg = replace(cfg.rl, policy=rl_policy_config(cfg, policy_dir), reward=replace(cfg.rl.reward, checkpoint=jrm_dir))
    validate_tree(rl_cfg)
    return run_flow_grpo(rl_cfg, world_reward_registry(), hook_registry=world_hook_registry())


def stage_rl_oracle(cfg: DemoConfig, policy_dir: Path, out: Path) -> RunResult:
    """Diagnostic: the same RL run with the world's oracle as the reward (an upper bound for any learned reward)."""
    reward = replace(cfg.rl.reward, kind=WORLD_ORACLE_KIND, checkpoint=cfg.rl.data.train_path)
    rl_cfg = replace(cfg.rl, policy=rl_policy_config(cfg, policy_dir), reward=reward, output_dir=str(out / "rl_oracle_reward"))
    return run_flow_grpo(rl_cfg, world_reward_registry(), hook_registry=world_hook_registry())


@dataclass
class RLEvaluation:
    """Held-out oracle scores at step 0 (the pretrained policy) and after each RL checkpoint.

    rewards: per step, the (n,) reward the RL reward model gives the same held-out edits (empty when none
    was scored) — set beside the oracle, it shows whether the policy learned what the reward model over-rates.
    group_agreement: the reward model's within-task agreement with the oracle before and after RL (empty
    when none was scored; see :func:`group_agreement`).
    """

    steps: list[int]
    results: list[PolicyEvaluation]
    rewards: list[np.ndarray] = field(default_factory=list)
    group_agreement: list[float] = field(default_factory=list)

    @property
    def before(self) -> PolicyEvaluation:
        return self.results[0]

    @property
    def after(self) -> PolicyEvaluation:
        return self.results[-1]

    def agreement(self, combine: str) -> list[float]:
        """Per step, :func:`pairwise_agreement` of the reward model with the oracle over the held-out edits."""
        return [pairwise_agreement(r, oracle_combined(res, combine)) for r, res in zip(self.rewards, self.results)]


def oracle_combined(result: PolicyEvaluation, combine: str) -> np.ndarray:
    """(n,) the oracle's IF and VQ combined the way the RL reward combines the reward model's."""
    mu = torch.tensor(np.stack([result.instruction_following, result.visual_quality], axis=1), dtype=torch.float32)
    return combine_dimensions(mu, DEFAULT_DIMENSIONS, combine).numpy()


#: Noise seeds of the within-task agreement edits start here, apart from the held-out edits' seeds.
GROUP_SEED_OFFSET = 100_000


def score_with_reward_model(reward_model: RewardModel, tasks: Sequence[EditTask], result: PolicyEvaluation, batch_size: int) -> np.ndarray:
    """(n,) rewards of the evaluated edits; a non-finite reward is an error naming the task."""
    rewards: list[float] = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start : start + batch_size]
        scores = reward_model.score(
            [to_pil(t.source_image) for t in chunk], result.images[start : start + len(chunk)], [t.instruction for t in chunk]
        )
        rewards.extend(scores.reward.tolist())
    values = np.asarray(rewards, dtype=np.float64)
    bad = [t.task_id for t, v in zip(tasks, values) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"reward model gave non-finite rewards for held-out tasks {bad[:5]}")
    return values


def group_agreement(cfg: DemoConfig, policy: OmniGen2EditPipeline, reward_model: RewardModel, tasks: Sequence[EditTask]) -> float:
    """Within-task :func:`pairwise_agreement` of the reward model with the oracle over ``eval.group_size`` ODE
    edits (different noise seeds) of each task: the comparison GRPO's group-relative advantages rest on."""
    repeated = [task for task in tasks for _ in range(cfg.eval.group_size)]
    result = oracle_scores_of_policy(policy, repeated, seed=cfg.eval.seed + GROUP_SEED_OFFSET)
    rewards = score_with_reward_model(reward_model, repeated, result, cfg.rl.reward.batch_size)
    groups = np.repeat(np.arange(len(tasks)), cfg.eval.group_size)
    return pairwise_agreement(rewards, oracle_combined(result, cfg.rl.reward.combine), groups)


def stage_eval(
    cfg: DemoConfig,
    policy_dir: Path,
    heldout: Sequence[EditTask],
    rl_dir: str | None = None,
    jrm_dir: str | None = None,
    pretrained: RLEvaluation | None = None,
) -> RLEvaluation:
    """ODE edits of the held-out tasks by the pretrained policy and by every RL adapter saved under ``rl_dir``;
    with ``jrm_dir``, each step's edits are also scored by that JRM (the RL reward), and its within-task
    agreement with the oracle is measured before and after RL. ``pretrained``: an evaluation of the same
    pretrained policy and JRM whose step 0 is reused instead of recomputed."""
    pipeline = build_pipeline(rl_policy_config(cfg, policy_dir))
    reward_model = build_reward_model(replace(cfg.rl.reward, checkpoint=jrm_dir)) if jrm_dir is not None else None
    group_tasks = heldout[: cfg.eval.group_tasks]
    with pipeline.adapter_disabled():
        steps, results = [0], [pretrained.before if pretrained is not None else oracle_scores_of_policy(pipeline, heldout, seed=cfg.eval.seed)]
        group_scores = pretrained.group_agreement[:1] if pretrained is not None else []
        if reward_model is not None and not group_scores:
            group_scores = [group_agreement(cfg, pipeline, reward_model, group_tasks)]
    checkpoints = list_checkpoints(rl_dir or cfg.rl.output_dir)
    for path in tqdm(checkpoints, desc="eval: RL checkpoints"):
        checkpoint = load_checkpoint(path)
        pipeline.load_adapter_state_dict(checkpoint.adapter)
        steps.append(checkpoint.state.step)
        results.append(oracle_scores_of_policy(pipeline, heldout, seed=cfg.eval.seed))
    evaluation = RLEvaluation(steps, results)
    if reward_model is not None:
        if checkpoints:  # the last checkpoint's adapter is loaded
            group_scores.append(group_agreement(cfg, pipeline, reward_model, group_tasks))
        reused = pretrained.rewards[:1] if pretrained is not None else []
        evaluation.rewards = reused + [
            score_with_reward_model(reward_model, heldout, r, cfg.rl.reward.batch_size) for r in results[len(reused) :]
        ]
        evaluation.group_agreement = group_scores
    return evaluation


# ------------------------------------------------------------------------------------------------ report


def score_deltas(cfg: DemoConfig, evaluation: RLEvaluation) -> dict[str, PairedDifference]:
    """Paired-bootstrap after-minus-before differences of the oracle's IF, VQ and edit success."""
    return {
        name: paired_bootstrap(
            getattr(evaluation.before, attr), getattr(evaluation.after, attr),
            n_resamples=cfg.eval.bootstrap_resamples, seed=cfg.seed,
        )
        for name, attr in (("oracle_if", "instruction_following"), ("oracle_vq", "visual_quality"), ("oracle_edit_success", "edit_success"))
    }


def _jrm_curves(result: TrainResult) -> dict[str, tuple[list[float], list[float]]]:
    log = Path(result.checkpoint_dir).parent / "train_log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {
        "total": ([r["step"] for r in rows], [r["train/loss"] for r in rows]),
        "rank": ([r["step"] for r in rows], [r["train/rank_loss"] for r in rows]),
        "lm": ([r["step"] for r in rows], [r["train/lm_loss"] for r in rows]),
    }


def collect_metrics(
    cfg: DemoConfig,
    evaluation: RLEvaluation,
    deltas: dict[str, PairedDifference],
    jrm: dict[float, TrainResult],
    spectra: dict[float, SpectrumStats],
    rl: RunResult,
    clock: StageClock,
    wall_seconds: float,
    roundtrip: PolicyEvaluation,
) -> dict[str, float]:
    before, after = evaluation.before, evaluation.after
    metrics: dict[str, float] = {
        "policy.autoencoder_roundtrip_if": float(roundtrip.instruction_following.mean()),
        "policy.autoencoder_roundtrip_vq": float(roundtrip.visual_quality.mean()),
        "policy.oracle_if_before": float(before.instruction_following.mean()),
        "policy.oracle_if_after": float(after.instruction_following.mean()),
        "policy.oracle_vq_before": float(before.visual_quality.mean()),
        "policy.oracle_vq_after": float(after.visual_quality.mean()),
        "policy.oracle_edit_success_before": float(before.edit_success.mean()),
        "policy.oracle_edit_success_after": float(after.edit_success.mean()),
        "policy.n_heldout": float(len(before.task_ids)),
        "rl.steps": float(rl.steps_completed),
        "wall_seconds": wall_seconds,
    }
    metrics.update(delta_metrics("policy", deltas))
    metrics.update(reward_model_metrics("rl", evaluation, cfg.rl.reward.combine))
    for alpha, result in jrm.items():
        key = f"jrm.alpha_{alpha_key(alpha)}"
        metrics[f"{key}.pair_acc"] = float(result.metrics["eval/acc/overall"])
        for dim in ("instruction_following", "visual_quality"):
            if f"eval/acc/{dim}" in result.metrics:
                metrics[f"{key}.pair_acc_{dim}"] = float(result.metrics[f"eval/acc/{dim}"])
        metrics[f"{key}.n_heldout_pairs"] = float(result.metrics.get("eval/n/overall", float("nan")))
        metrics[f"{key}.effective_rank"] = spectra[alpha].effective_rank
        metrics[f"{key}.isotropy"] = spectra[alpha].isotropy
    if rl.summaries:
        metrics["rl.reward_first"] = rl.summaries[0].reward_mean.get("reward", float("nan"))
        metrics["rl.reward_last"] = rl.summaries[-1].reward_mean.get("reward", float("nan"))
    for stage, seconds in clock.seconds.items():
        metrics[f"time.{stage}"] = seconds
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite demo metrics: {bad}")
    return metrics


def reward_model_metrics(prefix: str, evaluation: RLEvaluation, combine: str) -> dict[str, float]:
    """The JRM's mean reward on the held-out edits and its agreement with the oracle, before and after RL."""
    if not evaluation.rewards:
        return {}
    agreement = evaluation.agreement(combine)
    metrics = {
        f"{prefix}.heldout_jrm_reward_before": float(evaluation.rewards[0].mean()),
        f"{prefix}.heldout_jrm_reward_after": float(evaluation.rewards[-1].mean()),
    }
    # undefined (left out) when the oracle scores every edit it compares alike
    values = {"agreement": agreement}
    if evaluation.group_agreement:
        values["group_agreement"] = evaluation.group_agreement
    for name, series in values.items():
        for when, value in (("before", series[0]), ("after", series[-1])):
            if math.isfinite(value):
                metrics[f"{prefix}.jrm_oracle_{name}_{when}"] = value
    return metrics


def score_table(evaluation: RLEvaluation, combine: str) -> str:
    """Per RL step: held-out oracle IF, VQ, edit success and, when scored, the JRM's reward and agreement."""
    headers = ["RL step", "IF", "VQ", "edit success"]
    rows = [
        [step, float(r.instruction_following.mean()), float(r.visual_quality.mean()), float(r.edit_success.mean())]
        for step, r in zip(evaluation.steps, evaluation.results)
    ]
    if evaluation.rewards:
        headers += ["JRM reward", "JRM-oracle agreement"]
        for row, reward, agree in zip(rows, evaluation.rewards, evaluation.agreement(combine)):
            row += [float(reward.mean()), agree]
    return markdown_table(headers, [tuple(r) for r in rows])


def delta_metrics(prefix: str, deltas: dict[str, PairedDifference]) -> dict[str, float]:
    """``<prefix>.<name>_delta`` and its 95% interval ``_ci95_low`` / ``_ci95_high`` for every difference."""
    out: dict[str, float] = {}
    for name, diff in deltas.items():
        out[f"{prefix}.{name}_delta"] = diff.mean
        out[f"{prefix}.{name}_delta_ci95_low"] = diff.low
        out[f"{prefix}.{name}_delta_ci95_high"] = diff.high
    return out


def _group_agreement_text(cfg: DemoConfig, evaluation: RLEvaluation, n_heldout: int) -> str:
    if not evaluation.group_agreement:
        return ""
    before, after = evaluation.group_agreement[0], evaluation.group_agreement[-1]
    return (
        f"\n\nWithin-task JRM-oracle agreement ({cfg.eval.group_size} edits of each of the first "
        f"{min(cfg.eval.group_tasks, n_heldout)} held-out tasks, compared within the task as GRPO compares a group's "
        f"samples): before RL {before:.3f}, after {after:.3f}."
    )


def _oracle_section(oracle_run: tuple[RLEvaluation, dict[str, PairedDifference]] | None, combine: str) -> list[tuple[str, str]]:
    """Report section of the optional oracle-reward RL run (``oracle_reward_rl``)."""
    if oracle_run is None:
        return []
    evaluation, deltas = oracle_run
    d_if, d_vq = deltas["oracle_if"], deltas["oracle_vq"]
    text = (
        "The same RL run with the world's oracle as the reward (same policy, settings and combine), i.e. what a "
        f"perfect reward model would give: IF {d_if.mean:+.3f} [{d_if.low:+.3f}, {d_if.high:+.3f}], "
        f"VQ {d_vq.mean:+.3f} [{d_vq.low:+.3f}, {d_vq.high:+.3f}].\n\n"
    )
    return [("Diagnostic: RL with the oracle as the reward", text + score_table(evaluation, combine))]


def write_report(
    cfg: DemoConfig,
    out: Path,
    metrics: dict[str, float],
    heldout: Sequence[EditTask],
    evaluation: RLEvaluation,
    deltas: dict[str, PairedDifference],
    jrm: dict[float, TrainResult],
    spectra: dict[float, SpectrumStats],
    rl: RunResult,
    pretrain: PretrainResult,
    pairs: PairsOutcome,
    oracle_run: tuple[RLEvaluation, dict[str, PairedDifference]] | None = None,
) -> Path:
    plots = out / "plots"
    rewards = [(s.step + 1, s.reward_mean) for s in rl.summaries]
    plot_curves(plots / "rl_reward.png", {
        "JRM reward (mean over the round's samples)": {"reward": ([s for s, _ in rewards], [m.get("reward", float("nan")) for _, m in rewards])},
        "JRM per-dimension mean": {
            dim: ([s for s, _ in rewards], [m.get(dim, float("nan")) for _, m in rewards])
            for dim in ("instruction_following", "visual_quality")
        },
    }, xlabel="RL step")
    plot_curves(plots / "oracle_over_rl.png", {
        "held-out oracle score (1-4)": {
            "IF": (evaluation.steps, [float(r.instruction_following.mean()) for r in evaluation.results]),
            "VQ": (evaluation.steps, [float(r.visual_quality.mean()) for r in evaluation.results]),
        },
        "held-out edit success (fraction of changed pixels right)": {
            "edit success": (evaluation.steps, [float(r.edit_success.mean()) for r in evaluation.results]),
        },
        **({
            "JRM reward of the same held-out edits": {"JRM": (evaluation.steps, [float(r.mean()) for r in evaluation.rewards])},
            "JRM-oracle pairwise agreement (0.5 = chance)": {
                "agreement": (evaluation.steps, evaluation.agreement(cfg.rl.reward.combine)),
            },
        } if evaluation.rewards else {}),
    }, xlabel="RL step")
    plot_curves(plots / "jrm_loss.png", {
        f"JRM alpha={alpha_key(a)}": _jrm_curves(result) for a, result in jrm.items()
    }, xlabel="optimizer step")
    plot_curves(plots / "pretrain_loss.png", {
        "autoencoder (MSE + KL)": {"loss": (list(range(1, len(pretrain.vae_losses) + 1)), pretrain.vae_losses)},
        "flow matching (velocity MSE)": {"loss": (list(range(1, len(pretrain.flow_losses) + 1)), pretrain.flow_losses)},
    }, xlabel="optimizer step")
    plot_spectra({f"alpha={alpha_key(a)}": s for a, s in spectra.items()}, plots / "jrm_spectra.png", title="Singular spectrum of h (held-out edits)")
    rows = []
    for i, task in enumerate(heldout[: cfg.eval.n_grid_rows]):
        b, a = evaluation.before, evaluation.after
        caption = f"{task.instruction}\nIF {b.instruction_following[i]}->{a.instruction_following[i]}, VQ {b.visual_quality[i]}->{a.visual_quality[i]}"
        rows.append((caption, [to_pil(task.source_image), b.images[i], a.images[i], to_pil(task.target_image)]))
    plot_sample_grid(plots / "samples.png", rows, ["source", "before RL", "after RL", "target"])

    d_if, d_vq = deltas["oracle_if"], deltas["oracle_vq"]
    claims = [
        ("RL raises held-out oracle IF by >= 0.3", f"{d_if.mean:+.3f} [{d_if.low:+.3f}, {d_if.high:+.3f}]", d_if.mean >= 0.3),
        ("RL lowers held-out oracle VQ by <= 0.1", f"{d_vq.mean:+.3f} [{d_vq.low:+.3f}, {d_vq.high:+.3f}]", d_vq.mean >= -0.1),
        ("JRM (alpha=0.7) held-out pair accuracy >= 0.85", f"{metrics['jrm.alpha_0.7.pair_acc']:.3f}", metrics["jrm.alpha_0.7.pair_acc"] >= 0.85),
    ]
    jrm_rows = [
        (alpha_key(a), metrics[f"jrm.alpha_{alpha_key(a)}.pair_acc"],
         metrics.get(f"jrm.alpha_{alpha_key(a)}.pair_acc_instruction_following", float("nan")),
         metrics.get(f"jrm.alpha_{alpha_key(a)}.pair_acc_visual_quality", float("nan")),
         spectra[a].effective_rank, spectra[a].isotropy)
        for a in jrm
    ]
    kinds = sorted(pairs.train.kind_counts.items(), key=lambda kv: -kv[1])[:12]
    sections = [
        ("What this is", (
            "The toy world's end-to-end run of the method at CPU scale: a tiny OmniGen2-class policy pretrained "
            "with flow matching, JRM trained on oracle-scored preference pairs with RuleTeacher rationales "
            "(alpha = 0.7) and the alpha = 0 baseline, then Flow-GRPO with JRM as the reward on a local Ray "
            "cluster. Every number is measured against the oracle on held-out tasks (a seed range no training "
            f"stage uses; n = {len(heldout)}), with 95% paired-bootstrap intervals over tasks. Seed {cfg.seed}; "
            f"wall time {metrics['wall_seconds']:.0f} s."
        )),
        ("Claims, as measured", markdown_table(["claim", "measured", "holds"], [(c, m, "yes" if ok else "no") for c, m, ok in claims])),
        ("Policy on held-out tasks (oracle, 1-4)", score_table(evaluation, cfg.rl.reward.combine)
         + "\n\nJRM reward and JRM-oracle agreement: the RL reward model's score of the same held-out edits, and the "
           "share of edit pairs the oracle orders that the JRM orders the same way (0.5 = chance). A rising JRM "
           "reward with falling oracle scores or agreement is reward hacking."
         + _group_agreement_text(cfg, evaluation, len(heldout))
         + "\n\n![oracle over RL](plots/oracle_over_rl.png)\n\n![samples](plots/samples.png)"),
        ("RL reward (JRM alpha = 0.7)", f"{rl.steps_completed} rounds. ![reward](plots/rl_reward.png)"),
        ("JRM: alpha = 0.7 vs the alpha = 0 baseline", markdown_table(
            ["alpha", "held-out pair acc (overall)", "acc IF", "acc VQ", "effective rank of h", "isotropy"], jrm_rows)
         + f"\n\nHeld-out pairs: {pairs.held_out.n_records} ({pairs.held_out.n_ties} ties, excluded from the overall "
           f"accuracy). Train pairs: {pairs.train.n_records}; rationales: {pairs.annotation.written_ok} edits annotated, "
           f"{pairs.annotation.written_rejected} rejected.\n\n![JRM loss](plots/jrm_loss.png)\n\n![spectra](plots/jrm_spectra.png)"),
        *_oracle_section(oracle_run, cfg.rl.reward.combine),
        ("Pretraining", (
            "What the autoencoder leaves of a perfect edit: the held-out tasks' exact targets, encoded and decoded "
            f"by the policy's VAE, score IF {metrics['policy.autoencoder_roundtrip_if']:.3f} and VQ "
            f"{metrics['policy.autoencoder_roundtrip_vq']:.3f} (a reference, not a strict bound: the policy's "
            "latents need not be ones the encoder produces)."
            "\n\n![pretrain](plots/pretrain_loss.png)"
        )),
        ("Train pair kinds (most frequent)", markdown_table(["preferred>rejected", "count"], kinds)),
        ("Stage times (s)", markdown_table(["stage", "seconds"], [(k, v) for k, v in metrics.items() if k.startswith("time.")])),
    ]
    return write_markdown(out / "report.md", "editrl demo report", sections)


# ------------------------------------------------------------------------------------------------ driver


def run_demo(cfg: DemoConfig) -> dict[str, float]:
    """Run every stage; write ``metrics.json``, ``report.md`` and the plots; return the metrics."""
    torch.set_num_threads(cfg.threads_before_ray)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    prepare_output_dir(out)
    start = time.perf_counter()
    clock = StageClock()
    heldout = clock.run("world", stage_world, cfg, out)
    pretrain = clock.run("pretrain", stage_pretrain, cfg, out)
    base_policy = build_pipeline(replace(rl_policy_config(cfg, pretrain.checkpoint_dir), use_lora=False))
    roundtrip = evaluate_autoencoder(base_policy, heldout)
    pairs = clock.run("pairs", stage_pairs, cfg, base_policy)
    torch.set_num_threads(1)
    jrm = clock.run("jrm", stage_jrms, cfg, out)
    spectra = {alpha: jrm_spectrum(result.checkpoint_dir, cfg) for alpha, result in jrm.items()}
    rl = clock.run("rl", stage_rl, cfg, pretrain.checkpoint_dir, jrm[0.7].checkpoint_dir)
    evaluation = clock.run("eval", stage_eval, cfg, pretrain.checkpoint_dir, heldout, jrm_dir=str(jrm[0.7].checkpoint_dir))
    deltas = score_deltas(cfg, evaluation)
    # wall time of the method itself; the optional diagnostic below is timed on its own
    metrics = collect_metrics(cfg, evaluation, deltas, jrm, spectra, rl, clock, time.perf_counter() - start, roundtrip)
    oracle_run = None
    if cfg.oracle_reward_rl:
        oracle_rl = clock.run("rl_oracle_reward", stage_rl_oracle, cfg, pretrain.checkpoint_dir, out)
        oracle_eval = clock.run(
            "eval_oracle_reward", stage_eval, cfg, pretrain.checkpoint_dir, heldout, str(out / "rl_oracle_reward"),
            jrm_dir=str(jrm[0.7].checkpoint_dir), pretrained=evaluation,
        )
        oracle_run = (oracle_eval, score_deltas(cfg, oracle_eval))
        metrics.update(delta_metrics("diagnostic.oracle_reward", oracle_run[1]))
        metrics["diagnostic.oracle_reward.rl_steps"] = float(oracle_rl.steps_completed)
        metrics.update(reward_model_metrics("diagnostic.oracle_reward", oracle_eval, cfg.rl.reward.combine))
        metrics.update({f"time.{k}": v for k, v in clock.seconds.items() if k.endswith("oracle_reward")})
    write_report(cfg, out, metrics, heldout, evaluation, deltas, jrm, spectra, rl, pretrain, pairs, oracle_run)
    metrics["wall_seconds_total"] = time.perf_counter() - start
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "heldout_scores.json", {
        "task_ids": evaluation.before.task_ids,
        "steps": evaluation.steps,
        "instruction_following": [r.instruction_following.tolist() for r in evaluation.results],
        "visual_quality": [r.visual_quality.tolist() for r in evaluation.results],
    })
    return metrics


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml", help="demo preset (YAML, may name a base)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seed=1 eval.n_heldout=32")
    args = parser.parse_args(argv)
    # Ray workers run in other directories: every derived path must be absolute, so pin output_dir first.
    first = load_config(DemoConfig, args.config, args.overrides)
    cfg = load_config(DemoConfig, args.config, [*args.overrides, f"output_dir={Path(first.output_dir).resolve()}"])
    metrics = run_demo(cfg)
    width = max(len(k) for k in metrics)
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())))
    print(f"report: {Path(cfg.output_dir) / 'report.md'}")
    return metrics


if __name__ == "__main__":
    main()
