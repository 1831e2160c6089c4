"""The demo's stages, each on the real classes of this repository, in the order :mod:`launch.demo` runs them.

  1. world data: RL instruction JSONL (train split) and held-out tasks (a split no training stage uses);
  2. the policy RL starts from: the policy base of ``bases`` (metadata checked), or the tiny OmniGen2 policy
     pretrained here (autoencoder + flow matching), stopped while imperfect;
  3. preference pairs scored by the oracle, rationales from the RuleTeacher through ``annotate_pairs``, and
     one JRM per ``jrm_alphas`` by ``train_jrm`` (Ray Train);
  4. Flow-GRPO with the JRM of ``rl_reward_alpha`` as the reward (``run_flow_grpo``, Ray actors), then
     optionally the same run with the JRM of each ``ablation_rl_alphas`` entry as the reward (the paper's
     alpha = 0 arm) and with the oracle as the reward;
  5. held-out evaluation (:mod:`world.demo.heldout`), metrics (:mod:`world.demo.metrics`) and the report
     (:mod:`world.demo.report`).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from editrl.config import ConfigError, validate_tree
from editrl.io import atomic_write_bytes
from policies.omnigen2.config import OmniGen2PolicyConfig
from policies.omnigen2.guidance import GuidanceMode, guidance_mode
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from reward.jrm.analysis import SpectrumStats, collect_features, jrm_feature_fn, spectrum_stats
from reward.jrm.annotate import AnnotationSummary, annotate_pairs
from reward.jrm.data import load_images, load_preference_pairs
from reward.jrm.model import JRM
from reward.jrm.train import REPO_ROOT, TrainResult, train_jrm
from reward.jrm.train_config import JRMModelInit, JRMTrainConfig
from reward.registry import NOISE_KIND
from rl.controller import RunResult, run_flow_grpo
from world.bases.config import BasesConfig, load_bases_config
from world.bases.load import backbone_model_init, check_bases
from world.corruptions import Candidate
from world.demo.config import DemoConfig, alpha_key
from world.evaluate import oracle_scores_of_policy
from world.pairs import PairBuildReport, write_preference_pairs
from world.pretrain import PretrainResult, pretrain_policy
from world.registries import WORLD_ORACLE_KIND, world_hook_registry, world_reward_registry
from world.render import from_pil
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


def stage_world(cfg: DemoConfig, out: Path) -> list[EditTask]:
    """Write the RL instruction file; return the held-out tasks (their split is never trained on)."""
    size, types = cfg.world.image_size, cfg.world.edit_types
    write_instruction_jsonl(make_tasks("rl", cfg.n_rl_tasks, size, types), Path(cfg.rl.data.train_path).parent)
    heldout = make_tasks("heldout", cfg.eval.n_heldout, size, types)
    write_instruction_jsonl(heldout, out / "data" / "heldout")
    return heldout


def stage_pretrain(cfg: DemoConfig, out: Path) -> PretrainResult:
    """The policy base of ``cfg.bases`` after its metadata check (no losses: it was trained by the build), or a
    policy pretrained here into ``out/policy_pretrained``."""
    if cfg.bases is not None:
        bases = bases_config(cfg)
        check_bases(cfg.bases, bases, "policy")
        guided = guidance_mode(cfg.rl.policy.text_guidance_scale, cfg.rl.policy.image_guidance_scale) is not GuidanceMode.NONE
        if guided and cfg.rl.policy.negative_prompt != bases.policy.uncond_prompt:
            raise ConfigError(
                f"rl.policy.negative_prompt: CFG's negative branches must get the prompt the policy base was trained "
                f"with for dropped instructions ({bases.policy.uncond_prompt!r}), got {cfg.rl.policy.negative_prompt!r}"
            )
        return PretrainResult(Path(cfg.bases) / "policy", [], [])
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


def bases_config(cfg: DemoConfig) -> BasesConfig:
    """The build config ``cfg.bases`` must have been built from (preset ``bases_size``)."""
    bases = load_bases_config(cfg.bases_size)
    if bases.image_size != cfg.world.image_size:
        raise ConfigError(f"bases_size: preset {cfg.bases_size!r} builds {bases.image_size} px bases, but world.image_size is {cfg.world.image_size}")
    return bases


def jrm_model_init(cfg: DemoConfig) -> JRMModelInit:
    """Where every JRM starts: the backbone base of ``cfg.bases`` (its images at the side it was pretrained at,
    the head of ``jrm.model.tiny_head_mlp_size``), or ``jrm.model`` without bases."""
    if cfg.bases is None:
        return cfg.jrm.model
    bases = bases_config(cfg)
    check_bases(cfg.bases, bases, "backbone")
    return backbone_model_init(cfg.bases, bases, head_mlp_size=cfg.jrm.model.tiny_head_mlp_size)


def jrm_run_config(cfg: DemoConfig, out: Path, alpha: float) -> JRMTrainConfig:
    """The JRM run of ``alpha``: from :func:`jrm_model_init`, into ``out/jrm_alpha_<alpha>``. The backbone base
    is a tiny model too, so unless ``jrm.prompt`` is set it gets ``jrm.model.tiny_prompt`` (the paper's ~500-token
    prompt, a backbone's default, swamps a tiny model's image tokens and costs about 5x the time per step)."""
    prompt = cfg.jrm.model.tiny_prompt if cfg.bases is not None and cfg.jrm.prompt is None else cfg.jrm.prompt
    return replace(
        cfg.jrm,
        model=jrm_model_init(cfg),
        prompt=prompt,
        alpha=alpha,
        output_dir=str(out / f"jrm_alpha_{alpha_key(alpha)}"),
        wandb_run_name=f"demo-jrm-alpha-{alpha_key(alpha)}",
    )


def stage_jrm(cfg: DemoConfig, out: Path, alpha: float) -> TrainResult:
    """Train one JRM (:func:`jrm_run_config`); every alpha starts from the same model."""
    run_cfg = jrm_run_config(cfg, out, alpha)
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


def stage_rl(cfg: DemoConfig, policy_dir: Path, jrm_dir: str, output_dir: str | None = None) -> RunResult:
    """Flow-GRPO with the JRM in ``jrm_dir`` as the reward, through the world's registries (so ``rl.eval_hooks``
    may name ``world_oracle``), under ``output_dir`` (default ``rl.output_dir``)."""
    rl_cfg = replace(
        cfg.rl, policy=rl_policy_config(cfg, policy_dir), reward=replace(cfg.rl.reward, checkpoint=jrm_dir),
        output_dir=output_dir or cfg.rl.output_dir,
    )
    validate_tree(rl_cfg)
    return run_flow_grpo(rl_cfg, world_reward_registry(), hook_registry=world_hook_registry())


def ablation_rl_dir(out: Path, alpha: float) -> Path:
    """Where the ablation arm with the JRM of ``alpha`` as the reward writes its RL run: ``rl_alpha_<alpha>``."""
    return out / f"rl_alpha_{alpha_key(alpha)}"


def stage_rl_ablation(cfg: DemoConfig, policy_dir: Path, jrm_dir: str, out: Path, alpha: float) -> RunResult:
    """The paper's ablation arm: :func:`stage_rl` unchanged (policy base, seeds, settings) but with the JRM of
    ``alpha`` (in ``jrm_dir``) as the reward, under :func:`ablation_rl_dir`."""
    return stage_rl(cfg, policy_dir, jrm_dir, output_dir=str(ablation_rl_dir(out, alpha)))


#: diagnostic run name -> (the config switch that asks for it, its reward kind). The oracle reads the RL
#: instruction file (its checkpoint); the null reward needs no checkpoint.
DIAGNOSTIC_REWARDS = {"oracle_reward": ("oracle_reward_rl", WORLD_ORACLE_KIND), "null_reward": ("null_reward_rl", NOISE_KIND)}


def diagnostic_rl_dir(out: Path, name: str) -> Path:
    """Where the diagnostic run ``name`` (a :data:`DIAGNOSTIC_REWARDS` key) writes its RL run: ``rl_<name>``."""
    return out / f"rl_{name}"


def stage_rl_diagnostic(cfg: DemoConfig, policy_dir: Path, out: Path, name: str) -> RunResult:
    """Diagnostic: the same RL run (policy base, seeds, settings) with the reward of :data:`DIAGNOSTIC_REWARDS`
    ``name``: the world's oracle (an upper bound for any learned reward) or the null reward (a hash of the edit's
    pixels, blind to its quality: what the updates alone do to the policy)."""
    kind = DIAGNOSTIC_REWARDS[name][1]
    checkpoint = cfg.rl.data.train_path if kind == WORLD_ORACLE_KIND else None
    reward = replace(cfg.rl.reward, kind=kind, checkpoint=checkpoint)
    rl_cfg = replace(
        cfg.rl, policy=rl_policy_config(cfg, policy_dir), reward=reward, output_dir=str(diagnostic_rl_dir(out, name))
    )
    return run_flow_grpo(rl_cfg, world_reward_registry(), hook_registry=world_hook_registry())
