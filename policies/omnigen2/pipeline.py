"""OmniGen2 instruction-based editing as an RL policy: SDE sampling with log-probs, re-scoring, ODE edits.

Components (the official checkpoint layout): ``transformer/`` (OmniGen2Transformer2DModel), ``vae/``
(diffusers AutoencoderKL with FLUX-style ``scaling_factor``/``shift_factor``), ``mllm/`` (Qwen2.5-VL, its
language model encodes the instruction), ``processor/`` (its tokenizer is used), ``scheduler/``.

One denoising step: the transformer predicts the velocity under dual CFG (the up to three branches batched
into one transformer call, CFG only inside ``cfg_range``), then :func:`sde_step_with_logprob` moves x_t to
x_{t'} and scores the move. ``logprob`` re-runs exactly this for chosen steps of a stored rollout.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration

from editrl.dtypes import torch_dtype as to_torch_dtype
from editrl.io import atomic_replace_dir, atomic_save_safetensors, atomic_write_json
from policies.base import Generators
from policies.omnigen2 import lora
from policies.omnigen2.guidance import GuidanceMode, cfg_active, combine_guidance, guidance_mode
from policies.omnigen2.image_processing import (
    normalize_edit_inputs,
    preprocess_reference,
    reference_size,
    tensor_to_pil,
    to_rgb8,
)
from policies.omnigen2.rotary import OmniGen2RotaryPosEmbed
from policies.omnigen2.scheduler import OmniGen2FlowMatchScheduler
from policies.omnigen2.sde import draw_noise, sde_noise_std, sde_step_with_logprob
from policies.omnigen2.text_encoder import QwenTextEncoder
from policies.omnigen2.transformer import OmniGen2Transformer2DModel
from policies.rollout import EditConditions, Rollout, StepLogProbs, check_step_indices, rollout_from_steps
from policies.settings import SamplingSettings, check_sde_window

COMPONENTS = ("transformer", "vae", "mllm", "processor", "scheduler")
TRANSFORMER_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _pad_right(hidden: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (N, L, D) states and their (N, L) mask on the right to ``length`` tokens."""
    extra = length - hidden.shape[1]
    if extra == 0:
        return hidden, mask
    hidden = torch.cat([hidden, hidden.new_zeros(hidden.shape[0], extra, hidden.shape[2])], dim=1)
    mask = torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)
    return hidden, mask


