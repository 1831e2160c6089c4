"""Held-out evaluation: ODE edits of a policy on world tasks, scored by the oracle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from policies.base import EditingPolicy
from policies.omnigen2.image_processing import pil_to_tensor
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from world.oracle import score_edit
from world.render import to_pil
from world.tasks import EditTask


@dataclass
class PolicyEvaluation:
    """Oracle scores of one policy on n tasks (same order as the tasks).

    instruction_following: (n,) int 1-4.  visual_quality: (n,) int 1-4.  edit_success: (n,) float in [0, 1].
    images: the n edited images.
    """

    task_ids: list[str]
    instruction_following: np.ndarray
    visual_quality: np.ndarray
    edit_success: np.ndarray
    images: list[Image.Image]

    def summary(self) -> dict[str, float]:
        return {
            "oracle_if": float(self.instruction_following.mean()),
            "oracle_vq": float(self.visual_quality.mean()),
            "oracle_edit_success": float(self.edit_success.mean()),
        }


def oracle_scores_of_policy(policy: EditingPolicy, tasks: Sequence[EditTask], *, seed: int = 0, batch_size: int = 16) -> PolicyEvaluation:
    """Edit every task's source with the policy (ODE, fixed seed per batch) and score with the oracle."""
    images: list[Image.Image] = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start : start + batch_size]
        edits = policy.edit([to_pil(t.source_image) for t in chunk], [t.instruction for t in chunk], seed=seed + start)
        if len(edits) != len(chunk):
            raise RuntimeError(f"policy returned {len(edits)} edits for {len(chunk)} tasks")
        images.extend(edits)
    return score_images(tasks, images)


def evaluate_autoencoder(pipeline: OmniGen2EditPipeline, tasks: Sequence[EditTask], *, batch_size: int = 64) -> PolicyEvaluation:
    """Oracle scores of each task's exact target after a round trip through the pipeline's VAE.

    What a perfect edit scores once the autoencoder has encoded and decoded it: a reference for the policy's
    scores, which live in the same latent space. It is not a strict bound (a policy may produce latents the
    encoder never does, and these may decode sharper), but a score far below 4 here means the autoencoder,
    not the transformer, is losing the edits.
    """
    images: list[Image.Image] = []
    with torch.no_grad():
        for start in range(0, len(tasks), batch_size):
            chunk = tasks[start : start + batch_size]
            latents = torch.stack([pipeline.encode_image(pil_to_tensor(to_pil(t.target_image))) for t in chunk])
            decoded = pipeline.decode_latents(latents).permute(0, 2, 3, 1).cpu().numpy()
            images.extend(to_pil(image) for image in decoded)
    return score_images(tasks, images)


def score_images(tasks: Sequence[EditTask], images: list[Image.Image]) -> PolicyEvaluation:
    """Score the i-th image against the i-th task with the oracle."""
    scores = [score_edit(task, image) for task, image in zip(tasks, images, strict=True)]
    return PolicyEvaluation(
        task_ids=[t.task_id for t in tasks],
        instruction_following=np.array([s.instruction_following for s in scores]),
        visual_quality=np.array([s.visual_quality for s in scores]),
        edit_success=np.array([s.facts["edit_success"] for s in scores]),
        images=images,
    )
