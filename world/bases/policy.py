"""The policy base: the tiny OmniGen2-class editing policy, pretrained on the world's editing tasks.

The recipe is :mod:`world.pretrain`'s (fit the FLUX-style autoencoder on world images, then flow-match the
transformer on (source, instruction) -> target); this module picks the tasks of the build config and saves
the pipeline in OmniGen2's official folder layout (``transformer/``, ``vae/``, ``scheduler/``, ``mllm/``,
``processor/``, ``model_index.json``), which the ``omnigen2`` policy kind loads from ``policy.checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

from policies.settings import SamplingSettings
from world.bases.config import EVAL_TASK_START, BasesConfig
from world.pretrain import PolicyTraining, train_policy
from world.tasks import make_tasks


def sampling_settings(cfg: BasesConfig) -> SamplingSettings:
    """Sampling defaults of the pipeline while it is built (not saved: a loader sets its own)."""
    return SamplingSettings(
        num_inference_steps=8, noise_level=0.9, text_guidance_scale=1.0, image_guidance_scale=1.0,
        cfg_range=(0.0, 1.0), height=cfg.image_size, width=cfg.image_size,
    )


def pretrain_policy_base(cfg: BasesConfig, *, progress: bool = True) -> PolicyTraining:
    """Train the policy on ``policy.n_tasks`` tasks of the ``pretrain`` split; score the held-out flow loss on
    ``eval_tasks`` later ones before and after the transformer trains."""
    tasks = make_tasks("pretrain", cfg.policy.n_tasks, cfg.image_size, cfg.edit_types)
    eval_tasks = make_tasks("pretrain", cfg.eval_tasks, cfg.image_size, cfg.edit_types, start=EVAL_TASK_START)
    return train_policy(cfg.policy, tasks, sampling_settings(cfg), eval_tasks=eval_tasks, progress=progress)


def save_policy_base(training: PolicyTraining, folder: str | Path) -> None:
    """OmniGen2's official layout (written atomically by the pipeline's ``save_pretrained``)."""
    training.pipeline.save_pretrained(folder)
