"""`make bench-gpu`: the project's own classes at the real sizes, with random weights, on one device.

Builds the real-size components directly on the device from the configs in ``bench/configs/real/`` (the
official OmniGen2 transformer, the FLUX VAE, Qwen2.5-VL-3B as OmniGen2's text encoder, Qwen3-VL-8B as JRM's
backbone; no hub, a locally built tokenizer) and measures, each phase under its own time limit so one
failure does not hide the others:

- ``sampler``:   :class:`rl.sampler.PolicySampler` drawing one chunk of the preset (SDE, log-probs, dual CFG):
                 s/sample, peak memory, FLOPs counted on the first (cold) call and the achieved TFLOP/s;
- ``learner``:   :class:`rl.learner.LearnerWorker` training one chunk as the preset does (2 minibatches, one
                 optimizer step each; reference forward, policy forward, backward) for each
                 ``grpo.learner_micro_batch`` setting: s/sample per pass, peak memory, first-update ratio;
- ``reward``:    JRM scoring (one forward to ``<|reward|>``) vs the same backbone generating a fixed number of
                 tokens vs two-pass EditReward (:mod:`bench.reward_speed`'s scorers): s/pair, peak memory;
- ``jrm_train``: one JRM stage-1 loss + backward (alpha 0.7, rationales, gradient checkpointing, no optimizer
                 step): s/pair, peak memory, TFLOP/s;
- ``colocated``: a sampler and a :class:`rl.reward_actor.RewardActor` (JRM) on one device: one chunk sampled
                 and scored, peak memory (the preset's 0.5 + 0.5 GPU bundle);
- ``projection``: one round of ``configs/omnigen2_jrm_32gpu.yaml`` (288 samples, 32 GPUs) from the figures
                 above, in split placement (24 sampler / 8 learner GPUs, rounds overlapped; and with the
                 pools sized from the measured costs, ``split_balanced``) and in hybrid placement (every
                 GPU samples, scores and trains its own share; the preset's placement);
- ``family_flux_kontext`` / ``family_qwen_image_edit``: the diffusers policy families at their released sizes
                 (FLUX.1 Kontext [dev]: 12B transformer, FLUX VAE, CLIP-L + T5-v1.1-XXL; Qwen-Image-Edit: 20B
                 transformer, its VAE, Qwen2.5-VL-7B), random weights built on the device, each with its preset's
                 policy section (``configs/<family>_jrm_32gpu.yaml``: guidance, noise level, LoRA targets, text
                 length), built once through the policy registry and shared by a :class:`rl.sampler.PolicySampler`
                 and a :class:`rl.learner.LearnerWorker` (one copy on the device, as on a hybrid GPU): s/sample and
                 peak memory of sampling one chunk, and of one learner pass per ``family_micro_batches`` setting
                 (the preset's 2 minibatches, reference + policy forward and backward per trained step), the
                 first-update ratio, the resident weights and each component's parameter count, and (with the
                 ``reward`` phase's JRM s/pair) the family's 32-GPU round projected as in ``projection``. A
                 failure (OOM, time limit) is recorded in the family's entry with the figures measured before it.

``--scale tiny --device cpu`` runs the same code on the tiny configs of ``bench/configs/tiny/`` (a CPU test
keeps it from rotting; the families' tiny configs are :mod:`policies.diffusers_tiny`'s sizes). Each config's
``_source`` names the file it copies and ``_verified`` says which values were checked against a copy of the
released config.json (the rest are from memory); both go to the JSON report. Peak memory: the CUDA allocator's
peak on a GPU; on the CPU the peak resident-set growth during the measured call. Only torch, transformers,
diffusers, peft and omegaconf are needed (no Ray, no wandb). The local tokenizer is a byte-level BPE: texts
take about twice as many tokens as with Qwen's.
Writes ``runs/bench/real_scale.json`` (``real_scale_tiny.json`` for the tiny scale) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import signal
import statistics
import time
import traceback
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxTransformer2DModel,
    QwenImageEditPipeline,
    QwenImageTransformer2DModel,
)
from omegaconf import OmegaConf
from PIL import Image
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    T5Config,
    T5EncoderModel,
)

from bench.reward_speed import PeakRSS, generative_scorer
from editrl.config import _read_yaml_chain, validate_tree
from editrl.io import atomic_write_json
from editrl.tiny_qwen_vl import QWEN3_VL_CHAT_TEMPLATE, build_tiny_image_processor
from editrl.tiny_tokenizer import QWEN_VL_CHAT_TEMPLATE, build_tiny_qwen_tokenizer
from policies.diffusers_policy import DiffusersEditPolicy, configure_adapter
from policies.diffusers_tiny import FLUX_SCHEDULER_CONFIG, QWEN_SCHEDULER_CONFIG, TinyQwen2VLProcessor
from policies.flux_kontext import FluxKontextPolicy
from policies.omnigen2.config import OmniGen2PolicyConfig
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from policies.omnigen2.scheduler import OmniGen2FlowMatchScheduler
from policies.omnigen2.transformer import OmniGen2Transformer2DModel
from policies.policy_config import PolicyConfig
from policies.qwen_image_edit import QwenImageEditPolicy
from policies.registry import PolicyRegistry, default_policy_registry
from policies.rollout import Rollout
from reward.editreward import EDITREWARD_TOKEN, EditRewardModel
from reward.jrm.model import GLOBAL_TOKEN, JRM, REWARD_TOKEN, JRMConfig, region_tokens
from reward.jrm.objective import compute_loss
from reward.jrm.pairs import EditScores, LoadedPair, PreferencePair
from reward.registry import RewardModelConfig, default_registry
from rl.algorithms import assign_minibatches, minibatch_element_counts, trained_step_indices
from rl.config import GRPOConfig
from rl.learner import LearnerWorker
from rl.reward_actor import RewardActor
from rl.sampler import PolicySampler
from rl.types import LearnChunk, SampleRequest, WeightSyncPayload

CONFIGS = Path(__file__).resolve().parent / "configs"
PRESETS = Path(__file__).resolve().parents[1] / "configs"
COMPONENTS = (
    "omnigen2_transformer", "flux_vae", "qwen2_5_vl_3b", "qwen3_vl_8b",
    "flux_kontext_transformer", "clip_l_text", "t5_xxl_encoder",
    "qwen_image_transformer", "qwen_image_vae", "qwen2_5_vl_7b",
)
#: The diffusers policy families measured at their released sizes (phase ``family_<name>``, preset
#: ``configs/<name>_jrm_32gpu.yaml``).
FAMILIES = ("flux_kontext", "qwen_image_edit")
PHASES = ("sampler", "learner", "reward", "jrm_train", "colocated", "projection",
          *(f"family_{family}" for family in FAMILIES))
INSTRUCTION = "Replace the red car with a blue bicycle and keep the street, the lighting and the background unchanged."
#: Dense bf16 peak (TFLOP/s) of the GPUs the targets are stated for, to report the achieved fraction.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass(frozen=True)
class Scale:
    """The work one scale measures (``real``: the 32-GPU preset's settings).

    dtype:              compute dtype of every model.
    image_side:         source and output side in pixels; ``jrm_pixels`` the JRM's per-image pixel budget.
    num_steps / timestep_fraction / samples_per_chunk: the sampler's T, the trained fraction, samples per chunk.
    micro_batches:      ``grpo.learner_micro_batch`` settings the learner phase runs (0 = per trained step).
    generated_tokens:   tokens the generative scorer is forced to produce.
    rationale_tokens:   rationale length per side in the JRM training step; ``train_pairs`` pairs per step.
    lora_rank / lora_alpha: the policy's adapter.
    repeats:            timed calls per measurement (after one cold call); ``learner_repeats`` for a learner
                        pass (default ``repeats``; a real-size pass takes tens of seconds).
    phase_timeout_s:    wall-clock limit of each phase.
    gradient_checkpointing: in the learner's transformer and the JRM training step.
    family_micro_batches: ``grpo.learner_micro_batch`` settings the family phases run (0 = per trained step,
                        the presets' setting).
    family_repeats:     timed calls per family measurement (after the cold call, which is the first update).
    family_timeout_s:   wall-clock limit of each family phase (build, sampling and learning of a 12B/20B model).
    """

    name: str
    dtype: torch.dtype
    image_side: int
    num_steps: int
    timestep_fraction: float
    samples_per_chunk: int
    micro_batches: tuple[int, ...]
    jrm_pixels: int
    generated_tokens: int
    rationale_tokens: int
    train_pairs: int
    lora_rank: int
    lora_alpha: int
    repeats: int
    phase_timeout_s: float
    gradient_checkpointing: bool
    learner_repeats: int | None = None
    family_micro_batches: tuple[int, ...] = (0,)
    family_repeats: int = 1
    family_timeout_s: float = 1200.0


SCALES = {
    "real": Scale("real", torch.bfloat16, 512, 20, 0.6, 6, (0, 12), 200_704, 512, 300, 2, 32, 64, 2, 600.0, True,
                  learner_repeats=1),
    "tiny": Scale("tiny", torch.float32, 32, 4, 0.5, 4, (0, 10**6), 64 * 64, 16, 40, 2, 4, 8, 1, 60.0, True,
                  family_timeout_s=60.0),
}

#: The 32-GPU preset's round (configs/omnigen2_jrm_32gpu.yaml).
PRESET_SAMPLES, PRESET_GPUS, PRESET_SAMPLER_GPUS, PRESET_STEPS = 288, 32, 24, 300


# -- configs and builders ------------------------------------------------------------------------------------

def load_component_configs(scale: str) -> dict[str, dict[str, Any]]:
    """``bench/configs/<scale>/<component>.json`` for every component, without the ``_source`` notes."""
    configs = {}
    for name in COMPONENTS:
        raw = json.loads((CONFIGS / scale / f"{name}.json").read_text())
        configs[name] = {k: v for k, v in raw.items() if not k.startswith("_")}
    return configs


def _qwen_config(config_cls: type, raw: dict[str, Any], tokenizer: Any) -> Any:
    """A Qwen-VL config from its JSON, with the local tokenizer's special-token ids and a vocabulary that
    holds it (the real vocabulary size is kept when larger, so the embedding and LM head keep their size)."""
    ids = tokenizer.convert_tokens_to_ids
    text = dict(raw["text_config"])
    text.update(
        vocab_size=max(int(text.get("vocab_size", 0)), len(tokenizer)),
        pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
    )
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "text_config")}
    return config_cls(
        **fields, text_config=text, image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )


def unzero_weights_(module: torch.nn.Module, gain: float = 0.1) -> None:
    """Give every all-zero weight matrix small random values ``N(0, (gain / sqrt(fan_in))^2)`` in place.

    The official init zeroes the transformer's output head and its blocks' modulation gates, so a randomly
    initialised model predicts exactly zero velocity and every LoRA gradient is zero; with these weights the
    work is the same and the gradients and ratios are not trivial.
    """
    with torch.no_grad():
        for param in module.parameters():
            if param.ndim >= 2 and not bool(torch.any(param)):
                param.normal_(0.0, gain / math.sqrt(param[0].numel()))


def build_policy(configs: dict[str, dict[str, Any]], cfg: OmniGen2PolicyConfig) -> OmniGen2EditPipeline:
    """The OmniGen2 policy at the configs' sizes, random weights built on ``cfg.device``, LoRA added."""
    tokenizer = build_tiny_qwen_tokenizer()
    with torch.device(cfg.device):
        transformer = OmniGen2Transformer2DModel(**configs["omnigen2_transformer"])
        unzero_weights_(transformer)
        vae = AutoencoderKL(**configs["flux_vae"])
        mllm = Qwen2_5_VLForConditionalGeneration(_qwen_config(Qwen2_5_VLConfig, configs["qwen2_5_vl_3b"], tokenizer))
    pipeline = OmniGen2EditPipeline(
        transformer, vae, OmniGen2FlowMatchScheduler(), mllm, tokenizer, sampling=cfg.sampling_settings(),
        max_input_pixels=cfg.max_input_pixels, max_input_side_length=cfg.max_input_side_length,
        max_sequence_length=cfg.max_sequence_length,
    ).to(cfg.device, cfg.torch_dtype)
    pipeline.add_lora(rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules)
    if cfg.gradient_checkpointing:
        pipeline.transformer.enable_gradient_checkpointing()
    return pipeline


def _vl_parts(configs: dict[str, dict[str, Any]], scale: Scale, extra_tokens: tuple[str, ...] = ()) -> tuple:
    """(tokenizer, image processor, Qwen3VLConfig) of the JRM-size backbone."""
    tokenizer = build_tiny_qwen_tokenizer(extra_special_tokens=extra_tokens)
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    raw = configs["qwen3_vl_8b"]
    processor = build_tiny_image_processor(raw["vision_config"]["patch_size"], min_pixels=32 * 32, max_pixels=scale.jrm_pixels)
    return tokenizer, processor, _qwen_config(Qwen3VLConfig, raw, tokenizer)


def build_jrm(configs: dict[str, dict[str, Any]], scale: Scale, device: torch.device, batch_size: int) -> JRM:
    """JRM on a Qwen3-VL backbone of the configs' size (random weights built on ``device``), alpha 0.7."""
    jrm_cfg = JRMConfig(min_pixels=32 * 32, max_pixels=scale.jrm_pixels, batch_size=batch_size)
    extra = (REWARD_TOKEN, GLOBAL_TOKEN, *region_tokens(jrm_cfg.max_region_index))
    tokenizer, processor, config = _vl_parts(configs, scale, extra)
    with torch.device(device):
        backbone = Qwen3VLForConditionalGeneration(config)
    backbone.to(scale.dtype)
    return JRM(backbone, tokenizer, processor, jrm_cfg).eval()


def build_editreward(configs: dict[str, dict[str, Any]], scale: Scale, device: torch.device, batch_size: int) -> EditRewardModel:
    """Two-pass EditReward on the same backbone size as JRM (random weights built on ``device``)."""
    tokenizer, processor, config = _vl_parts(configs, scale, (EDITREWARD_TOKEN,))
    with torch.device(device):
        model = EditRewardModel(config, tokenizer, processor, batch_size=batch_size, pixels=scale.jrm_pixels)
    model.backbone.to(scale.dtype)
    return model.eval()


def policy_config(scale: Scale, device: torch.device) -> OmniGen2PolicyConfig:
    """The preset's policy section at this scale (kind ``bench``, built by :func:`build_policy`)."""
    return OmniGen2PolicyConfig(
        # no checkpoint (tiny=True): build_policy makes random weights at this scale's sizes
        kind="bench", tiny=True, device=str(device), dtype={torch.bfloat16: "bfloat16", torch.float32: "float32"}[scale.dtype],
        lora_rank=scale.lora_rank, lora_alpha=scale.lora_alpha, num_inference_steps=scale.num_steps,
        height=scale.image_side, width=scale.image_side, max_input_pixels=scale.image_side**2,
        max_input_side_length=scale.image_side, gradient_checkpointing=scale.gradient_checkpointing,
    )


# -- the diffusers policy families ---------------------------------------------------------------------------

#: Qwen2-VL's released image-processor pixel budget (``preprocessor_config.json``: 56^2 .. 28^2 * 16384; from
#: memory): a 512^2 reference becomes 504^2 pixels, 324 vision tokens.
QWEN_VL_MIN_PIXELS, QWEN_VL_MAX_PIXELS = 3136, 12_845_056


def _vocab(raw: dict[str, Any], tokenizer: Any) -> int:
    """The config's vocabulary size, or the local tokenizer's when larger (tiny configs say 0)."""
    return max(int(raw.get("vocab_size", 0)), len(tokenizer))


def _built(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, unzero: bool = False) -> torch.nn.Module:
    """``module`` cast to ``dtype`` right after it is built (so one component at a time is ever in float32);
    ``unzero``: give its all-zero matrices small values first (:func:`unzero_weights_`; not on ``meta``)."""
    if unzero and device.type != "meta":
        unzero_weights_(module)
    return module.to(dtype)


def build_flux_kontext_pipeline(configs: dict[str, dict[str, Any]], device: torch.device,
                                dtype: torch.dtype) -> FluxKontextPipeline:
    """``FluxKontextPipeline`` at the configs' sizes (transformer, FLUX VAE, CLIP-L, T5-v1.1-XXL encoder), random
    weights built on ``device`` (``meta``: shapes only), the released scheduler config, the local tokenizer for
    both text encoders (CLIP's limited to its 77 positions)."""
    clip_raw, t5_raw = configs["clip_l_text"], configs["t5_xxl_encoder"]
    clip_tokenizer = build_tiny_qwen_tokenizer()
    clip_tokenizer.model_max_length = int(clip_raw["max_position_embeddings"])
    t5_tokenizer = build_tiny_qwen_tokenizer()
    pad = clip_tokenizer.pad_token_id
    # eos = pad: CLIP's pooled output is read at the first padding position, i.e. the end of the text
    clip_config = CLIPTextConfig(**{**clip_raw, "vocab_size": _vocab(clip_raw, clip_tokenizer), "pad_token_id": pad,
                                    "bos_token_id": pad, "eos_token_id": pad})
    t5_config = T5Config(**{**t5_raw, "vocab_size": _vocab(t5_raw, t5_tokenizer), "pad_token_id": pad,
                            "decoder_start_token_id": pad})
    with torch.device(device):
        transformer = _built(FluxTransformer2DModel(**configs["flux_kontext_transformer"]), device, dtype, unzero=True)
        vae = _built(AutoencoderKL(**configs["flux_vae"]), device, dtype)
        clip = _built(CLIPTextModel(clip_config), device, dtype)
        t5 = _built(T5EncoderModel(t5_config), device, dtype)
    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG), vae=vae, text_encoder=clip,
        tokenizer=clip_tokenizer, text_encoder_2=t5, tokenizer_2=t5_tokenizer, transformer=transformer,
    )


