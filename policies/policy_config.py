"""The experiment's ``policy`` section for every built-in family: the shared keys plus one section per family.

``kind`` picks the family (``policies.registry``); the shared keys (OmniGen2's schema,
:class:`policies.omnigen2.config.OmniGen2PolicyConfig`) carry what every family reads — checkpoint, device,
dtype, LoRA, the sampling knobs — and each diffusers family reads its own section besides. Every key stays
declared, so OmegaConf rejects a misspelt one by its dotted name whichever kind is chosen.

What each family reads of the shared keys:

- all:             checkpoint, tiny, lora_checkpoint, tiny_seed, device, dtype, use_lora, lora_rank, lora_alpha,
                   lora_target_modules, num_inference_steps, noise_level, height, width, gradient_checkpointing.
- omnigen2:        also text_guidance_scale, image_guidance_scale, cfg_range (dual CFG), negative_prompt,
                   max_input_pixels, max_input_side_length, max_sequence_length.
- flux_kontext:    text_guidance_scale is the distilled guidance embedding's value (no CFG branches);
                   ``flux_kontext.*`` (:class:`policies.flux_kontext.FluxKontextConfig`).
- qwen_image_edit: text_guidance_scale is the true-CFG scale, applied inside cfg_range;
                   ``qwen_image_edit.*`` (:class:`policies.qwen_image_edit.QwenImageEditConfig`), whose
                   negative_prompt is the one this family uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.flux_kontext import FluxKontextConfig
from policies.omnigen2.config import OmniGen2PolicyConfig
from policies.qwen_image_edit import QwenImageEditConfig


@dataclass
class PolicyConfig(OmniGen2PolicyConfig):
    """The shared policy keys (defaults: OmniGen2's recipe) and the diffusers families' sections (validated with
    the tree by ``load_config``, and by their builder)."""

    flux_kontext: FluxKontextConfig = field(default_factory=FluxKontextConfig)
    qwen_image_edit: QwenImageEditConfig = field(default_factory=QwenImageEditConfig)
