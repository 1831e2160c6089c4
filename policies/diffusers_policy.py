"""What the diffusers-backed editing policies (FLUX.1 Kontext, Qwen-Image-Edit) share: the RL policy around a
family's guided velocity, sampled and re-scored with the one SDE step in the SD3 convention (:mod:`policies.sd3`).

A rollout stores the time grid as ``t = 1 − σ`` (``Rollout.timesteps`` runs from 0 to 1 for every family) and the
latents unpacked, (B, T+1, C, h, w); a family packs them into 2x2 patches for its transformer. A family
subclasses :class:`DiffusersEditPolicy` and supplies the conditioning (its prompt encoding, its reference
latents), the guided velocity and the VAE decode; everything else (sampling, ``logprob``, ``edit``, LoRA,
adapter state) is here. Each sample has exactly one reference image, resized to the output size.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from PIL import Image
from tqdm.auto import tqdm

from editrl.dtypes import torch_dtype as to_torch_dtype
from policies.base import Generators
from policies.images import tensor_to_pil
from policies.omnigen2 import lora
from policies.omnigen2.guidance import cfg_active
from policies.omnigen2.image_processing import normalize_edit_inputs, to_rgb8
from policies.omnigen2.sde import draw_noise, sde_noise_std
from policies.rollout import EditConditions, Rollout, StepLogProbs, check_step_indices, rollout_from_steps
from policies.sd3 import sd3_sde_step, sd3_sigmas
from policies.settings import SamplingSettings, check_sde_window


def load_local_pipeline(pipeline_class: type[DiffusionPipeline], local_dir: str | Path, dtype: torch.dtype | str) -> Any:
    """``pipeline_class.from_pretrained`` on a local folder in the diffusers layout (never a hub id)."""
    root = Path(local_dir)
    if not root.is_dir() or not (root / "model_index.json").is_file():
        raise FileNotFoundError(f"{local_dir} is not a local diffusers pipeline folder (no model_index.json)")
    return pipeline_class.from_pretrained(root, dtype=to_torch_dtype(dtype), local_files_only=True)


class DiffusersEditPolicy(lora.TransformerLoRAMixin, ABC):
    """An RL editing policy around a diffusers pipeline (``policies.base.RLPolicy``); subclasses give the family.

    ``pipe`` is the family's diffusers pipeline (its transformer, VAE, text encoders, tokenizers, scheduler and
    image processor are used as they are). Subclasses implement :meth:`encode_conditions`, :meth:`velocity` and
    :meth:`decode_latents`.
    """

    family = "diffusers"

    def __init__(self, pipe: DiffusionPipeline, *, sampling: SamplingSettings | None = None):
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.sampling = sampling or SamplingSettings()
        self.vae_scale_factor: int = pipe.vae_scale_factor
        self.align = 2 * self.vae_scale_factor  # 2x2 packing of the latents
        self.lora_config = None
        self.adapter_version = 0
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)
                module.eval()

    # ------------------------------------------------------------------ what a family provides

    @property
    def latent_channels(self) -> int:
        """C of the unpacked latents (B, C, h, w)."""
        return self.transformer.config.in_channels // 4

    @abstractmethod
    def encode_conditions(self, references: Sequence[Image.Image], instructions: Sequence[str], height: int,
                          width: int) -> EditConditions:
        """Prompt embeddings and the reference latent (C, h, w) of each sample, references at height x width."""
        ...

    @abstractmethod
    def velocity(self, latents: torch.Tensor, sigmas: torch.Tensor, conditions: EditConditions,
                 guided: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        """SD3 velocity under the family's guidance. latents (N, C, h, w), sigmas (N,), guided (N,) bool (rows
        inside ``cfg_range``). Returns (N, C, h, w) float32, differentiable w.r.t. the adapter."""
        ...

    @abstractmethod
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, 3, H, W) float32 images in [0, 1]."""
        ...

    # ------------------------------------------------------------------ devices

    @property
    def device(self) -> torch.device:
        """Device of the transformer (the policy keeps all components together)."""
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the transformer."""
        return next(self.transformer.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> DiffusersEditPolicy:
        """Move (and optionally cast) every component; returns self."""
        for module in self.pipe.components.values():
            if not isinstance(module, torch.nn.Module):
                continue
            if dtype is None or dtype == next(module.parameters()).dtype:
                module.to(device)
            else:
                module.to(device, dtype)
        return self

    # ------------------------------------------------------------------ LoRA and adapter state

    def add_lora(self, rank: int = 32, alpha: float = 64, target_modules: Sequence[str] = ("to_q", "to_k", "to_v"),
                 seed: int = 0) -> None:
        """Add a peft LoRA adapter to the transformer (output unchanged at init); only it trains."""
        self.lora_config = lora.add_lora(self.transformer, rank=rank, alpha=alpha, target_modules=target_modules,
                                         seed=seed)

    # ------------------------------------------------------------------ helpers for families

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, h/2·w/2, 4C) 2x2 patches, with the pipeline's own packing."""
        n, c, h, w = latents.shape
        return self.pipe._pack_latents(latents, n, c, h, w)

    def unpack(self, packed: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(N, h/2·w/2, 4C) -> (N, C, h, w) with the pipeline's own unpacking (a 5-D result loses its frame axis)."""
        out = self.pipe._unpack_latents(packed, h * self.vae_scale_factor, w * self.vae_scale_factor,
                                        self.vae_scale_factor)
        return out[:, :, 0] if out.ndim == 5 else out

    def resize_reference(self, image: Image.Image, height: int, width: int) -> Image.Image:
        """An 8-bit RGB reference resized to height x width by the pipeline's image processor."""
        return self.pipe.image_processor.resize(to_rgb8(image), height, width)

    def reference_pixels(self, image: Image.Image, height: int, width: int) -> torch.Tensor:
        """(1, 3, height, width) pixels in [-1, 1] on the policy device, the pipeline's preprocessing."""
        pixels = self.pipe.image_processor.preprocess(image, height, width)
        return pixels.to(device=self.device, dtype=self.pipe.vae.dtype)

    # ------------------------------------------------------------------ sampling

    def _settings(self, settings: SamplingSettings | None) -> SamplingSettings:
        """``settings`` (None: the defaults in ``sampling``), checked, ``cfg_range`` as floats."""
        settings = self.sampling if settings is None else settings
        settings = replace(settings, cfg_range=(float(settings.cfg_range[0]), float(settings.cfg_range[1])))
        for key in ("height", "width"):
            value = getattr(settings, key)
            if value < self.align or value % self.align:
                raise ValueError(f"{key}={value} must be a positive multiple of {self.align}")
        if settings.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {settings.num_inference_steps}")
        return settings

    def _references(self, sources: Sequence[Image.Image | Sequence[Image.Image]],
                    instructions: Sequence[str]) -> tuple[list[Image.Image], list[str]]:
        references, cleaned = normalize_edit_inputs(sources, instructions)
        for index, refs in enumerate(references):
            if len(refs) != 1:
                raise ValueError(f"sample {index}: {self.family} edits one reference image, got {len(refs)}")
        return [refs[0] for refs in references], cleaned

    @torch.no_grad()
    def _sample(self, sources, instructions, settings: SamplingSettings, generator: Generators,
                progress: bool) -> Rollout:
        """Run the SDE (noise_level > 0) or the ODE (= 0) and return the whole trajectory."""
        references, cleaned = self._references(sources, instructions)
        conditions = self.encode_conditions(references, cleaned, settings.height, settings.width)
        batch = len(cleaned)
        h, w = settings.height // self.vae_scale_factor, settings.width // self.vae_scale_factor
        x = draw_noise((batch, self.latent_channels, h, w), generator, self.device)
        sigmas = sd3_sigmas(self.pipe.scheduler, settings.num_inference_steps, (h // 2) * (w // 2), self.device)
        grid = 1.0 - sigmas  # the rollout's t grid, 0 -> 1
        steps = settings.num_inference_steps
        latents, log_probs = [x], []
        for i in tqdm(range(steps), desc=f"{self.family} sampling", disable=not progress, leave=False):
            sigma, sigma_next = 1.0 - grid[i], 1.0 - grid[i + 1]
            guided = cfg_active(torch.full((batch,), i), steps, settings.cfg_range).to(self.device)
            velocity = self.velocity(x, sigma.expand(batch), conditions, guided, settings.text_guidance_scale)
            step = sd3_sde_step(velocity, sigma, sigma_next, x, settings.step_noise_level(i), generator=generator)
            x = step.prev_sample
            latents.append(x)
            log_probs.append(step.log_prob)
        return rollout_from_steps(
            latents, log_probs, grid, conditions, self.decode_latents(x), settings, self.adapter_version, cleaned
        )

    def sample_with_logprob(self, sources, instructions, settings: SamplingSettings | None = None, *,
                            generator: Generators = None, progress: bool = False) -> Rollout:
        """Sample B SDE edits (one reference image per instruction); tensors on CPU. See ``RLPolicy``."""
        settings = self._settings(settings)
        if settings.noise_level <= 0:
            raise ValueError("sample_with_logprob needs noise_level > 0 (use edit() for the ODE)")
        check_sde_window(settings.sde_window, settings.num_inference_steps)
        return self._sample(sources, instructions, settings, generator, progress)

    def edit(self, sources, instructions, *, seed: int = 0, settings: SamplingSettings | None = None,
             progress: bool = False) -> list[Image.Image]:
        """Deterministic (ODE) edits at the settings' size; sample i starts from noise seeded with ``seed + i``."""
        settings = replace(self._settings(settings), noise_level=0.0, sde_window=None)
        generators = [torch.Generator().manual_seed(seed + i) for i in range(len(instructions))]
        rollout = self._sample(sources, instructions, settings, generators, progress)
        return tensor_to_pil(rollout.images)

    # ------------------------------------------------------------------ re-scoring for the learner

    def logprob(self, rollout: Rollout, step_indices: torch.Tensor, *, use_adapter: bool = True) -> StepLogProbs:
        """Log-probs of the stored transitions at ``step_indices`` (B, K) under the current weights
        (``use_adapter=False``: the reference policy), with the guidance exactly as sampled; one transformer
        call for all B·K rows. Returns log_prob (B, K), mean (B, K, C, h, w), std / sigma / dt (B, K)."""
        batch, num_steps = rollout.log_probs.shape
        check_step_indices(rollout, step_indices)
        k = step_indices.shape[1]
        flat = step_indices.reshape(-1).cpu()
        owners = torch.arange(batch).repeat_interleave(k)
        device = self.device
        x_t = rollout.latents[owners, flat].to(device)
        x_next = rollout.latents[owners, flat + 1].to(device)
        t = rollout.timesteps[flat].to(device)
        t_next = rollout.timesteps[flat + 1].to(device)
        sigma, sigma_next = 1.0 - t, 1.0 - t_next
        conditions = rollout.conditions.select(owners.tolist()).to(device)
        guided = cfg_active(flat, num_steps, rollout.cfg_range).to(device)
        context = contextlib.nullcontext() if use_adapter else self.adapter_disabled()
        with context:
            velocity = self.velocity(x_t, sigma, conditions, guided, rollout.text_guidance_scale)
        step = sd3_sde_step(velocity, sigma, sigma_next, x_t, rollout.noise_level, prev_sample=x_next)
        if not bool(torch.isfinite(step.log_prob).all()):
            raise FloatingPointError(f"non-finite log-prob when re-scoring steps {step_indices.tolist()}")
        t32, t_next32 = 1.0 - sigma.float(), 1.0 - sigma_next.float()
        return StepLogProbs(
            log_prob=step.log_prob.view(batch, k),
            mean=step.mean.view(batch, k, *step.mean.shape[1:]),
            std=step.std.view(batch, k),
            sigma=sde_noise_std(t32, t_next32, rollout.noise_level).view(batch, k),
            dt=(t_next32 - t32).view(batch, k),
        )


def configure_adapter(policy: DiffusersEditPolicy, cfg: Any) -> DiffusersEditPolicy:
    """Add (and optionally load) the LoRA adapter and gradient checkpointing as the policy config says."""
    if cfg.use_lora:
        policy.add_lora(rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules)
        if cfg.lora_checkpoint is not None:
            policy.load_lora(cfg.lora_checkpoint)
    if cfg.gradient_checkpointing:
        policy.transformer.enable_gradient_checkpointing()
    return policy