def build_qwen_image_edit_pipeline(configs: dict[str, dict[str, Any]], device: torch.device,
                                   dtype: torch.dtype) -> QwenImageEditPipeline:
    """``QwenImageEditPipeline`` at the configs' sizes (transformer, Qwen-Image VAE, Qwen2.5-VL text encoder with
    its vision tower), random weights built on ``device`` (``meta``: shapes only), the released scheduler config,
    the local tokenizer in a Qwen2-VL processor with the released pixel budget."""
    tokenizer = build_tiny_qwen_tokenizer()
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    raw = configs["qwen2_5_vl_7b"]
    image_processor = build_tiny_image_processor(raw["vision_config"].get("patch_size", 14),
                                                 min_pixels=QWEN_VL_MIN_PIXELS, max_pixels=QWEN_VL_MAX_PIXELS)
    processor = TinyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = _qwen_config(Qwen2_5_VLConfig, raw, tokenizer)
    with torch.device(device):
        transformer = QwenImageTransformer2DModel(**configs["qwen_image_transformer"])
        transformer = _built(transformer, device, dtype, unzero=True)
        vae = _built(AutoencoderKLQwenImage(**configs["qwen_image_vae"]), device, dtype)
        text_encoder = _built(Qwen2_5_VLForConditionalGeneration(config), device, dtype)
    return QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_SCHEDULER_CONFIG), vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, processor=processor, transformer=transformer,
    )


