"""LoRA on the OmniGen2 transformer with peft: add, get/set adapter tensors, save/load, disable temporarily.

The adapter tensors are keyed like peft's ``get_peft_model_state_dict`` (module path + ``.lora_A.weight`` /
``.lora_B.weight``, no adapter name): that dict is what the learner ships to the samplers. On disk a LoRA
directory is peft's layout — ``adapter_config.json`` + ``adapter_model.safetensors`` with keys prefixed
``base_model.model.`` — so ``peft.PeftModel.from_pretrained(transformer, dir)`` reads it. Reading also
accepts diffusers' ``pytorch_lora_weights.safetensors`` (keys prefixed ``transformer.``, rank/alpha/targets
in its ``lora_adapter_metadata``). :class:`TransformerLoRAMixin` gives a policy holding ``transformer`` /
``lora_config`` / ``adapter_version`` these operations as methods (OmniGen2 and the diffusers families share it).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from editrl.io import atomic_replace_dir, atomic_save_safetensors, atomic_write_json
from policies.base import AdapterState

ADAPTER_NAME = "default"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
DIFFUSERS_WEIGHTS = "pytorch_lora_weights.safetensors"
_PEFT_PREFIX = "base_model.model."
_DIFFUSERS_PREFIX = "transformer."
_DIFFUSERS_METADATA = "lora_adapter_metadata"


def _adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """LoRA parameters keyed without the adapter name (``...to_q.lora_A.weight``)."""
    marker = f".{ADAPTER_NAME}."
    return {
        name.replace(marker, "."): param
        for name, param in model.named_parameters()
        if "lora_" in name and marker in name
    }


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` carries an injected LoRA adapter."""
    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def add_lora(model: nn.Module, *, rank: int, alpha: float, target_modules: Sequence[str], seed: int = 0) -> LoraConfig:
    """Inject a LoRA adapter (B = 0 at init, so the model's output is unchanged) and freeze everything else.

    A is drawn (peft's Kaiming-uniform init) from a CPU generator seeded with ``seed``, not from the process's
    global RNG, so every process that builds the adapter — and every rerun — starts from the same A. (B = 0 hides
    a different A in the outputs, but not in the gradients of B: runs would diverge from the first update.)

    The adapter is kept in float32 whatever the base runs in (bf16 at real scale), so its weights, gradients and
    AdamW state are fp32: lr-sized updates of a bf16 LoRA would round away. peft casts the layer input to the
    adapter's dtype and the sum back to the base layer's, so the forward stays in the base dtype.
    """
    if has_lora(model):
        raise ValueError("the model already has a LoRA adapter")
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0, init_lora_weights=True
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in _adapter_parameters(model).values():
            param.data = param.data.to(torch.float32)
        for name, param in _adapter_parameters(model).items():
            if "lora_A" in name:
                weight = torch.empty(param.shape, dtype=torch.float32)
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
                param.copy_(weight)
    model.requires_grad_(False)
    for param in _adapter_parameters(model).values():
        param.requires_grad_(True)
    return config


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable LoRA parameters, in a fixed (module) order."""
    return list(_adapter_parameters(model).values())


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the adapter tensors (what the learner sends to samplers)."""
    tensors = {name: param.detach().cpu().clone() for name, param in _adapter_parameters(model).items()}
    if not tensors:
        raise ValueError("the model has no LoRA adapter")
    return tensors


