"""Entry point: stage 1 (train JRM unless a checkpoint is given), then stage 2 (Flow-GRPO with it).

    ray job submit --working-dir . -- python launch/flow_grpo_jrm.py --config configs/omnigen2_jrm_32gpu.yaml
    python launch/flow_grpo_jrm.py --config configs/toy.yaml grpo.num_steps=3      # local Ray cluster
    python -m launch.flow_grpo_jrm --config configs/toy.yaml

The project is imported as installed (``pip install -e .``); under ``ray job submit --working-dir .`` Ray puts
the working directory first on the job's ``PYTHONPATH``, so the submitted code is what runs. The config is
loaded and validated (including ``train_jrm`` against ``reward.kind``) before Ray or any actor starts; a wrong
key or value exits with its name.

The schema is :class:`JobConfig`: the experiment (:class:`ExperimentConfig`, what ``rl`` runs and a checkpoint
records) plus ``world_data``. With ``world_data.build_if_missing`` (the toy preset) the toy world's data files
the run names are built when missing (:mod:`world.data_files`), after the config and kinds are checked and
before the preflight reads them; so ``configs/toy.yaml`` runs on a fresh clone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from editrl.config import ConfigError, load_config
from editrl.config_reference import sections_help
from editrl.manifest import DamagedCheckpointError
from reward.jrm.train_config import JRMTrainConfig
from rl.config import ExperimentConfig
from rl.data import InstructionDataError
from rl.preflight import check_kinds, preflight
from world.data_files import WorldDataConfig, ensure_world_data
from world.registries import world_hook_registry

#: Every key of the experiment config, its type and default (generated; a test keeps it current).
CONFIG_REFERENCE = "docs/config-reference.md"


@dataclass
class JobConfig(ExperimentConfig):
    """The whole run: stage 1 (JRM training, optional) and stage 2 (Flow-GRPO), as :class:`ExperimentConfig`,
    plus ``world_data`` (the toy world's data files, built when missing; off unless a preset turns it on).
    Only :meth:`experiment` reaches ``rl`` (and a checkpoint's ``config.yaml``)."""

    world_data: WorldDataConfig = field(default_factory=WorldDataConfig)

    def experiment(self) -> ExperimentConfig:
        """The experiment part (what runs, and what a checkpoint's ``config.yaml`` records)."""
        return ExperimentConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ExperimentConfig)})


def load_job_config(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()) -> JobConfig:
    """Defaults <- YAML preset chain <- ``key=value`` overrides, validated (errors name the key)."""
    return load_config(JobConfig, path, overrides)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=sections_help(JobConfig, reference=CONFIG_REFERENCE),
    )
    parser.add_argument("--config", required=True, help="experiment preset YAML (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. grpo.num_steps=3")
    return parser.parse_args(argv)


def stage1_runs(cfg: ExperimentConfig) -> bool:
    """Whether stage 1 trains a JRM: ``train_jrm`` and no ``reward.checkpoint`` given."""
    return cfg.train_jrm and not cfg.reward.checkpoint


def stage1_config(cfg: ExperimentConfig) -> JRMTrainConfig | None:
    """The JRM config stage 1 trains with (``alpha`` 0 for ``reward.kind=jrm_alpha0``), or None when it does not run."""
    if not stage1_runs(cfg):
        return None
    if cfg.reward.kind == "jrm_alpha0" and cfg.jrm.alpha != 0.0:
        return dataclasses.replace(cfg.jrm, alpha=0.0)
    return cfg.jrm


def run_stage1(cfg: ExperimentConfig) -> ExperimentConfig:
    """Train JRM (``cfg.jrm``) when asked to and no reward checkpoint is given; point the reward at it (an
    absolute path: the driver resolves ``jrm.output_dir``; on several nodes it is shared storage)."""
    jrm_cfg = stage1_config(cfg)
    if jrm_cfg is None:
        return cfg
    from reward.jrm.train import train_jrm

    result = train_jrm(jrm_cfg)
    logging.getLogger("editrl.launch").info("stage 1 done: %s %s", result.checkpoint_dir, result.metrics)
    return dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, checkpoint=str(result.checkpoint_dir)))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    hooks = world_hook_registry()  # the built-in eval hook kinds and the toy world's world_oracle
    try:
        job = load_job_config(args.config, args.overrides)
        cfg = job.experiment()
        check_kinds(cfg, hook_registry=hooks)  # a wrong kind fails before any world data is built
        ensure_world_data(job.world_data, cfg.data.train_path, stage1_config(cfg))
        # before stage 1, not after it; the resume check waits for stage 1 when it will set reward.checkpoint
        preflight(cfg, hook_registry=hooks, check_resume=not stage1_runs(cfg))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except (InstructionDataError, DamagedCheckpointError) as exc:
        print(f"input error: {exc}", file=sys.stderr)
        return 2
    from rl.controller import ensure_ray, run_flow_grpo
    from rl.shared_storage import alive_ray_nodes, require_shared_output

    ensure_ray(cfg.ray)
    if stage1_runs(cfg):
        try:  # the final JRM must reach the reward actors on every node: shared storage, checked from each
            require_shared_output(cfg.jrm.output_dir, cfg.jrm.shared_output_dir, alive_ray_nodes())
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
    cfg = run_stage1(cfg)
    result = run_flow_grpo(cfg, hook_registry=hooks)
    final = result.summaries[-1] if result.summaries else None
    print(
        json.dumps(
            {
                "output_dir": str(result.output_dir),
                "steps_completed": result.steps_completed,
                "adapter_version": result.adapter_version,
                "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
                "samples_per_second": result.samples_per_second,
                "final_reward_mean": final.reward_mean if final else {},
                "placement": result.placement,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
