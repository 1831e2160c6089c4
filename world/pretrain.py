"""Supervised pretraining of the tiny OmniGen2-class policy on the world, stopped while still imperfect.

Two phases: (1) fit the tiny AutoencoderKL as an autoencoder on world images so latents decode to real
pictures, then set its ``shift_factor`` / ``scaling_factor`` so latents have zero mean and unit variance;
(2) train the transformer with flow matching on (source, instruction) -> target in OmniGen2's convention
(``x_t = t·x1 + (1−t)·x0``, velocity target ``x1 − x0``), conditioning exactly as the pipeline does when it
samples (instruction embeddings of the frozen mllm, source latents as the reference image). The result is
saved with ``save_pretrained`` (the official layout), which ``OmniGen2PolicyConfig.checkpoint`` loads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from editrl.config import ConfigError
from policies.omnigen2.config import SamplingSettings
from policies.omnigen2.image_processing import pil_to_tensor
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from policies.omnigen2.tiny import build_tiny_pipeline
from policies.rollout import EditConditions
from world.render import to_pil
from world.tasks import INSTRUCTION_WORDS, EditTask


@dataclass
class PretrainConfig:
    """Sizes and schedules of the policy pretraining (defaults fit the 15-minute CPU demo)."""

    n_tasks: int = 3000  # tasks of the "pretrain" split
    text_hidden_size: int = 32
    transformer_hidden_size: int = 64
    num_layers: int = 2
    latent_channels: int = 4
    vae_channels: list[int] = field(default_factory=lambda: [16, 32])
    vae_mid_attention: bool = False  # the mid-block self-attention triples the autoencoder's CPU cost
    vae_steps: int = 600
    vae_batch_size: int = 32
    vae_learning_rate: float = 3e-3
    vae_kl_weight: float = 1e-5
    flow_steps: int = 800
    flow_batch_size: int = 32
    flow_learning_rate: float = 1e-3
    # also train the (tiny, randomly initialised) mllm text encoder with the flow loss: its frozen random states
    # barely tell colour words apart, so a frozen encoder leaves the transformer copying the source
    flow_train_text_encoder: bool = False
    # weight of the flow loss on latent pixels the edit changes (1: plain MSE); edits touch a few percent of the
    # image, so plain MSE mostly teaches copying the source
    flow_changed_weight: float = 1.0
    # the tiny tokenizer keeps the world's instruction words whole (world.tasks.INSTRUCTION_WORDS); its 512-entry
    # BPE alone splits colour and shape words into fragments the frozen random text encoder barely tells apart
    world_vocabulary: bool = False
    # condition dropout, so the policy samples with OmniGen2's dual CFG: a row's instruction is replaced by
    # ``uncond_prompt`` with probability text_dropout, and instruction and reference image both with
    # probability text_image_dropout (the ``ref`` and ``uncond`` branches of the guided velocity)
    text_dropout: float = 0.0
    text_image_dropout: float = 0.0
    uncond_prompt: str = ""
    max_grad_norm: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        for key in ("n_tasks", "vae_batch_size", "flow_batch_size", "text_hidden_size", "transformer_hidden_size", "num_layers", "latent_channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("vae_steps", "flow_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if len(self.vae_channels) < 2 or any(c < 4 or c % 4 for c in self.vae_channels):
            raise ConfigError(f"vae_channels must list >= 2 multiples of 4, got {list(self.vae_channels)}")
        if self.vae_learning_rate <= 0 or self.flow_learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ConfigError("vae_learning_rate, flow_learning_rate and max_grad_norm must be > 0")
        if self.text_dropout < 0 or self.text_image_dropout < 0 or self.text_dropout + self.text_image_dropout >= 1:
            raise ConfigError(
                f"text_dropout + text_image_dropout must be in [0, 1), got {self.text_dropout} + {self.text_image_dropout}"
            )
        if self.flow_changed_weight <= 0:
            raise ConfigError(f"flow_changed_weight must be > 0, got {self.flow_changed_weight}")


@dataclass
class PretrainResult:
    """What pretraining produced: the checkpoint directory and the loss after every optimizer step."""

    checkpoint_dir: Path
    vae_losses: list[float]
    flow_losses: list[float]


def build_world_pipeline(cfg: PretrainConfig, image_size: int, sampling: SamplingSettings) -> OmniGen2EditPipeline:
    """The tiny pipeline of :mod:`policies.omnigen2.tiny` with a VAE sized by ``cfg`` (random weights).

    The transformer keeps OmniGen2's own init (zero output head and modulation gates), the start it trains from.
    """
    tiny = build_tiny_pipeline(
        cfg.seed,
        text_hidden_size=cfg.text_hidden_size,
        transformer_hidden_size=cfg.transformer_hidden_size,
        latent_channels=cfg.latent_channels,
        num_layers=cfg.num_layers,
        official_init=True,
        sampling=sampling,
        tokenizer_words=INSTRUCTION_WORDS if cfg.world_vocabulary else (),
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(cfg.seed + 1)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
            block_out_channels=tuple(cfg.vae_channels),
            layers_per_block=1,
            latent_channels=cfg.latent_channels,
            norm_num_groups=4,
            sample_size=image_size,
            scaling_factor=1.0,
            shift_factor=0.0,
            use_quant_conv=False,
            use_post_quant_conv=False,
            mid_block_add_attention=cfg.vae_mid_attention,
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return OmniGen2EditPipeline(
        tiny.transformer,
        vae,
        tiny.scheduler,
        tiny.mllm,
        tiny.tokenizer,
        sampling=sampling,
        max_input_pixels=image_size * image_size,
        max_input_side_length=image_size,
    )


def _images_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) float images in [0, 1] -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0


def fit_autoencoder(vae: AutoencoderKL, images: torch.Tensor, cfg: PretrainConfig, *, progress: bool = True) -> list[float]:
    """Train ``vae`` to reconstruct ``images`` (N, 3, H, W) in [-1, 1]; loss = MSE + kl_weight·KL per step.

    Afterwards sets ``shift_factor`` / ``scaling_factor`` so encoded latents have mean 0 and std 1.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_learning_rate, weight_decay=0.0)
    vae.requires_grad_(True)
    vae.train()
    losses: list[float] = []
    for _ in tqdm(range(cfg.vae_steps), desc="pretrain: autoencoder", disable=not progress):
        batch = images[torch.randint(0, images.shape[0], (cfg.vae_batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator)
        latents = posterior.mean + posterior.std * noise
        loss = (vae.decode(latents).sample - batch).pow(2).mean() + cfg.vae_kl_weight * posterior.kl().mean()
        _finite_or_raise(loss, "autoencoder loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
    vae.requires_grad_(False)
    vae.eval()
    with torch.no_grad():
        means = torch.cat([vae.encode(images[i : i + 256]).latent_dist.mean for i in range(0, images.shape[0], 256)])
    shift, std = float(means.mean()), float(means.std())
    vae.register_to_config(shift_factor=shift, scaling_factor=1.0 / max(std, 1e-6))
    return losses


@dataclass
class _FlowData:
    """Per-task conditioning and targets, precomputed once with the frozen mllm and VAE.

    text: list of (L_i, D_text) states; refs / targets: (N, C, h, w) source and target latents;
    instructions: the N instructions (re-encoded each step when the text encoder trains); changed: (N, 1, h, w)
    share of each latent pixel's image pixels that the edit changes.
    """

    text: list[torch.Tensor]
    refs: torch.Tensor
    targets: torch.Tensor
    instructions: list[str]
    changed: torch.Tensor

    def conditions(self, index: torch.Tensor, encoder: Any = None, dropped: Sequence[str] = (),
                   uncond: torch.Tensor | None = None, uncond_prompt: str = "") -> EditConditions:
        """The rows' conditions; with ``encoder`` (a trained text encoder) their text states are encoded now.

        dropped: per row "" (keep), "text" (instruction -> the unconditional prompt, states ``uncond`` (L, D)) or
        "text_image" (also no reference image); empty keeps every row.
        """
        rows = index.tolist()
        dropped = list(dropped) or [""] * len(rows)
        refs = [None if drop == "text_image" else [self.refs[i]] for i, drop in zip(rows, dropped)]
        if encoder is not None:
            prompts = [uncond_prompt if drop else self.instructions[i] for i, drop in zip(rows, dropped)]
            encoded = encoder.encode_differentiable(prompts)
            return EditConditions(encoded.hidden_states.float(), encoded.attention_mask, None, None, refs)
        texts = [uncond if drop else self.text[i] for i, drop in zip(rows, dropped)]
        length = max(t.shape[0] for t in texts)
        hidden = torch.zeros(len(texts), length, texts[0].shape[1])
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for row, t in enumerate(texts):
            hidden[row, : t.shape[0]] = t
            mask[row, : t.shape[0]] = True
        return EditConditions(hidden, mask, None, None, refs)


def _encode_tasks(pipeline: OmniGen2EditPipeline, tasks: Sequence[EditTask], batch_size: int = 128) -> _FlowData:
    text: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(tasks), batch_size):
            chunk = tasks[start : start + batch_size]
            encoded = pipeline.text_encoder.encode([t.instruction for t in chunk])
            for row in range(len(chunk)):
                text.append(encoded.hidden_states[row, encoded.attention_mask[row]].float().clone())
        refs = torch.stack([pipeline.encode_image(pil_to_tensor(to_pil(t.source_image))) for t in tasks])
        targets = torch.stack([pipeline.encode_image(pil_to_tensor(to_pil(t.target_image))) for t in tasks])
    masks = torch.stack([torch.from_numpy(t.changed_mask.astype("float32"))[None] for t in tasks])
    changed = torch.nn.functional.adaptive_avg_pool2d(masks, targets.shape[-2:])
    return _FlowData(text, refs.float(), targets.float(), [t.instruction for t in tasks], changed)


def condition_dropout(draws: torch.Tensor, text_dropout: float, text_image_dropout: float) -> list[str]:
    """Per row of ``draws`` (N,) ~ U(0, 1): "text_image" below ``text_image_dropout``, "text" below the sum of
    both probabilities, "" (keep the conditions) otherwise."""
    return ["text_image" if u < text_image_dropout else "text" if u < text_image_dropout + text_dropout else ""
            for u in draws.tolist()]


def _unconditional_states(pipeline: OmniGen2EditPipeline, prompt: str) -> torch.Tensor:
    """(L, D) text states of the unconditional prompt under the frozen text encoder."""
    with torch.no_grad():
        encoded = pipeline.text_encoder.encode([prompt])
    return encoded.hidden_states[0, encoded.attention_mask[0]].float().clone()


def train_flow_matching(pipeline: OmniGen2EditPipeline, tasks: Sequence[EditTask], cfg: PretrainConfig, *, progress: bool = True) -> list[float]:
    """Flow-matching MSE on the velocity ``x1 − x0`` with t ~ U(0, 1); trains the transformer in place."""
    data = _encode_tasks(pipeline, tasks)
    transformer = pipeline.transformer
    generator = torch.Generator().manual_seed(cfg.seed + 2)
    trained = [transformer]
    encoder = pipeline.text_encoder if cfg.flow_train_text_encoder else None
    if encoder is not None:
        trained.append(encoder.mllm)
    params = [p for module in trained for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.flow_learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.flow_steps) / max(cfg.flow_steps, 1)))
    )
    for module in trained:
        module.requires_grad_(True)
        module.train()
    losses: list[float] = []
    n = data.targets.shape[0]
    uncond = _unconditional_states(pipeline, cfg.uncond_prompt)
    dropout = torch.Generator().manual_seed(cfg.seed + 4)
    for _ in tqdm(range(cfg.flow_steps), desc="pretrain: flow matching", disable=not progress):
        index = torch.randint(0, n, (cfg.flow_batch_size,), generator=generator)
        dropped = condition_dropout(torch.rand(index.shape[0], generator=dropout), cfg.text_dropout, cfg.text_image_dropout)
        x1 = data.targets[index]
        x0 = torch.randn(x1.shape, generator=generator)
        t = torch.rand(index.shape[0], generator=generator)
        x_t = t.view(-1, 1, 1, 1) * x1 + (1.0 - t.view(-1, 1, 1, 1)) * x0
        guided = torch.zeros(index.shape[0], dtype=torch.bool)
        conditions = data.conditions(index, encoder, dropped, uncond, cfg.uncond_prompt)
        velocity = pipeline.guided_velocity(x_t, t, conditions, guided, 1.0, 1.0)
        weight = 1.0 + (cfg.flow_changed_weight - 1.0) * data.changed[index]
        loss = (weight * (velocity - (x1 - x0)).pow(2)).mean() / weight.mean()
        _finite_or_raise(loss, "flow-matching loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    for module in trained:
        module.requires_grad_(False)
        module.eval()
    return losses


def flow_matching_eval_loss(pipeline: OmniGen2EditPipeline, tasks: Sequence[EditTask], seed: int, batch_size: int = 32) -> float:
    """Mean flow-matching loss of ``pipeline`` on ``tasks`` at a fixed draw of noise and times (no training).

    One draw per task from a generator seeded with ``seed``: x0 ~ N(0, I), t ~ U(0, 1); the same ``seed`` and
    tasks give the same draw, so two transformers (e.g. before and after training, with the same VAE) compare.
    """
    if not tasks:
        raise ValueError("flow_matching_eval_loss needs at least one task")
    data = _encode_tasks(pipeline, tasks)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(data.targets.shape, generator=generator)
    t = torch.rand(data.targets.shape[0], generator=generator)
    was_training = pipeline.transformer.training
    pipeline.transformer.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(tasks), batch_size):
            index = torch.arange(start, min(start + batch_size, len(tasks)))
            x1, noise, t_b = data.targets[index], x0[index], t[index]
            x_t = t_b.view(-1, 1, 1, 1) * x1 + (1.0 - t_b.view(-1, 1, 1, 1)) * noise
            guided = torch.zeros(index.shape[0], dtype=torch.bool)
            velocity = pipeline.guided_velocity(x_t, t_b, data.conditions(index), guided, 1.0, 1.0)
            total += (velocity - (x1 - noise)).pow(2).mean(dim=(1, 2, 3)).sum().item()
    pipeline.transformer.train(was_training)
    return total / len(tasks)