def load_adapter_state_dict(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy adapter tensors into the model; keys and shapes must match exactly and values be finite."""
    params = _adapter_parameters(model)
    if not params:
        raise ValueError("the model has no LoRA adapter to load into")
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise KeyError(f"adapter keys differ: missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    for name, value in tensors.items():
        if value.shape != params[name].shape:
            raise ValueError(f"adapter tensor {name!r} has shape {tuple(value.shape)}, expected {tuple(params[name].shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"adapter tensor {name!r} holds non-finite values")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)


@contextlib.contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[None]:
    """Run the base model (the reference policy): LoRA layers are bypassed inside the block.

    peft's toggle resets ``requires_grad`` of adapter weights; the previous flags are restored on exit.
    """
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    flags = {name: p.requires_grad for name, p in _adapter_parameters(model).items()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for name, param in _adapter_parameters(model).items():
            param.requires_grad_(flags[name])


def base_state_dict(model: nn.Module, *, merge: bool) -> dict[str, torch.Tensor]:
    """The model's state dict under its original (pre-LoRA) names; with ``merge``, ``W + (α/r)·B·A``."""
    deltas: dict[str, torch.Tensor] = {}
    if merge:
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A:
                deltas[f"{name}.weight"] = module.get_delta_weight(ADAPTER_NAME).detach()
    tensors = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        name = key.replace(".base_layer.", ".")
        tensors[name] = value + deltas[name].to(value.dtype) if name in deltas else value
    return tensors


def _config_dict(config: LoraConfig) -> dict:
    """LoraConfig as JSON-ready data (sets become sorted lists, enums their values)."""
    plain = {}
    for key, value in config.to_dict().items():
        if isinstance(value, set):
            value = sorted(value)
        elif hasattr(value, "value") and isinstance(value, str):
            value = value.value
        plain[key] = value
    return plain


def save_lora(model: nn.Module, config: LoraConfig, directory: str | Path) -> None:
    """Write the adapter in peft's layout (``adapter_config.json`` + ``adapter_model.safetensors``), atomically."""
    directory = Path(directory)
    tensors = {_PEFT_PREFIX + name: value for name, value in adapter_state_dict(model).items()}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    atomic_save_safetensors(staging / PEFT_WEIGHTS, tensors, metadata={"format": "pt"})
    atomic_write_json(staging / PEFT_CONFIG, _config_dict(config))
    atomic_replace_dir(staging, directory)


def _config_from_raw(raw: Mapping, source: Path) -> LoraConfig:
    """A LoraConfig from saved JSON data (peft's adapter_config.json or diffusers' adapter metadata)."""
    try:
        return LoraConfig(
            r=int(raw["r"]),
            lora_alpha=float(raw["lora_alpha"]),
            target_modules=sorted(raw["target_modules"]),
            lora_dropout=0.0,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid LoRA config ({exc!r})") from exc


def read_lora(directory: str | Path) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """Read a LoRA directory (peft or diffusers layout) -> (config, adapter tensors keyed as in the model)."""
    directory = Path(directory)
    if (directory / PEFT_WEIGHTS).is_file():
        config_path = directory / PEFT_CONFIG
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} is missing next to {PEFT_WEIGHTS}")
        config = _config_from_raw(json.loads(config_path.read_text()), config_path)
        tensors, prefix = load_file(directory / PEFT_WEIGHTS), _PEFT_PREFIX
    elif (directory / DIFFUSERS_WEIGHTS).is_file():
        weights_path = directory / DIFFUSERS_WEIGHTS
        with safe_open(weights_path, framework="pt") as handle:
            metadata = handle.metadata() or {}
        if _DIFFUSERS_METADATA not in metadata:
            raise ValueError(f"{weights_path}: no '{_DIFFUSERS_METADATA}' metadata, so LoRA alpha is unknown")
        raw = json.loads(metadata[_DIFFUSERS_METADATA])
        unprefixed = {k[len(_DIFFUSERS_PREFIX) :]: v for k, v in raw.items() if k.startswith(_DIFFUSERS_PREFIX)}
        config = _config_from_raw(unprefixed or raw, weights_path)
        tensors, prefix = load_file(weights_path), _DIFFUSERS_PREFIX
    else:
        raise FileNotFoundError(f"no {PEFT_WEIGHTS} or {DIFFUSERS_WEIGHTS} in {directory}")
    stripped = {}
    for key, value in tensors.items():
        if not key.startswith(prefix):
            raise ValueError(f"{directory}: tensor {key!r} lacks the {prefix!r} prefix")
        stripped[key[len(prefix) :]] = value
    return config, stripped


def load_lora(model: nn.Module, directory: str | Path, config: LoraConfig | None = None) -> LoraConfig:
    """Load a LoRA directory into ``model``, injecting the adapter first if the model has none.

    If the model already has an adapter (described by ``config``), rank, alpha and targets must match.
    """
    saved, tensors = read_lora(directory)
    if not has_lora(model):
        config = add_lora(model, rank=saved.r, alpha=saved.lora_alpha, target_modules=sorted(saved.target_modules))
    elif config is not None:
        mine = (config.r, float(config.lora_alpha), sorted(config.target_modules))
        theirs = (saved.r, float(saved.lora_alpha), sorted(saved.target_modules))
        if mine != theirs:
            raise ValueError(f"{directory}: LoRA (rank, alpha, targets) {theirs} differ from the model's {mine}")
    else:
        config = saved
    load_adapter_state_dict(model, tensors)
    return config


class TransformerLoRAMixin:
    """LoRA parameters, adapter state with its version, peft save/load and the adapter-off context."""

    transformer: torch.nn.Module
    lora_config: Any
    adapter_version: int

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The LoRA parameters (what the learner optimises)."""
        return lora_parameters(self.transformer)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU copy of the LoRA tensors (without version; see :meth:`adapter_state`)."""
        return adapter_state_dict(self.transformer)

    def load_adapter_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Set the LoRA tensors (strict) and leave ``adapter_version`` alone (plain checkpoint loading, e.g.
        for evaluation; RL syncs go through :meth:`load_adapter_state`)."""
        load_adapter_state_dict(self.transformer, tensors)

    def adapter_state(self) -> AdapterState:
        """Detached CPU copies of the LoRA tensors, with their version."""
        return AdapterState(tensors=self.adapter_state_dict(), version=self.adapter_version)

    def load_adapter_state(self, state: AdapterState) -> None:
        """Set the LoRA tensors (strict) and ``adapter_version`` (recorded in later rollouts)."""
        self.load_adapter_state_dict(state.tensors)
        self.adapter_version = state.version

    def save_lora(self, directory: str | Path) -> None:
        """Save the adapter in peft's layout (``adapter_config.json`` + ``adapter_model.safetensors``)."""
        if self.lora_config is None:
            raise ValueError("no LoRA adapter to save; call add_lora() or load_lora() first")
        save_lora(self.transformer, self.lora_config, directory)

    def load_lora(self, directory: str | Path) -> None:
        """Load an adapter directory (peft or diffusers layout), adding the adapter if there is none."""
        self.lora_config = load_lora(self.transformer, directory, self.lora_config)

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Inside the block the transformer runs without LoRA (the reference policy)."""
        with adapter_disabled(self.transformer):
            yield
