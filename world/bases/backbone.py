"""The backbone base: a tiny Qwen3-VL (the JRM's backbone class) pretrained to describe scenes and changes.

The objective is the language-model loss on the assistant's answer of :mod:`world.bases.captions` examples
(user turn: the example's images, then its prompt), through the same input builder the JRM uses
(:func:`reward.qwen_vl_inputs.build_vl_batch`) and the JRM's token-mean LM loss. The result is saved as a
transformers model folder (config, safetensors, tokenizer, image processor), which ``JRM.from_backbone``
(``model.backbone``) loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import Qwen3VLForConditionalGeneration

from editrl.tiny_qwen_vl import TinyVLComponents, build_tiny_image_processor
from reward.jrm.loss import rationale_lm_loss
from reward.jrm.tiny import build_tiny_backbone
from reward.qwen_vl_inputs import ChatSample, VLBatch, build_vl_batch
from world.bases.captions import CaptionExample
from world.bases.config import BackboneBaseConfig
from world.render import render, to_pil
from world.scene import Scene
from world.tasks import INSTRUCTION_WORDS

END_OF_TURN = "<|im_end|>"


@dataclass
class BackboneTraining:
    """A trained backbone with its tokenizer and image processor, the loss per step and the held-out loss
    (token-mean LM loss on the answers of held-out examples) before and after training."""

    model: Qwen3VLForConditionalGeneration
    parts: TinyVLComponents
    losses: list[float]
    eval_loss_init: float
    eval_loss_trained: float


def build_backbone(cfg: BackboneBaseConfig) -> tuple[Qwen3VLForConditionalGeneration, TinyVLComponents]:
    """The random tiny Qwen3-VL of ``cfg`` (seed ``cfg.seed``), its image processor sized to ``image_side``^2."""
    model, parts = build_tiny_backbone(
        seed=cfg.seed,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        vision_hidden_size=cfg.vision_hidden_size,
        vision_depth=cfg.vision_depth,
        words=INSTRUCTION_WORDS if cfg.world_vocabulary else (),
    )
    pixels = cfg.image_side * cfg.image_side
    parts.image_processor = build_tiny_image_processor(patch_size=16, min_pixels=pixels, max_pixels=pixels)
    return model, parts


def _sample(example: CaptionExample, images: dict[Scene, Image.Image], image_size: int) -> ChatSample:
    pictures = []
    for scene in example.scenes:
        if scene not in images:
            images[scene] = to_pil(render(scene, image_size))
        pictures.append(images[scene])
    content = [{"type": "image"} for _ in pictures] + [{"type": "text", "text": example.prompt}]
    return ChatSample([{"role": "user", "content": content}], pictures, continuation=example.answer + END_OF_TURN)


class CaptionBatches:
    """Builds :class:`VLBatch` es of examples (each scene rendered once, kept as a PIL image)."""

    def __init__(self, parts: TinyVLComponents, examples: Sequence[CaptionExample], image_size: int) -> None:
        self.parts, self.examples, self.image_size = parts, list(examples), image_size
        self._images: dict[Scene, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, index: Sequence[int]) -> VLBatch:
        samples = [_sample(self.examples[i], self._images, self.image_size) for i in index]
        return build_vl_batch(self.parts.tokenizer, self.parts.image_processor, samples)


def answer_loss(model: Qwen3VLForConditionalGeneration, batch: VLBatch) -> torch.Tensor:
    """Token-mean next-token cross-entropy on the answer tokens (and the closing ``<|im_end|>``)."""
    logits = model(**batch.model_inputs()).logits.float()
    return rationale_lm_loss(logits, batch.input_ids, batch.continuation_mask, reduction="token_mean")


def eval_answer_loss(model: Qwen3VLForConditionalGeneration, batches: CaptionBatches, batch_size: int) -> float:
    """Mean of :func:`answer_loss` over all of ``batches``' examples (example-weighted, no gradients)."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(batches), batch_size):
            index = list(range(start, min(start + batch_size, len(batches))))
            total += answer_loss(model, batches.batch(index)).item() * len(index)
    model.train(was_training)
    return total / len(batches)


def train_backbone(
    cfg: BackboneBaseConfig,
    examples: Sequence[CaptionExample],
    eval_examples: Sequence[CaptionExample],
    image_size: int,
    *,
    progress: bool = True,
    start: tuple[Qwen3VLForConditionalGeneration, TinyVLComponents] | None = None,
    description: str = "bases: backbone (describe / what changed)",
) -> BackboneTraining:
    """AdamW on :func:`answer_loss` over random batches of ``examples`` (linear warmup, cosine decay), from
    the random model of ``cfg`` or from ``start`` (a model and its parts, trained further in place)."""
    if not examples or not eval_examples:
        raise ValueError("train_backbone needs training and held-out examples")
    model, parts = start if start is not None else build_backbone(cfg)
    train, held_out = CaptionBatches(parts, examples, image_size), CaptionBatches(parts, eval_examples, image_size)
    init = eval_answer_loss(model, held_out, cfg.batch_size)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)

    def rate(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress_, 1.0)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc=description, disable=not progress)
    for _ in bar:
        index = torch.randint(0, len(train), (cfg.batch_size,), generator=generator).tolist()
        loss = answer_loss(model, train.batch(index))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"backbone loss became non-finite ({loss.item()}); lower backbone.learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    trained = eval_answer_loss(model, held_out, cfg.batch_size)
    return BackboneTraining(model, parts, losses, init, trained)


def train_variety_phase(
    cfg: BackboneBaseConfig,
    first: BackboneTraining,
    examples: Sequence[CaptionExample],
    eval_examples: Sequence[CaptionExample],
    image_size: int,
    *,
    progress: bool = True,
) -> BackboneTraining:
    """The second phase (``cfg.variety``): ``first``'s model trained further on ``examples`` with the phase's
    steps, learning rate and warmup, and its own batch order."""
    phase = cfg.variety
    phase_cfg = dataclasses.replace(
        cfg, steps=phase.steps, learning_rate=phase.learning_rate, warmup_steps=phase.warmup_steps, seed=cfg.seed + 2
    )
    return train_backbone(
        phase_cfg, examples, eval_examples, image_size, progress=progress, start=(first.model, first.parts),
        description="bases: backbone (varied wordings)",
    )


def save_backbone(training: BackboneTraining, folder: str | Path) -> None:
    """The transformers model folder: config, safetensors weights, tokenizer, image processor."""
    folder = Path(folder)
    training.model.save_pretrained(folder, safe_serialization=True)
    training.parts.tokenizer.save_pretrained(folder)
    training.parts.image_processor.save_pretrained(folder)
