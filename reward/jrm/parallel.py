"""How the JRM trainer spreads one model over its workers: replicated ("ddp") or fully sharded ("fsdp").

- ddp:  every worker holds the whole model and optimizer; after gradient accumulation the gradients are
        averaged with an explicit all-reduce (what DDP does; explicit because the objective calls the JRM's
        own methods, not only ``forward``).
- fsdp: PyTorch FSDP2 (``fully_shard``) per language decoder layer and vision block, then the JRM root:
        parameters, gradients and AdamW state are sharded over workers (ZeRO-3), gradients are
        reduce-scattered on the last micro-batch only. Evaluation and checkpointing gather the full state
        (collectives: every worker takes part).

Checkpoints hold full, unsharded state either way (a run may resume with the other strategy or worker count).
Optimizer state is keyed by parameter name (``torch.distributed.checkpoint.state_dict`` format).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

STRATEGIES = ("ddp", "fsdp")


def shard_jrm(model: Any) -> None:
    """Apply FSDP2 to a JRM: each decoder layer and vision block, then the whole model (in place)."""
    from torch.distributed.fsdp import fully_shard

    inner = model.backbone.model
    for block in [*inner.language_model.layers, *getattr(inner.visual, "blocks", [])]:
        fully_shard(block)
    fully_shard(model)


def all_reduce_mean_grads(params: Sequence[torch.nn.Parameter], world_size: int) -> None:
    """Average gradients over workers.

    A parameter without a gradient on every worker keeps ``grad=None`` (so AdamW skips it, as on one worker);
    one with a gradient on some workers gets zeros on the others before the sum.
    """
    if world_size == 1 or not params:
        return
    import torch.distributed as dist

    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    for p, used in zip(params, present.tolist()):
        if not used:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world_size)


def as_local_tensor(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a (replicated) DTensor, e.g. FSDP's total gradient norm; plain tensors pass."""
    full = getattr(value, "full_tensor", None)
    return full() if callable(full) else value


@dataclass
class ParallelPlan:
    """The strategy of one run on ``world_size`` workers (fsdp on one worker is plain single-process)."""

    strategy: str
    world_size: int

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp" and self.world_size > 1

    def prepare(self, model: Any) -> None:
        """Shard the model (fsdp) before the optimizer is built; nothing to do when replicated."""
        if self.sharded:
            shard_jrm(model)

    def set_gradient_sync(self, model: Any, last_micro_batch: bool) -> None:
        """fsdp: reduce-scatter gradients only after the last micro-batch of an accumulation."""
        if self.sharded:
            model.set_requires_gradient_sync(last_micro_batch)

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """ddp: average the accumulated gradients (fsdp already did)."""
        if not self.sharded:
            all_reduce_mean_grads(params, self.world_size)

    @contextmanager
    def gathered(self, model: Any) -> Iterator[None]:
        """Full parameters available for direct method calls (``score``); a collective under fsdp."""
        if not self.sharded:
            yield
            return
        model.unshard()
        try:
            yield
        finally:
            model.reshard()

    def full_state(self, model: Any, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model state dict, optimizer state dict keyed by parameter name), full and on CPU.

        Under fsdp this is a collective; rank 0 receives the tensors, the other ranks empty dicts.
        """
        options = StateDictOptions(full_state_dict=True, cpu_offload=True) if self.sharded else StateDictOptions()
        return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)

    def load_optimizer(self, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a full, name-keyed optimizer state (every worker passes the same dict).

        Not strict: a parameter that never had a gradient (e.g. the LM head at alpha=0) has no AdamW state,
        exactly as in an uninterrupted run, and gets it lazily on its first gradient.
        """
        options = StateDictOptions(full_state_dict=self.sharded, strict=False)
        set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=options)


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a name-keyed optimizer state into safetensors-ready tensors (``"<param>::<key>"``) and JSON."""
    tensors, scalars = {}, {}
    for name, per_param in state["state"].items():
        for key, value in per_param.items():
            target = tensors if torch.is_tensor(value) else scalars
            target[f"{name}::{key}"] = value.detach().cpu().contiguous() if torch.is_tensor(value) else value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    per_param: dict[str, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        name, key = flat.rsplit("::", 1)
        per_param.setdefault(name, {})[key] = value
    return {"state": per_param, "param_groups": meta["param_groups"]}