FAMILY_PIPELINES: dict[str, Callable[[dict[str, dict[str, Any]], torch.device, torch.dtype], Any]] = {
    "flux_kontext": build_flux_kontext_pipeline, "qwen_image_edit": build_qwen_image_edit_pipeline,
}


def build_family_policy(family: str, configs: dict[str, dict[str, Any]], cfg: PolicyConfig) -> DiffusersEditPolicy:
    """The family's policy (what ``build_flux_kontext`` / ``build_qwen_image_edit`` make of a checkpoint) around a
    pipeline of the configs' sizes with random weights: moved and cast, LoRA and gradient checkpointing as
    ``cfg`` says, sampling defaults from ``cfg``."""
    pipe = FAMILY_PIPELINES[family](configs, torch.device(cfg.device), cfg.torch_dtype)
    if family == "flux_kontext":
        policy: DiffusersEditPolicy = FluxKontextPolicy(
            pipe, sampling=cfg.sampling_settings(), max_sequence_length=cfg.flux_kontext.max_sequence_length)
    else:
        section = cfg.qwen_image_edit
        policy = QwenImageEditPolicy(pipe, sampling=cfg.sampling_settings(), negative_prompt=section.negative_prompt,
                                     max_sequence_length=section.max_sequence_length)
    policy.to(cfg.device, cfg.torch_dtype)
    return configure_adapter(policy, cfg)