class OmniGen2EditPipeline(lora.TransformerLoRAMixin):
    """OmniGen2 editing policy: ``sample_with_logprob`` (SDE rollouts), ``logprob`` (re-scoring, differentiable
    w.r.t. LoRA), ``edit`` (ODE), LoRA management; implements ``policies.base.RLPolicy`` (and ``EditingPolicy``).

    ``sampling`` holds the :class:`SamplingSettings` used when a call passes ``settings=None``.
    ``adapter_version`` is the version of the loaded LoRA weights (see :meth:`load_adapter_state`).
    """

    def __init__(
        self,
        transformer: OmniGen2Transformer2DModel,
        vae: AutoencoderKL,
        scheduler: OmniGen2FlowMatchScheduler,
        mllm: Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        sampling: SamplingSettings | None = None,
        negative_prompt: str = "",
        max_input_pixels: int = 1024 * 1024,
        max_input_side_length: int = 1024,
        max_sequence_length: int = 512,
        processor_dir: Path | None = None,
    ):
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.mllm = mllm
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingSettings()
        self.negative_prompt = negative_prompt
        self.max_input_pixels = max_input_pixels
        self.max_input_side_length = max_input_side_length
        self.processor_dir = processor_dir
        self.text_encoder = QwenTextEncoder(mllm, tokenizer, max_sequence_length)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.align = self.vae_scale_factor * transformer.config.patch_size
        self.freqs_cis = OmniGen2RotaryPosEmbed.get_freqs_cis(
            transformer.config.axes_dim_rope, transformer.config.axes_lens, theta=10000
        )
        self.lora_config = None
        self.adapter_version = 0
        for module in (transformer, vae, mllm):
            module.requires_grad_(False)
            module.eval()

    # ------------------------------------------------------------------ devices, loading, saving

    @property
    def device(self) -> torch.device:
        """Device of the transformer (the pipeline keeps all components together)."""
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the transformer."""
        return next(self.transformer.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> OmniGen2EditPipeline:
        """Move every component (and optionally cast it); returns self."""
        for module in (self.transformer, self.vae, self.mllm):
            if dtype is None or dtype == next(module.parameters()).dtype:
                module.to(device)
            else:
                module.to(device, dtype)
        return self

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        **kwargs,
    ) -> OmniGen2EditPipeline:
        """Load the official layout from a local directory (never a hub id); ``kwargs`` go to ``__init__``."""
        root = Path(local_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"OmniGen2 checkpoint directory not found: {local_dir} (only local directories load)")
        missing = [name for name in COMPONENTS if not (root / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"OmniGen2 checkpoint {root} lacks the component folders {missing}")
        torch_dtype = to_torch_dtype(dtype)
        transformer = OmniGen2Transformer2DModel.from_pretrained(
            root / "transformer", torch_dtype=torch_dtype, local_files_only=True
        )
        vae = AutoencoderKL.from_pretrained(root / "vae", torch_dtype=torch_dtype, local_files_only=True)
        scheduler = OmniGen2FlowMatchScheduler.from_pretrained(root / "scheduler", local_files_only=True)
        mllm = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            root / "mllm", dtype=torch_dtype, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(root / "processor", local_files_only=True)
        pipeline = cls(transformer, vae, scheduler, mllm, tokenizer, processor_dir=root / "processor", **kwargs)
        return pipeline.to(device)

    def save_pretrained(self, directory: str | Path, *, merge_lora: bool = False) -> None:
        """Write the official layout atomically. LoRA weights are left out (see ``save_lora``) unless
        ``merge_lora``, which folds them into the transformer weights."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            self.transformer.save_config(staging / "transformer")
            atomic_save_safetensors(
                staging / "transformer" / TRANSFORMER_WEIGHTS,
                lora.base_state_dict(self.transformer, merge=merge_lora),
                metadata={"format": "pt"},
            )
            self.vae.save_pretrained(staging / "vae", safe_serialization=True)
            self.scheduler.save_pretrained(staging / "scheduler")
            self.mllm.save_pretrained(staging / "mllm")
            self.tokenizer.save_pretrained(staging / "processor")
            if self.processor_dir is not None and self.processor_dir.is_dir():
                for item in self.processor_dir.iterdir():
                    target = staging / "processor" / item.name
                    if item.is_file() and not target.exists():
                        shutil.copy2(item, target)
            atomic_write_json(
                staging / "model_index.json",
                {
                    "_class_name": "OmniGen2Pipeline",
                    "_diffusers_version": diffusers.__version__,
                    "mllm": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
                    "processor": ["transformers", "Qwen2_5_VLProcessor"],
                    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                    "transformer": ["omnigen2", "OmniGen2Transformer2DModel"],
                    "vae": ["diffusers", "AutoencoderKL"],
                },
            )
            atomic_replace_dir(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ LoRA

    def add_lora(
        self,
        rank: int = 32,
        alpha: float = 64,
        target_modules: Sequence[str] = ("to_q", "to_k", "to_v", "to_out.0"),
        seed: int = 0,
    ) -> None:
        """Add a LoRA adapter to the transformer (output unchanged at init, A seeded by ``seed``); only it trains."""
        self.lora_config = lora.add_lora(self.transformer, rank=rank, alpha=alpha, target_modules=target_modules, seed=seed)

    # ------------------------------------------------------------------ conditioning and VAE

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, H, W) pixels in [-1, 1] -> (C, H/f, W/f) latent, ``(mode − shift)·scale`` (deterministic)."""
        moments = self.vae.encode(pixels[None].to(device=self.device, dtype=self.vae.dtype)).latent_dist
        latent = moments.mode()[0]
        if self.vae.config.shift_factor is not None:
            latent = latent - self.vae.config.shift_factor
        if self.vae.config.scaling_factor is not None:
            latent = latent * self.vae.config.scaling_factor
        return latent.to(self.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, 3, H, W) float32 images in [0, 1]."""
        z = latents.to(device=self.device, dtype=self.vae.dtype)
        if self.vae.config.scaling_factor is not None:
            z = z / self.vae.config.scaling_factor
        if self.vae.config.shift_factor is not None:
            z = z + self.vae.config.shift_factor
        images = self.vae.decode(z).sample.float()
        return ((images + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def encode_conditions(
        self, references: Sequence[Sequence[Image.Image]], instructions: Sequence[str]
    ) -> EditConditions:
        """Text embeddings (instruction and negative prompt) and reference latents, on the pipeline device."""
        positive = self.text_encoder.encode(instructions)
        negative = self.text_encoder.encode([self.negative_prompt])
        batch = len(instructions)
        ref_latents = [
            [
                self.encode_image(
                    preprocess_reference(
                        image,
                        max_pixels=self.max_input_pixels,
                        max_side_length=self.max_input_side_length,
                        align=self.align,
                    )
                )
                for image in sample_refs
            ]
            for sample_refs in references
        ]
        return EditConditions(
            text_hidden_states=positive.hidden_states.to(self.dtype),
            text_attention_mask=positive.attention_mask,
            negative_text_hidden_states=negative.hidden_states.to(self.dtype).expand(batch, -1, -1).contiguous(),
            negative_text_attention_mask=negative.attention_mask.expand(batch, -1).contiguous(),
            ref_latents=ref_latents,
        )

    # ------------------------------------------------------------------ the guided velocity

    def guided_velocity(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        conditions: EditConditions,
        guided: torch.Tensor,
        text_guidance_scale: float,
        image_guidance_scale: float,
    ) -> torch.Tensor:
        """Velocity under OmniGen2's dual CFG for N rows, with all branches in one transformer call.

        latents: (N, C, H, W); timesteps: (N,); conditions: N rows on the pipeline device; guided: (N,) bool,
        rows where CFG applies. Returns (N, C, H, W) float32 (differentiable w.r.t. trainable parameters).
        """
        mode = guidance_mode(text_guidance_scale, image_guidance_scale)
        rows = torch.nonzero(guided).flatten().tolist() if mode is not GuidanceMode.NONE else []
        if rows and conditions.negative_text_hidden_states is None:
            raise ValueError("CFG needs negative text embeddings, but the conditions have none")
        text, text_mask = conditions.text_hidden_states, conditions.text_attention_mask
        texts, masks = [text], [text_mask]
        refs: list[list[torch.Tensor] | None] = list(conditions.ref_latents)
        x_rows, t_rows = [latents], [timesteps]
        # Extra rows for the guided ones: ``ref`` (dual mode: negative text + references), then ``uncond``.
        extra_branches_with_refs = ([True, False] if mode is GuidanceMode.DUAL else [False]) if rows else []
        for with_refs in extra_branches_with_refs:
            texts.append(conditions.negative_text_hidden_states[rows])
            masks.append(conditions.negative_text_attention_mask[rows])
            refs += [conditions.ref_latents[r] if with_refs else None for r in rows]
            x_rows.append(latents[rows])
            t_rows.append(timesteps[rows])
        length = max(t.shape[1] for t in texts)
        padded = [_pad_right(t, m, length) for t, m in zip(texts, masks)]
        output = self.transformer(
            torch.cat(x_rows).to(self.dtype),
            torch.cat(t_rows).to(self.dtype),
            torch.cat([p[0] for p in padded]).to(self.dtype),
            self.freqs_cis,
            torch.cat([p[1] for p in padded]),
            ref_image_hidden_states=refs,
        ).float()
        count = latents.shape[0]
        velocity = output[:count]
        if not rows:
            return velocity
        ref = output[count : count + len(rows)] if mode is GuidanceMode.DUAL else None
        uncond = output[-len(rows) :]
        guided_rows = combine_guidance(velocity[rows], ref, uncond, text_guidance_scale, image_guidance_scale)
        velocity = velocity.clone()
        velocity[rows] = guided_rows
        return velocity

    # ------------------------------------------------------------------ sampling

    def _settings(self, settings: SamplingSettings | None) -> SamplingSettings:
        """``settings`` (None: the pipeline's ``sampling`` defaults), checked, with ``cfg_range`` as floats."""
        settings = self.sampling if settings is None else settings
        settings = replace(settings, cfg_range=(float(settings.cfg_range[0]), float(settings.cfg_range[1])))
        for key in ("height", "width"):
            value = getattr(settings, key)
            if value < self.align or value % self.align:
                raise ValueError(f"{key}={value} must be a positive multiple of {self.align}")
        if settings.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {settings.num_inference_steps}")
        return settings

    def _initial_noise(self, shape: tuple[int, ...], generator: Generators) -> torch.Tensor:
        """x_0 ~ N(0, I) (float32 on the pipeline device), one draw per sample when given a generator list."""
        return draw_noise(shape, generator, self.device)

    @torch.no_grad()
    def _sample(
        self,
        sources: Sequence[Image.Image | Sequence[Image.Image]],
        instructions: Sequence[str],
        settings: SamplingSettings,
        generator: Generators,
        progress: bool,
    ) -> Rollout:
        """Run the SDE (noise_level > 0) or ODE (= 0) and return the whole trajectory."""
        references, cleaned = normalize_edit_inputs(sources, instructions)
        conditions = self.encode_conditions(references, cleaned)
        batch = len(cleaned)
        height, width = settings.height // self.vae_scale_factor, settings.width // self.vae_scale_factor
        x = self._initial_noise((batch, self.transformer.config.in_channels, height, width), generator)
        self.scheduler.set_timesteps(settings.num_inference_steps, device=self.device, num_tokens=height * width)
        grid = self.scheduler.grid.float()
        steps = settings.num_inference_steps
        latents, log_probs = [x], []
        for i in tqdm(range(steps), desc="OmniGen2 sampling", disable=not progress, leave=False):
            guided = cfg_active(torch.full((batch,), i), steps, settings.cfg_range).to(self.device)
            velocity = self.guided_velocity(
                x,
                grid[i].expand(batch),
                conditions,
                guided,
                settings.text_guidance_scale,
                settings.image_guidance_scale,
            )
            step = sde_step_with_logprob(velocity, grid[i], grid[i + 1], x, settings.step_noise_level(i), generator=generator)
            x = step.prev_sample
            latents.append(x)
            log_probs.append(step.log_prob)
        return rollout_from_steps(
            latents, log_probs, grid, conditions, self.decode_latents(x), settings, self.adapter_version, cleaned
        )

    def sample_with_logprob(
        self,
        sources: Sequence[Image.Image | Sequence[Image.Image]],
        instructions: Sequence[str],
        settings: SamplingSettings | None = None,
        *,
        generator: Generators = None,
        progress: bool = False,
    ) -> Rollout:
        """Sample B SDE edits; ``sources[i]`` is a PIL image or a list of up to 5 for ``instructions[i]``.

        ``settings`` None = the pipeline's ``sampling`` defaults. ``generator`` may be one generator or one
        per sample (then each sample is independent of the batch). Returns tensors on CPU.
        """
        settings = self._settings(settings)
        if settings.noise_level <= 0:
            raise ValueError("sample_with_logprob needs noise_level > 0 (use edit() for the ODE)")
        check_sde_window(settings.sde_window, settings.num_inference_steps)
        return self._sample(sources, instructions, settings, generator, progress)

    def edit(
        self,
        sources: Sequence[Image.Image | Sequence[Image.Image]],
        instructions: Sequence[str],
        *,
        seed: int = 0,
        settings: SamplingSettings | None = None,
        match_source_size: bool = False,
        progress: bool = False,
    ) -> list[Image.Image]:
        """Deterministic (ODE) edits; sample i starts from noise seeded with ``seed + i``.

        ``settings`` None = the pipeline's ``sampling`` defaults; its ``noise_level`` is ignored (always 0).
        ``match_source_size``: each output takes the preprocessed size of its first reference image (as the
        official pipeline does for single-image edits) instead of ``height`` x ``width``; samples of equal
        size run together.
        """
        settings = replace(self._settings(settings), noise_level=0.0, sde_window=None)
        references, cleaned = normalize_edit_inputs(sources, instructions)
        sizes = [(settings.width, settings.height)] * len(cleaned)
        if match_source_size:
            sizes = [
                reference_size(
                    *to_rgb8(refs[0]).size,
                    max_pixels=self.max_input_pixels,
                    max_side_length=self.max_input_side_length,
                    align=self.align,
                )
                for refs in references
            ]
        outputs: list[Image.Image | None] = [None] * len(cleaned)
        for size in dict.fromkeys(sizes):
            members = [i for i, s in enumerate(sizes) if s == size]
            generators = [torch.Generator().manual_seed(seed + i) for i in members]
            group = replace(settings, width=size[0], height=size[1])
            rollout = self._sample(
                [references[i] for i in members], [cleaned[i] for i in members], group, generators, progress
            )
            for i, image in zip(members, tensor_to_pil(rollout.images)):
                outputs[i] = image
        return outputs

    # ------------------------------------------------------------------ re-scoring for the learner

    def logprob(self, rollout: Rollout, step_indices: torch.Tensor, *, use_adapter: bool = True) -> StepLogProbs:
        """Log-probs of the stored transitions ``x_i -> x_{i+1}`` at ``step_indices`` (B, K) under the current
        weights (``use_adapter=False``: the reference policy, LoRA off), with CFG exactly as sampled.

        All B·K rows (and their CFG branches) go through one transformer call; gradients flow to the LoRA
        parameters when grad is enabled. Returns log_prob (B, K), mean (B, K, C, H, W), std/sigma/dt (B, K).
        """
        latents = rollout.latents
        batch, num_steps = rollout.log_probs.shape
        check_step_indices(rollout, step_indices)
        k = step_indices.shape[1]
        flat_steps = step_indices.reshape(-1).cpu()
        owners = torch.arange(batch).repeat_interleave(k)
        device = self.device
        x_t = latents[owners, flat_steps].to(device)
        x_next = latents[owners, flat_steps + 1].to(device)
        t = rollout.timesteps[flat_steps].to(device)
        t_next = rollout.timesteps[flat_steps + 1].to(device)
        conditions = rollout.conditions.select(owners.tolist()).to(device)
        guided = cfg_active(flat_steps, num_steps, rollout.cfg_range).to(device)
        context = contextlib.nullcontext() if use_adapter else self.adapter_disabled()
        with context:
            velocity = self.guided_velocity(
                x_t, t, conditions, guided, rollout.text_guidance_scale, rollout.image_guidance_scale
            )
        step = sde_step_with_logprob(velocity, t, t_next, x_t, rollout.noise_level, prev_sample=x_next)
        if not bool(torch.isfinite(step.log_prob).all()):
            raise FloatingPointError(f"non-finite log-prob when re-scoring steps {step_indices.tolist()}")
        sigma = sde_noise_std(t, t_next, rollout.noise_level)
        return StepLogProbs(
            log_prob=step.log_prob.view(batch, k),
            mean=step.mean.view(batch, k, *step.mean.shape[1:]),
            std=step.std.view(batch, k),
            sigma=sigma.view(batch, k),
            dt=(t_next - t).view(batch, k),
        )
