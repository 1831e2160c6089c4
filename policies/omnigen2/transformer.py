"""The OmniGen2 diffusion transformer (our implementation; official constructor, forward and weight names).

Data flow of one forward, per sample: text features are refined alone (`context_refiner`), the noisy
latent's patches alone (`noise_refiner`), each reference image alone (`ref_image_refiner`, plus a learnt
per-index embedding); then the joint sequence `[text, ref_1, ..., ref_k, image]` runs through `layers`
and the image part is projected back to a velocity latent. Samples of a batch may differ in text length,
image size and number of references: every stage pads and masks its keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.loaders.single_file_model import FromOriginalModelMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import apply_lora_scale
from torch import nn

from policies.omnigen2.blocks import LuminaLayerNormContinuous, OmniGen2TransformerBlock, conditioning_dim
from policies.omnigen2.embeddings import Lumina2CombinedTimestepCaptionEmbedding
from policies.omnigen2.rotary import OmniGen2RotaryPosEmbed
from policies.omnigen2.sequence import pad_sequences, patchify, token_grid, unpatchify

MAX_REFERENCE_IMAGES = 5

RefLatents = Sequence[Sequence[torch.Tensor] | None] | None


class OmniGen2Transformer2DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, FromOriginalModelMixin):
    """Velocity predictor of OmniGen2: `forward(latents, t, text, rotary tables, text mask, refs)`.

    Constructor arguments, forward semantics and state-dict names match the official
    `OmniGen2Transformer2DModel`, so its `transformer/` folders load with `from_pretrained`.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["OmniGen2TransformerBlock"]
    _skip_layerwise_casting_patterns = ["x_embedder", "norm"]

    @register_to_config
    def __init__(
        self,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: int | None = None,
        hidden_size: int = 2304,
        num_layers: int = 26,
        num_refiner_layers: int = 2,
        num_attention_heads: int = 24,
        num_kv_heads: int = 8,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        norm_eps: float = 1e-5,
        axes_dim_rope: tuple[int, int, int] = (32, 32, 32),
        axes_lens: tuple[int, int, int] = (300, 512, 512),
        text_feat_dim: int = 1024,
        timestep_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if hidden_size // num_attention_heads != sum(axes_dim_rope):
            raise ValueError(
                f"hidden_size // num_attention_heads ({hidden_size // num_attention_heads}) "
                f"must equal sum(axes_dim_rope) ({sum(axes_dim_rope)})"
            )
        if num_attention_heads % num_kv_heads:
            raise ValueError(
                f"num_attention_heads={num_attention_heads} is not a multiple of num_kv_heads={num_kv_heads}"
            )
        self.out_channels = out_channels or in_channels
        patch_dim = patch_size * patch_size * in_channels

        self.rope_embedder = OmniGen2RotaryPosEmbed(
            theta=10000, axes_dim=axes_dim_rope, axes_lens=axes_lens, patch_size=patch_size
        )
        self.x_embedder = nn.Linear(patch_dim, hidden_size)
        self.ref_image_patch_embedder = nn.Linear(patch_dim, hidden_size)
        self.time_caption_embed = Lumina2CombinedTimestepCaptionEmbedding(
            hidden_size=hidden_size,
            text_feat_dim=text_feat_dim,
            norm_eps=norm_eps,
            timestep_scale=timestep_scale,
        )

        def blocks(count: int, modulation: bool) -> nn.ModuleList:
            return nn.ModuleList(
                OmniGen2TransformerBlock(
                    hidden_size,
                    num_attention_heads,
                    num_kv_heads,
                    multiple_of,
                    ffn_dim_multiplier,
                    norm_eps,
                    modulation=modulation,
                )
                for _ in range(count)
            )

        self.noise_refiner = blocks(num_refiner_layers, modulation=True)
        self.ref_image_refiner = blocks(num_refiner_layers, modulation=True)
        self.context_refiner = blocks(num_refiner_layers, modulation=False)
        self.layers = blocks(num_layers, modulation=True)
        self.norm_out = LuminaLayerNormContinuous(
            embedding_dim=hidden_size,
            conditioning_embedding_dim=conditioning_dim(hidden_size),
            out_dim=patch_size * patch_size * self.out_channels,
            eps=1e-6,
        )
        self.image_index_embedding = nn.Parameter(torch.randn(MAX_REFERENCE_IMAGES, hidden_size))
        self.gradient_checkpointing = False
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier patch embedders, zero output head (a fresh model predicts zero velocity)."""
        for embedder in (self.x_embedder, self.ref_image_patch_embedder):
            nn.init.xavier_uniform_(embedder.weight)
            nn.init.zeros_(embedder.bias)
        for linear in (self.norm_out.linear_1, self.norm_out.linear_2):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        nn.init.normal_(self.image_index_embedding, std=0.02)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, strict: bool = True, **kwargs: Any
    ) -> OmniGen2Transformer2DModel | tuple[OmniGen2Transformer2DModel, dict[str, list]]:
        """Load a local `transformer/` folder (diffusers layout); with `strict`, any missing, unexpected or
        mismatched parameter name is an error instead of diffusers' warning and random initialisation."""
        if not Path(pretrained_model_name_or_path).is_dir():
            raise FileNotFoundError(
                f"transformer checkpoint directory not found: {pretrained_model_name_or_path}"
            )
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, output_loading_info=True, **kwargs
        )
        if strict:
            problems = {
                kind: sorted(info.get(kind) or [])
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if info.get(kind)
            }
            if problems:
                raise ValueError(
                    f"checkpoint {pretrained_model_name_or_path} does not match the model: {problems}"
                )
        return (model, info) if wants_info else model

    def _run_block(
        self,
        block: OmniGen2TransformerBlock,
        hidden_states: torch.Tensor,
        mask: torch.Tensor,
        rotary: torch.Tensor,
        temb: torch.Tensor | None,
    ) -> torch.Tensor:
        """One block, through (non-reentrant) activation checkpointing when enabled and training."""
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, hidden_states, mask, rotary, temb)
        return block(hidden_states, mask, rotary, temb)

    def _latent_grid(self, latent: torch.Tensor, what: str) -> tuple[int, int]:
        """Patch grid (rows, cols) of a (C, H, W) input latent, checking its channels and size."""
        grid = token_grid(latent, self.config.patch_size, what)
        if latent.shape[0] != self.config.in_channels:
            raise ValueError(f"{what} has {latent.shape[0]} channels, expected {self.config.in_channels}")
        return grid

    def _text_lengths(
        self, text_hidden_states: torch.Tensor, text_attention_mask: torch.Tensor, batch: int
    ) -> list[int]:
        """Valid text tokens per sample; the mask must mark a prefix (padding on the right)."""
        if text_hidden_states.ndim != 3 or text_hidden_states.shape[0] != batch:
            raise ValueError(
                f"text_hidden_states must be (batch={batch}, tokens, {self.config.text_feat_dim}), "
                f"got {tuple(text_hidden_states.shape)}"
            )
        if text_attention_mask.shape != text_hidden_states.shape[:2]:
            raise ValueError(
                f"text_attention_mask shape {tuple(text_attention_mask.shape)} does not match "
                f"text_hidden_states {tuple(text_hidden_states.shape[:2])}"
            )
        mask = text_attention_mask.bool()
        lengths = mask.sum(dim=1)
        prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
        if not torch.equal(mask, prefix):
            raise ValueError("text_attention_mask must be right-padded (valid tokens first, then padding)")
        lengths = lengths.tolist()
        if min(lengths) == 0:
            raise ValueError("every sample needs at least one valid text token")
        return lengths

    @staticmethod
    def _reference_lists(ref_image_hidden_states: RefLatents, batch: int) -> list[list[torch.Tensor]]:
        """Per-sample lists of reference latents (empty when a sample has none)."""
        if ref_image_hidden_states is None:
            return [[] for _ in range(batch)]
        if len(ref_image_hidden_states) != batch:
            raise ValueError(
                f"ref_image_hidden_states has {len(ref_image_hidden_states)} entries for {batch} samples"
            )
        refs = [
            list(sample_refs) if sample_refs is not None else [] for sample_refs in ref_image_hidden_states
        ]
        for index, sample_refs in enumerate(refs):
            if len(sample_refs) > MAX_REFERENCE_IMAGES:
                raise ValueError(
                    f"sample {index} has {len(sample_refs)} reference images; at most {MAX_REFERENCE_IMAGES}"
                )
        return refs

    def _rotary_parts(
        self,
        freqs_cis: Sequence[torch.Tensor],
        text_lengths: list[int],
        ref_grids: list[list[tuple[int, int]]],
        image_grids: list[tuple[int, int]],
        device: torch.device,
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]], list[torch.Tensor], list[torch.Tensor]]:
        """Rotations of each sample's joint sequence `(L_i, head_dim // 2)` and its text, per-reference and
        image parts, in that order."""
        text_parts, ref_parts, image_parts, joint = [], [], [], []
        for text_len, sample_ref_grids, image_grid in zip(text_lengths, ref_grids, image_grids):
            ids = self.rope_embedder.position_ids(text_len, sample_ref_grids, image_grid, device)
            rotations = self.rope_embedder(freqs_cis, ids)
            sizes = [
                text_len,
                *(rows * cols for rows, cols in sample_ref_grids),
                image_grid[0] * image_grid[1],
            ]
            parts = list(rotations.split(sizes))
            text_parts.append(parts[0])
            ref_parts.append(parts[1:-1])
            image_parts.append(parts[-1])
            joint.append(rotations)
        return text_parts, ref_parts, image_parts, joint

    def _refine_references(
        self,
        refs: list[list[torch.Tensor]],
        ref_rotary: list[list[torch.Tensor]],
        temb: torch.Tensor,
    ) -> list[list[torch.Tensor]]:
        """Embed and refine every reference image on its own; returns per-sample lists of (L_ref, D)."""
        p = self.config.patch_size
        tokens, rotary, owners, indices = [], [], [], []
        for sample, (sample_refs, sample_rotary) in enumerate(zip(refs, ref_rotary)):
            for index, (latent, rot) in enumerate(zip(sample_refs, sample_rotary)):
                tokens.append(patchify(latent, p))
                rotary.append(rot)
                owners.append(sample)
                indices.append(index)
        if not tokens:
            return [[] for _ in refs]
        padded, mask = pad_sequences(tokens)
        padded_rotary, _ = pad_sequences(rotary)
        owner_index = torch.tensor(owners, device=padded.device)
        hidden = self.ref_image_patch_embedder(padded)
        hidden = hidden + self.image_index_embedding[torch.tensor(indices, device=padded.device)][:, None, :]
        ref_temb = temb[owner_index]
        for block in self.ref_image_refiner:
            hidden = self._run_block(block, hidden, mask, padded_rotary, ref_temb)
        refined: list[list[torch.Tensor]] = [[] for _ in refs]
        for row, (sample, seq) in enumerate(zip(owners, tokens)):
            refined[sample].append(hidden[row, : seq.shape[0]])
        return refined

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor | list[torch.Tensor],
        timestep: torch.Tensor,
        text_hidden_states: torch.Tensor,
        freqs_cis: Sequence[torch.Tensor],
        text_attention_mask: torch.Tensor,
        ref_image_hidden_states: RefLatents = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = False,
    ) -> torch.Tensor | list[torch.Tensor] | Transformer2DModelOutput:
        """Predict the flow velocity of each noisy latent.

        hidden_states: (B, C, H, W), or a list of B latents (C, H_i, W_i); timestep: (B,) or scalar in
        [0, 1]; text_hidden_states: (B, Lt, text_feat_dim); freqs_cis: `OmniGen2RotaryPosEmbed.get_freqs_cis`
        tables; text_attention_mask: (B, Lt), right-padded; ref_image_hidden_states: per sample a list of
        up to 5 latents (C, h, w) or None. `attention_kwargs={"scale": s}` scales LoRA layers (peft).
        Returns a (B, out_channels, H, W) tensor for tensor input, else a list of (out_channels, H_i, W_i).
        """
        is_tensor_input = isinstance(hidden_states, torch.Tensor)
        if is_tensor_input and hidden_states.ndim != 4:
            raise ValueError(f"hidden_states tensor must be (B, C, H, W), got {tuple(hidden_states.shape)}")
        latents = list(hidden_states.unbind(0)) if is_tensor_input else list(hidden_states)
        batch = len(latents)
        if batch == 0:
            raise ValueError("hidden_states is empty")
        p = self.config.patch_size
        image_grids = [self._latent_grid(latent, f"hidden_states[{i}]") for i, latent in enumerate(latents)]
        refs = self._reference_lists(ref_image_hidden_states, batch)
        ref_grids = [
            [
                self._latent_grid(ref, f"ref_image_hidden_states[{i}][{j}]")
                for j, ref in enumerate(sample_refs)
            ]
            for i, sample_refs in enumerate(refs)
        ]
        text_lengths = self._text_lengths(text_hidden_states, text_attention_mask, batch)
        device, dtype = latents[0].device, latents[0].dtype
        timestep = torch.as_tensor(timestep, device=device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)

        temb, text = self.time_caption_embed(timestep, text_hidden_states, dtype)
        freqs_cis = [table.to(device) for table in freqs_cis]

        text_rotary, ref_rotary, image_rotary, joint_rotary = self._rotary_parts(
            freqs_cis, text_lengths, ref_grids, image_grids, device
        )
        text_mask = text_attention_mask.bool()
        text_rotary_batch, _ = pad_sequences(text_rotary, length=text.shape[1])
        for block in self.context_refiner:
            text = self._run_block(block, text, text_mask, text_rotary_batch, None)

        image_tokens, image_mask = pad_sequences([patchify(latent, p) for latent in latents])
        image_rotary_batch, _ = pad_sequences(image_rotary)
        image = self.x_embedder(image_tokens)
        for block in self.noise_refiner:
            image = self._run_block(block, image, image_mask, image_rotary_batch, temb)

        refined_refs = self._refine_references(refs, ref_rotary, temb)

        joint_sequences = [
            torch.cat([text[i, :text_len], *refined_refs[i], image[i, : grid[0] * grid[1]]])
            for i, (text_len, grid) in enumerate(zip(text_lengths, image_grids))
        ]
        joint, joint_mask = pad_sequences(joint_sequences)
        joint_rotary_batch, _ = pad_sequences(joint_rotary)
        for block in self.layers:
            joint = self._run_block(block, joint, joint_mask, joint_rotary_batch, temb)
        joint = self.norm_out(joint, temb)

        output = []
        for i, (sequence, grid) in enumerate(zip(joint_sequences, image_grids)):
            end = sequence.shape[0]
            output.append(unpatchify(joint[i, end - grid[0] * grid[1] : end], grid, p))
        if is_tensor_input:
            output = torch.stack(output)
        if not return_dict:
            return output
        return Transformer2DModelOutput(sample=output)