def family_policy_config(family: str, scale: Scale, device: torch.device) -> PolicyConfig:
    """The ``policy`` section of ``configs/<family>_jrm_32gpu.yaml`` (its ``base:`` chain merged), with kind
    ``bench`` (built by :func:`build_family_policy`) and this scale's device, dtype, steps, size and LoRA."""
    node = OmegaConf.structured(PolicyConfig)
    for layer in _read_yaml_chain(PRESETS / f"{family}_jrm_32gpu.yaml"):
        if "policy" in layer:
            node = OmegaConf.merge(node, layer["policy"])
    node = OmegaConf.merge(node, {
        "kind": "bench", "checkpoint": None, "tiny": True, "lora_checkpoint": None, "device": str(device),
        "dtype": {torch.bfloat16: "bfloat16", torch.float32: "float32"}[scale.dtype],
        "num_inference_steps": scale.num_steps, "height": scale.image_side, "width": scale.image_side,
        "lora_rank": scale.lora_rank, "lora_alpha": scale.lora_alpha,
        "gradient_checkpointing": scale.gradient_checkpointing,
    })
    cfg = OmegaConf.to_object(node)
    validate_tree(cfg)
    return cfg


def component_parameters(pipe: Any) -> dict[str, float]:
    """Parameters (billions) of each ``torch.nn.Module`` component of a diffusers pipeline."""
    return {name: sum(p.numel() for p in module.parameters()) / 1e9
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}


class BuildOnce:
    """A policy-registry builder that builds on the first call and returns that same policy afterwards, so a
    sampler and a learner share one copy on the device (a GPU holds one 20B policy, not two)."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self.build = build
        self.policy: Any = None

    def __call__(self, cfg: Any) -> Any:
        if self.policy is None:
            self.policy = self.build(cfg)
        return self.policy


# -- measuring -----------------------------------------------------------------------------------------------

class PhaseTimeout(TimeoutError):
    """A phase ran past its wall-clock limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`PhaseTimeout` in the main thread once ``seconds`` have passed inside the block."""

    def expire(signum: int, frame: object) -> None:
        raise PhaseTimeout(f"ran past its {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class PeakMemory:
    """Peak memory (GiB) inside a ``with`` block: the CUDA allocator's peak, or on the CPU the peak RSS growth."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.gib = 0.0
        self._rss: PeakRSS | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss = PeakRSS().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            _sync(self.device)
            self.gib = torch.cuda.max_memory_allocated(self.device) / 2**30
        else:
            self._rss.__exit__(*exc)
            self.gib = self._rss.delta_mib / 1024