@dataclass
class PolicyTraining:
    """A trained pipeline and its losses; ``eval_loss_*`` (held-out flow-matching loss at a fixed draw, see
    :func:`flow_matching_eval_loss`) are None without evaluation tasks. ``init`` is the untrained transformer
    on the trained autoencoder's latents, so it and ``trained`` compare."""

    pipeline: OmniGen2EditPipeline
    vae_losses: list[float]
    flow_losses: list[float]
    eval_loss_init: float | None = None
    eval_loss_trained: float | None = None


def train_policy(
    cfg: PretrainConfig,
    tasks: Sequence[EditTask],
    sampling: SamplingSettings,
    *,
    eval_tasks: Sequence[EditTask] = (),
    progress: bool = True,
) -> PolicyTraining:
    """Fit the autoencoder, then flow-match the transformer on ``tasks`` (in memory; nothing is saved)."""
    if not tasks:
        raise ValueError("train_policy needs at least one task")
    size = tasks[0].size
    pipeline = build_world_pipeline(cfg, size, sampling)
    images = _images_tensor([t.source_image for t in tasks] + [t.target_image for t in tasks])
    vae_losses = fit_autoencoder(pipeline.vae, images, cfg, progress=progress)
    eval_seed = cfg.seed + 3
    init = flow_matching_eval_loss(pipeline, eval_tasks, eval_seed) if eval_tasks else None
    flow_losses = train_flow_matching(pipeline, tasks, cfg, progress=progress)
    trained = flow_matching_eval_loss(pipeline, eval_tasks, eval_seed) if eval_tasks else None
    return PolicyTraining(pipeline, vae_losses, flow_losses, init, trained)


def pretrain_policy(
    cfg: PretrainConfig, tasks: Sequence[EditTask], out_dir: str | Path, sampling: SamplingSettings, *, progress: bool = True
) -> PretrainResult:
    """Fit the autoencoder, then flow-match the transformer on ``tasks``; save the pipeline to ``out_dir``."""
    trained = train_policy(cfg, tasks, sampling, progress=progress)
    trained.pipeline.save_pretrained(out_dir)
    return PretrainResult(Path(out_dir), trained.vae_losses, trained.flow_losses)


def _finite_or_raise(loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} became non-finite ({float(loss)}); lower the learning rate")