def measured(fn: Callable[[], Any], device: torch.device, repeats: int, *, count_flops: bool = True) -> dict[str, Any]:
    """One cold call, ``repeats`` timed calls with their peak memory, then (``count_flops``) one call under a
    FLOP counter.

    The counted call comes last and its failure is recorded, not raised: torch's FLOP counter keeps every
    intermediate alive (a learner pass under it peaks at about 9x its memory, measured on the CPU), and older
    torch versions reject grouped-query attention (:func:`gqa_flop_mapping` covers that). Returns seconds
    (median of the timed calls), cold_seconds, flops (of one call; None when not counted, with
    ``flops_error`` saying why), peak_memory_gib, the last timed call's result under ``result`` and the cold
    call's under ``cold_result``.
    """
    _sync(device)
    start = time.perf_counter()
    cold_result = fn()
    _sync(device)
    cold = time.perf_counter() - start
    times, result = [], None
    with PeakMemory(device) as memory:
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            result = fn()
            _sync(device)
            times.append(time.perf_counter() - start)
    figures = {"seconds": statistics.median(times), "cold_seconds": cold, "flops": None,
               "peak_memory_gib": memory.gib, "result": result, "cold_result": cold_result}
    if count_flops:
        try:
            with FlopCounterMode(display=False, custom_mapping=gqa_flop_mapping()) as counter:
                fn()
            figures["flops"] = float(counter.get_total_flops())
        except (AssertionError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            figures["flops_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:300]
            _free(device)
    else:
        figures["flops_error"] = "not counted (the FLOP counter multiplies a training pass's memory)"
    return figures


def _expand_heads(query_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """A key/value shape ``(B, H_kv, S, D)`` with the query's head count ``H_q`` (what GQA broadcasts to)."""
    return (shape[0], query_shape[1], *shape[2:])


def sdpa_gqa_forward_flops(query_shape: tuple[int, ...], key_shape: tuple[int, ...], value_shape: tuple[int, ...],
                           *args: Any, **kwargs: Any) -> int:
    """FLOPs of one attention forward, q ``(B, H_q, L, D)``, k ``(B, H_kv, S, D)``, v ``(B, H_kv, S, D_v)``:
    ``2·B·H_q·L·S·D + 2·B·H_q·L·S·D_v`` (QK^T and AV, the key/value heads broadcast to the query's)."""
    return flop_counter.sdpa_flop_count(query_shape, _expand_heads(query_shape, key_shape),
                                        _expand_heads(query_shape, value_shape))


def sdpa_gqa_backward_flops(grad_out_shape: tuple[int, ...], query_shape: tuple[int, ...], key_shape: tuple[int, ...],
                            value_shape: tuple[int, ...], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one attention backward (torch's count for the key/value heads broadcast to the query's)."""
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, _expand_heads(query_shape, key_shape),
                                                 _expand_heads(query_shape, value_shape))


def gqa_flop_mapping() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the fused attention kernels that accept fewer key/value heads than query heads
    (torch before 2.13 asserts equal heads); each kernel's first arguments are (q, k, v), and its backward's
    (grad_out, q, k, v)."""
    aten = torch.ops.aten
    forward = ["_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
               "_scaled_dot_product_cudnn_attention"]
    mapping: dict[Any, Callable[..., int]] = {}
    for name in forward:
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = sdpa_gqa_forward_flops
        if hasattr(aten, f"{name}_backward"):
            mapping[getattr(aten, f"{name}_backward")] = sdpa_gqa_backward_flops
    return mapping


def _flop_figures(m: dict[str, Any], samples: int = 1) -> dict[str, Any]:
    """``tflop_per_sample`` and ``achieved_tflop_s`` of a :func:`measured` result, or why there are none."""
    if m["flops"] is None:
        return {"flops_error": m.get("flops_error", "not counted")}
    return {"tflop_per_sample": m["flops"] / samples / 1e12, "achieved_tflop_s": m["flops"] / max(m["seconds"], 1e-9) / 1e12}


def _noise_image(side: int, seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (side, side, 3), generator=gen, dtype=torch.uint8).numpy())


def _request(scale: Scale, samples: int) -> SampleRequest:
    return SampleRequest(
        record_ids=["bench"], instructions=[INSTRUCTION], sources=[[_noise_image(scale.image_side, 0)]],
        group_ids=torch.tensor([0]), samples_per_group=samples, seed=0, learner_version=0,
    )


@dataclass
class Context:
    """What every phase gets: the scale, the device, the component configs, and the phases done so far."""

    scale: Scale
    device: torch.device
    configs: dict[str, dict[str, Any]]
    results: Mapping[str, dict[str, Any]]
    #: figures the running phase has measured so far (kept in its entry if a later step fails)
    partial: dict[str, Any] = field(default_factory=dict)

    def policy_registry(self) -> PolicyRegistry:
        return default_policy_registry().extended(bench=lambda cfg: build_policy(self.configs, cfg))

    def sampler(self) -> PolicySampler:
        """A PolicySampler with its own (built) adapter installed as version 0."""
        sampler = PolicySampler(policy_config(self.scale, self.device), max_weight_lag=0, policy_registry=self.policy_registry())
        sampler.load_weights(WeightSyncPayload(tensors=sampler.policy.adapter_state().tensors, version=0))
        return sampler


# -- phases --------------------------------------------------------------------------------------------------

def phase_sampler(ctx: Context) -> dict[str, Any]:
    sampler = ctx.sampler()
    n = ctx.scale.samples_per_chunk
    request = _request(ctx.scale, n)
    m = measured(lambda: sampler.sample(request), ctx.device, ctx.scale.repeats)
    figures = {
        "samples_per_chunk": n, "seconds_per_chunk": m["seconds"], "seconds_per_sample": m["seconds"] / n,
        "cold_seconds": m["cold_seconds"], **_flop_figures(m, n), "peak_memory_gib": m["peak_memory_gib"],
    }
    return {**figures, **_utilisation(ctx.device, figures.get("achieved_tflop_s"))}


def _utilisation(device: torch.device, tflop_s: float | None) -> dict[str, float]:
    """The fraction of the GPU's dense bf16 peak, when the GPU is one of :data:`BF16_PEAK_TFLOPS`."""
    if device.type != "cuda" or tflop_s is None:
        return {}
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    return {"fraction_of_bf16_peak": tflop_s / peak} if peak else {}


def _learn_chunk(rollout: Rollout, scale: Scale, num_minibatches: int) -> LearnChunk:
    """All samples kept, split into ``num_minibatches``, normalised random advantages, the trained fraction."""
    n, steps = rollout.log_probs.shape
    gen = torch.Generator().manual_seed(0)
    advantages = torch.randn(n, generator=gen)
    advantages = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-4)
    idx = trained_step_indices(n, steps, scale.timestep_fraction, gen)
    valid = torch.ones(n, dtype=torch.bool)
    return LearnChunk(advantages, valid, idx, assign_minibatches(valid, num_minibatches, gen))


def phase_learner(ctx: Context) -> dict[str, Any]:
    scale, n = ctx.scale, ctx.scale.samples_per_chunk
    # the preset's update: the chunk's samples in 2 minibatches (one optimizer step each), one pass
    grpo = GRPOConfig(timestep_fraction=scale.timestep_fraction, num_updates_per_step=2, num_epochs_per_step=1)
    learner = LearnerWorker(policy_config(scale, ctx.device), grpo, policy_registry=ctx.policy_registry())
    generators = [torch.Generator().manual_seed(i) for i in range(n)]
    with torch.no_grad():
        rollout = learner.policy.sample_with_logprob([_noise_image(scale.image_side, 0)] * n, [INSTRUCTION] * n,
                                                     generator=generators)
    chunk = _learn_chunk(rollout, scale, grpo.num_updates_per_step)
    k = chunk.step_indices.shape[1]
    elements = minibatch_element_counts(chunk.minibatch, grpo.num_updates_per_step, k)
    # the first update on the learner's own fresh rollout: the ratio is 1 up to rounding (and a warm-up)
    first = learner.learn([rollout], [chunk], elements, n)
    figures: dict[str, Any] = {
        "samples": n, "trained_steps_per_sample": k, "optimizer_steps_per_pass": first.optimizer_steps,
        "first_update_ratio_max_dev": first.first_update_ratio_max_dev,
    }
    for micro_batch in scale.micro_batches:
        learner.grpo = replace(grpo, learner_micro_batch=micro_batch)
        key = f"micro_batch_{micro_batch}"
        try:
            m = measured(lambda: learner.learn([rollout], [chunk], elements, n), ctx.device,
                         scale.learner_repeats or scale.repeats, count_flops=False)
        except torch.OutOfMemoryError as exc:
            figures[key] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            continue
        finally:
            _free(ctx.device)
        figures[key] = {
            "max_rows_per_backward": min(micro_batch or n // grpo.num_updates_per_step, max(elements)),
            "seconds_per_pass": m["seconds"],
            "seconds_per_sample": m["seconds"] / n, "cold_seconds": m["cold_seconds"],
            "peak_memory_gib": m["peak_memory_gib"], "ratio_max_dev_after_updates": m["result"].ratio_max_dev,
        }
    return figures


def _pairs(scale: Scale, n: int) -> tuple[list[Image.Image], list[Image.Image], list[str]]:
    return ([_noise_image(scale.image_side, 2 * i) for i in range(n)],
            [_noise_image(scale.image_side, 2 * i + 1) for i in range(n)], [INSTRUCTION] * n)


def phase_reward(ctx: Context) -> dict[str, Any]:
    scale, n = ctx.scale, ctx.scale.samples_per_chunk
    jrm = build_jrm(ctx.configs, scale, ctx.device, batch_size=n)
    editreward = build_editreward(ctx.configs, scale, ctx.device, batch_size=n)
    sources, edits, instructions = _pairs(scale, n)
    scorers = {
        "jrm": lambda: jrm.score(sources, edits, instructions),
        "generative": generative_scorer(jrm, sources, edits, instructions, tokens=scale.generated_tokens),
        "two_pass": lambda: editreward.score(sources, edits, instructions),
    }
    figures = ctx.partial  # kept if a later scorer fails
    figures.update(pairs_per_batch=n, generated_tokens=scale.generated_tokens)
    for name, fn in scorers.items():
        m = measured(fn, ctx.device, scale.repeats, count_flops=False)
        figures[name] = {"seconds_per_pair": m["seconds"] / n, "peak_memory_gib": m["peak_memory_gib"]}
    jrm_s = figures["jrm"]["seconds_per_pair"]
    figures["speedup_jrm_vs_generative"] = figures["generative"]["seconds_per_pair"] / jrm_s
    figures["speedup_jrm_vs_two_pass"] = figures["two_pass"]["seconds_per_pair"] / jrm_s
    figures["jrm_tokens_per_sequence"] = float(jrm.scoring_inputs(sources[:1], edits[:1], instructions[:1]).input_ids.shape[1])
    return figures


def rationale_text(tokenizer: Any, tokens: int) -> str:
    """A joint JSON rationale (the paper's IF and VQ format) of about ``tokens`` tokens under ``tokenizer``."""
    sentence = "The <|bbox_0|> car is replaced by a blue bicycle; <|global|> the street and the lighting are unchanged. "
    region = [{"id": 0, "label": "car", "bbox_2d": [120, 200, 610, 780]}]

    def joint(text: str) -> str:
        return json.dumps({
            "instruction_following": {"edit_region": region, "reasoning": text.strip()},
            "visual_quality": {"reasoning": "Clean edges, consistent lighting, no artefacts."},
        })

    text = sentence
    while len(tokenizer(joint(text)).input_ids) < tokens:
        text += sentence
    return joint(text)


def phase_jrm_train(ctx: Context) -> dict[str, Any]:
    scale, n = ctx.scale, ctx.scale.train_pairs
    jrm = build_jrm(ctx.configs, scale, ctx.device, batch_size=n)
    if scale.gradient_checkpointing:
        jrm.backbone.activation_checkpointing_enable()
    jrm.train()
    rationale = rationale_text(jrm.tokenizer, scale.rationale_tokens)
    sources, edits, instructions = _pairs(scale, 2 * n)
    pairs = [
        LoadedPair(
            PreferencePair(
                record_id=f"bench-{i}", instruction=instructions[i], source=Path("source.png"),
                preferred=Path("a.png"), rejected=Path("b.png"), scores_preferred=EditScores(4.0, 3.0, 3.5),
                scores_rejected=EditScores(2.0, 3.0, 2.5), rationales={"preferred": rationale, "rejected": rationale},
            ),
            sources[i], edits[i], edits[n + i],
        )
        for i in range(n)
    ]

    def step() -> float:
        jrm.zero_grad(set_to_none=True)
        loss = compute_loss(jrm, pairs, 0.7).total
        loss.backward()
        return float(loss.detach())

    m = measured(step, ctx.device, scale.repeats)
    return {
        "pairs": n, "rationale_tokens": scale.rationale_tokens, "seconds_per_step": m["seconds"],
        "seconds_per_pair": m["seconds"] / n, "cold_seconds": m["cold_seconds"],
        **_flop_figures(m, n), "peak_memory_gib": m["peak_memory_gib"],
        "loss": m["result"],
    }


def phase_colocated(ctx: Context) -> dict[str, Any]:
    scale, n = ctx.scale, ctx.scale.samples_per_chunk
    sampler = ctx.sampler()
    jrm = build_jrm(ctx.configs, scale, ctx.device, batch_size=n)
    registry = default_registry().extended(bench=lambda cfg: jrm)
    actor = RewardActor(RewardModelConfig(kind="bench", device=str(ctx.device), batch_size=n), registry=registry)
    _free(ctx.device)
    resident = torch.cuda.memory_allocated(ctx.device) / 2**30 if ctx.device.type == "cuda" else 0.0
    request = _request(scale, n)
    with PeakMemory(ctx.device) as memory:
        start = time.perf_counter()
        for _ in range(scale.repeats):
            _, scoring = sampler.sample(request)
            result = actor.score(scoring)
        _sync(ctx.device)
        seconds = (time.perf_counter() - start) / scale.repeats
    return {
        "samples_per_chunk": n, "seconds_per_chunk": seconds, "resident_gib_after_build": resident,
        "peak_memory_gib": memory.gib, "scores_finite": float(torch.isfinite(result.reward).all()),
    }


def balanced_sampler_gpus(sample_s: float, score_s: float, learn_s: float, passes: int, *, gpus: int = PRESET_GPUS) -> int:
    """Sampler GPUs (1 .. gpus-1) of a split placement with the shortest overlapped round for these per-sample
    seconds (draw, score, one training pass): the pool sizes for ``ray.placement=split`` from measured costs,
    ``ray.num_samplers`` = the result and ``ray.num_learner_workers`` = ``gpus`` minus it."""
    return min(range(1, gpus), key=lambda s: max((sample_s + score_s) / s, learn_s * passes / (gpus - s)))


def project_round(
    sample_s: float, score_s: float, learn_s: float, passes: int, *, samples: int = PRESET_SAMPLES,
    gpus: int = PRESET_GPUS, sampler_gpus: int = PRESET_SAMPLER_GPUS, rounds: int = PRESET_STEPS,
) -> dict[str, dict[str, float]]:
    """One round of ``samples`` samples on ``gpus`` GPUs from per-sample seconds (draw, score, one training pass).

    split:  ``sampler_gpus`` GPUs sample and score (co-located), the rest train ``passes`` passes; rounds
            overlap (``max_weight_lag = 1``), so a round takes the slower side; ``busy`` is the share of
            GPU-seconds doing work.
    split_balanced: the same with the sampler pool sized by :func:`balanced_sampler_gpus` (``sampler_gpus``).
    hybrid: every GPU samples, scores and trains its ``samples / gpus`` samples in place (no idle side).
    """

    def split(n_samplers: int) -> dict[str, float]:
        sampler_round = samples / n_samplers * (sample_s + score_s)
        learner_round = samples / (gpus - n_samplers) * learn_s * passes
        round_s = max(sampler_round, learner_round)
        busy = (n_samplers * sampler_round + (gpus - n_samplers) * learner_round) / (gpus * round_s)
        return {"sampler_gpus": n_samplers, "sampler_seconds": sampler_round, "learner_seconds": learner_round,
                "round_seconds": round_s, "busy_fraction": busy, "hours_for_run": round_s * rounds / 3600}

    hybrid = samples / gpus * (sample_s + score_s + learn_s * passes)
    return {
        "split": split(sampler_gpus),
        "split_balanced": split(balanced_sampler_gpus(sample_s, score_s, learn_s, passes, gpus=gpus)),
        "hybrid": {"round_seconds": hybrid, "busy_fraction": 1.0, "hours_for_run": hybrid * rounds / 3600},
    }


def phase_projection(ctx: Context) -> dict[str, Any]:
    results = ctx.results
    sample_s = results.get("sampler", {}).get("seconds_per_sample")
    score_s = results.get("reward", {}).get("jrm", {}).get("seconds_per_pair")
    settings = [v for k, v in results.get("learner", {}).items() if k.startswith("micro_batch_") and "error" not in v]
    missing = [what for what, value in (("sampler.seconds_per_sample", sample_s), ("reward.jrm.seconds_per_pair", score_s),
                                        ("learner.micro_batch_*.seconds_per_sample", settings)) if not value]
    if missing:
        raise ValueError(f"the projection needs figures that earlier phases did not measure: {', '.join(missing)}")
    learn_s = min(s["seconds_per_sample"] for s in settings)
    return {
        "inputs": {"sample_seconds": sample_s, "score_seconds": score_s, "learn_seconds_per_pass": learn_s},
        "one_pass_per_round": project_round(sample_s, score_s, learn_s, passes=1),
        "two_passes_per_round": project_round(sample_s, score_s, learn_s, passes=2),
    }


def phase_family(ctx: Context, family: str) -> dict[str, Any]:
    """One diffusers policy family at this scale: build, sample one chunk, train it (see the module docstring).

    Figures go into ``ctx.partial`` as they are measured, so an OOM or the time limit keeps what came before.
    ``max_rows_per_backward`` counts (sample, trained step) rows; Qwen-Image-Edit's true CFG runs two transformer
    rows (instruction and negative prompt) for each inside ``cfg_range`` (every step in its preset).
    """
    scale, n, figures = ctx.scale, ctx.scale.samples_per_chunk, ctx.partial
    cfg = family_policy_config(family, scale, ctx.device)
    figures["preset"] = f"configs/{family}_jrm_32gpu.yaml"
    figures["settings"] = {
        "num_steps": cfg.num_inference_steps, "side": cfg.height, "noise_level": cfg.noise_level,
        "guidance_scale": cfg.text_guidance_scale, "lora_rank": cfg.lora_rank,
        "lora_target_modules": len(cfg.lora_target_modules), "samples_per_chunk": n,
    }
    once = BuildOnce(lambda c: build_family_policy(family, ctx.configs, c))
    registry = default_policy_registry().extended(bench=once)
    # the preset's update: the chunk's samples in 2 minibatches (one optimizer step each), one pass
    grpo = GRPOConfig(timestep_fraction=scale.timestep_fraction, num_updates_per_step=2, num_epochs_per_step=1)
    start = time.perf_counter()
    learner = LearnerWorker(cfg, grpo, policy_registry=registry)
    sampler = PolicySampler(cfg, max_weight_lag=0, policy_registry=registry)  # the same policy object
    sampler.load_weights(learner.weight_payload())
    _sync(ctx.device)
    figures["build_seconds"] = time.perf_counter() - start
    _free(ctx.device)
    figures["parameters_billion"] = component_parameters(once.policy.pipe)
    figures["lora_parameters_million"] = sum(p.numel() for p in learner.params) / 1e6
    if ctx.device.type == "cuda":
        figures["resident_gib_after_build"] = torch.cuda.memory_allocated(ctx.device) / 2**30

    request = _request(scale, n)
    m = measured(lambda: sampler.sample(request), ctx.device, scale.family_repeats)
    rollout = m["result"][0]
    figures["sampler"] = {
        "seconds_per_chunk": m["seconds"], "seconds_per_sample": m["seconds"] / n, "cold_seconds": m["cold_seconds"],
        **_flop_figures(m, n),
        "peak_memory_gib": m["peak_memory_gib"], "text_tokens": int(rollout.conditions.text_hidden_states.shape[1]),
        "image_tokens_per_row": 2 * (rollout.latents.shape[-1] // 2) * (rollout.latents.shape[-2] // 2),
    }
    del m
    _free(ctx.device)

    chunk = _learn_chunk(rollout, scale, grpo.num_updates_per_step)
    k = chunk.step_indices.shape[1]
    elements = minibatch_element_counts(chunk.minibatch, grpo.num_updates_per_step, k)
    learner_figures: dict[str, Any] = {"trained_steps_per_sample": k}
    figures["learner"] = learner_figures
    for micro_batch in scale.family_micro_batches:
        learner.grpo = replace(grpo, learner_micro_batch=micro_batch)
        key = f"micro_batch_{micro_batch}"
        try:
            # the cold call is the first update on the chunk's own fresh rollout: its ratio is 1 up to rounding
            m = measured(lambda: learner.learn([rollout], [chunk], elements, n), ctx.device, scale.family_repeats,
                         count_flops=False)
        except torch.OutOfMemoryError as exc:
            learner_figures[key] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            continue
        finally:
            _free(ctx.device)
        if "first_update_ratio_max_dev" not in learner_figures:
            learner_figures["first_update_ratio_max_dev"] = m["cold_result"].first_update_ratio_max_dev
        learner_figures[key] = {
            "max_rows_per_backward": min(micro_batch or n // grpo.num_updates_per_step, max(elements)),
            "seconds_per_pass": m["seconds"], "seconds_per_sample": m["seconds"] / n,
            "cold_seconds": m["cold_seconds"],
            "peak_memory_gib": m["peak_memory_gib"], "ratio_max_dev_after_updates": m["result"].ratio_max_dev,
        }
    jrm = ctx.results.get("reward", {}).get("jrm")  # JRM's s/pair when the reward phase ran (and succeeded)
    passes = [v for k, v in learner_figures.items() if k.startswith("micro_batch_") and "error" not in v]
    if isinstance(jrm, dict) and passes:
        sample_s, score_s = figures["sampler"]["seconds_per_sample"], jrm["seconds_per_pair"]
        learn_s = min(v["seconds_per_sample"] for v in passes)
        figures["projection"] = {
            "inputs": {"sample_seconds": sample_s, "score_seconds": score_s, "learn_seconds_per_pass": learn_s},
            "one_pass_per_round": project_round(sample_s, score_s, learn_s, passes=1),
        }
    return figures


PHASE_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "sampler": phase_sampler, "learner": phase_learner, "reward": phase_reward, "jrm_train": phase_jrm_train,
    "colocated": phase_colocated, "projection": phase_projection,
    **{f"family_{family}": (lambda ctx, family=family: phase_family(ctx, family)) for family in FAMILIES},
}


# -- driver --------------------------------------------------------------------------------------------------

def run(scale_name: str, device: torch.device, phases: tuple[str, ...], phase_timeout_s: float | None = None, *,
        family_timeout_s: float | None = None, total_timeout_s: float | None = None,
        on_phase: Callable[[dict[str, Any]], None] | None = None,
        inputs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run ``phases`` in order, each under its limit; a failing phase records its error and the next runs.

    ``total_timeout_s`` caps the whole run (a phase gets at most what is left; a phase with under 10 s left is
    skipped and says so), so a lease of fixed length ends with a report; ``on_phase(report)`` is called after
    every phase (the CLI writes the JSON then, so a killed run keeps the phases it finished). ``inputs``: phases
    measured by an earlier run (another process), which later phases read (``projection``, a family's
    projection); they are not copied into this report.
    """
    scale = SCALES[scale_name]
    limit = phase_timeout_s or scale.phase_timeout_s
    family_limit = family_timeout_s or phase_timeout_s or scale.family_timeout_s
    notes = {name: json.loads((CONFIGS / scale_name / f"{name}.json").read_text()) for name in COMPONENTS}
    report: dict[str, Any] = {
        "scale": scale_name, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": str(scale.dtype), "phase_timeout_s": limit,
        "family_phase_timeout_s": family_limit, "total_timeout_s": total_timeout_s,
        "component_configs": {name: raw.get("_source", "") for name, raw in notes.items()},
        "component_configs_verified": {name: raw["_verified"] for name, raw in notes.items() if "_verified" in raw},
        "phases": {},
    }
    ctx = Context(scale, device, load_component_configs(scale_name), ChainMap(report["phases"], dict(inputs or {})))
    run_start = time.perf_counter()
    for name in phases:
        own_limit = family_limit if name.startswith("family_") else limit
        left = math.inf if total_timeout_s is None else total_timeout_s - (time.perf_counter() - run_start)
        if left < MIN_PHASE_SECONDS:
            report["phases"][name] = {"skipped": f"{max(left, 0.0):.0f} s of the run's {total_timeout_s:.0f} s left"}
            continue
        start = time.perf_counter()
        ctx.partial = {}
        try:
            with time_limit(min(own_limit, left)):
                figures = PHASE_FUNCTIONS[name](ctx)
        except Exception as exc:  # one failing phase must not hide the others' figures (nor its own so far)
            figures = {**ctx.partial, "error": f"{type(exc).__name__}: {exc}"[:500], "where": _where(exc)}
        ctx.partial = {}
        try:
            _free(device)
        except Exception as exc:  # e.g. an illegal memory access: the CUDA context is lost for good
            figures["device_lost"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:300]
        report["phases"][name] = {"wall_seconds": time.perf_counter() - start, **figures}
        if on_phase is not None:
            on_phase(report)
        if "device_lost" in figures:
            for later in phases[phases.index(name) + 1:]:
                report["phases"][later] = {"skipped": f"the device was lost in phase {name}"}
            break
    return report


#: A phase that would get less than this many seconds of the run's total is skipped rather than started.
MIN_PHASE_SECONDS = 10.0


def _where(exc: BaseException, frames: int = 4) -> list[str]:
    """The innermost ``frames`` of the exception's traceback as ``file:line in function`` (for a remote run)."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    return [f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in stack]


def _rows(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _rows(f"{prefix}.{key}" if prefix else key, inner)
    elif isinstance(value, float):
        yield prefix, f"{value:.4g}"
    else:
        yield prefix, str(value)


def table(report: dict[str, Any]) -> str:
    """The report's phases as ``phase  figure  value`` lines."""
    lines = [f"real-size benchmark, scale {report['scale']} on {report['device_name']} ({report['dtype']})"]
    for phase, figures in report["phases"].items():
        lines.append(f"-- {phase}")
        lines += [f"   {key:<58} {value}" for key, value in _rows("", figures)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="real")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--phase-timeout", type=float, default=None, help="seconds per phase (default: the scale's)")
    parser.add_argument("--family-timeout", type=float, default=None,
                        help="seconds per family phase (default: --phase-timeout, else the scale's)")
    parser.add_argument("--total-timeout", type=float, default=None,
                        help="seconds for the whole run; later phases get what is left, or are skipped")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: runs/bench/real_scale[_tiny].json)")
    parser.add_argument("--inputs", type=Path, default=None,
                        help="an earlier report whose phases later phases may read (e.g. the reward phase's JRM "
                             "s/pair for a family's projection when the family runs in its own process)")
    args = parser.parse_args(argv)
    inputs = json.loads(args.inputs.read_text())["phases"] if args.inputs and args.inputs.exists() else None
    out = args.out or Path("runs/bench") / ("real_scale.json" if args.scale == "real" else f"real_scale_{args.scale}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(report: dict[str, Any]) -> None:
        atomic_write_json(out, report)
        name, figures = next(reversed(report["phases"].items()))
        print(table({**report, "phases": {name: figures}}).split("\n", 1)[1], flush=True)

    report = run(args.scale, torch.device(args.device), tuple(args.phases), args.phase_timeout,
                 family_timeout_s=args.family_timeout, total_timeout_s=args.total_timeout, on_phase=save,
                 inputs=inputs)
    atomic_write_json(out, report)
    print(table(report))
    print(f"wrote {out}")
    return report


def finite_numbers(value: Any) -> bool:
    """Whether every number in a (nested) report is finite."""
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


if __name__ == "__main__":
    main()
