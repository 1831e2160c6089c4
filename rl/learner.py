"""Learner worker: re-scores the trained SDE steps, takes GRPO optimizer steps on the LoRA parameters.

One or more workers form a torch.distributed group (gloo on CPU, NCCL on GPU). Each worker holds a copy of
the policy and a shard of the round's chunks; after the local backward passes the LoRA gradients are summed
with one all-reduce (what DDP does for these parameters). Every local loss is divided by the *global* number
of trained (sample, step) elements, so the summed gradient is exactly the gradient of the mean over the
whole batch, however the chunks are split. All workers then clip and step identically.

The policy is built by the policy registry from the config's ``kind`` and used only through
:class:`policies.base.RLPolicy`; it owns the adapter version, which the learner advances after each round.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import ray
import torch
import torch.distributed as dist

from policies.base import AdapterState, RLPolicy
from policies.registry import PolicyRegistry, build_policy
from policies.rollout import Rollout
from rl.algorithms import approx_kl, clip_fraction, clipped_surrogate, kl_to_reference
from rl.config import GRPOConfig
from rl.rollout_ops import select_samples
from rl.types import LearnChunk, LearnerStats, WeightSyncPayload


class NonFiniteGradientError(RuntimeError):
    """The LoRA gradient is NaN/inf; the step is refused so nothing non-finite reaches the weights."""


@dataclass
class _PreparedChunk:
    """The kept samples of one chunk, ready for repeated re-scoring.

    rollout:       sub-rollout of the n kept samples.
    step_indices:  (n, K) int64 trained steps.
    advantages:    (n,) float32, on the policy's device.
    old_log_prob:  (n, K) float32 log-probs recorded while sampling, on the policy's device.
    ref_mean:      (n, K, C, H, W) reference-policy transition means, or None when beta = 0.
    """

    rollout: Rollout
    step_indices: torch.Tensor
    advantages: torch.Tensor
    old_log_prob: torch.Tensor
    ref_mean: torch.Tensor | None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LearnerWorker:
    """Rank ``rank`` of ``world_size`` learner workers (a Ray actor, or in-process with world_size 1).

    policy_cfg: the experiment's ``policy`` section; ``policy_cfg.kind`` is looked up in ``policy_registry``
                (default: the built-in kinds).
    """

    def __init__(
        self, policy_cfg: Any, grpo_cfg: GRPOConfig, *, rank: int = 0, world_size: int = 1,
        torch_threads: int = 1, policy_registry: PolicyRegistry | None = None,
    ) -> None:
        torch.set_num_threads(torch_threads)
        self.grpo = grpo_cfg
        self.rank = rank
        self.world_size = world_size
        self.policy: RLPolicy = build_policy(policy_cfg, policy_registry)
        self.params = [p for p in self.policy.trainable_parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the policy has no trainable (LoRA) parameters; set policy.use_lora=true")
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=grpo_cfg.learning_rate,
            betas=(grpo_cfg.adam_beta1, grpo_cfg.adam_beta2),
            eps=grpo_cfg.adam_eps,
            weight_decay=grpo_cfg.weight_decay,
        )

    @property
    def version(self) -> int:
        """The policy's adapter version (0 for the initial adapter, +1 per :meth:`learn`)."""
        return self.policy.adapter_version

    # -- process group -------------------------------------------------------------------------------------
    def rendezvous_address(self) -> tuple[str, int]:
        """(ip, free port) of this worker, used by rank 0 as the group's master address."""
        try:
            host = ray.util.get_node_ip_address()
        except Exception:  # not inside Ray: a local single-machine group
            host = "127.0.0.1"
        return host, _free_port()

    def init_process_group(self, master_addr: str, master_port: int, backend: str) -> int:
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(
            backend, init_method=f"tcp://{master_addr}:{master_port}", rank=self.rank, world_size=self.world_size
        )
        return self.rank

    def _distributed(self) -> bool:
        return self.world_size > 1 and dist.is_initialized()

    # -- weights -------------------------------------------------------------------------------------------
    def weight_payload(self) -> WeightSyncPayload:
        """The adapter tensors (CPU copies) and their version."""
        state = self.policy.adapter_state()
        tensors = {k: v.detach().to("cpu", copy=True) for k, v in state.tensors.items()}
        return WeightSyncPayload(tensors=tensors, version=state.version)

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_state(self, adapter: dict[str, torch.Tensor], optimizer_state: dict | None, version: int) -> int:
        """Restore adapter, optimizer moments and version (resume); ``None`` keeps a fresh optimizer (weights only;
        a checkpoint always carries its optimizer, see :func:`rl.checkpoint.load_checkpoint`).

        The learning rate is this worker's configured one, not the checkpoint's: a resume that changes
        ``grpo.learning_rate`` takes effect (``load_state_dict`` would otherwise bring the old value back).
        """
        self.policy.load_adapter_state(AdapterState(tensors=adapter, version=version))
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        for group in self.optimizer.param_groups:
            group["lr"] = self.grpo.learning_rate
        return self.version

    def learning_rates(self) -> list[float]:
        """The optimizer's current learning rate per parameter group."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    # -- one round -----------------------------------------------------------------------------------------
    def _prepare(self, rollouts: list[Rollout], chunks: list[LearnChunk]) -> list[_PreparedChunk]:
        prepared = []
        device = self.policy.device
        for rollout, chunk in zip(rollouts, chunks, strict=True):
            keep = chunk.valid.nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            sub = select_samples(rollout, keep)
            idx = chunk.step_indices[keep]
            ref_mean = None
            if self.grpo.beta > 0:
                with torch.no_grad():
                    ref_mean = self.policy.logprob(sub, idx, use_adapter=False).mean.detach()
            advantages, old_log_prob = chunk.advantages[keep].float(), sub.log_probs.gather(1, idx).float()
            prepared.append(_PreparedChunk(sub, idx, advantages.to(device), old_log_prob.to(device), ref_mean))
        return prepared

    def _all_reduce_(self, tensor: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
        if self._distributed():
            dist.all_reduce(tensor, op=op)
        return tensor

    def _sync_gradients(self) -> None:
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not self._distributed():
            return
        flat = torch.cat([p.grad.reshape(-1) for p in self.params])
        dist.all_reduce(flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def learn(self, rollouts: list, chunks: list[LearnChunk], num_elements: int, num_samples: int) -> LearnerStats:
        """Run ``num_updates_per_step`` optimizer steps on this worker's chunks (all workers call together).

        rollouts:     this worker's rollouts (or Ray object refs to them), one per chunk.
        chunks:       advantages (B,), valid mask (B,), step indices (B, K) of each rollout.
        num_elements: kept (sample, step) elements over all workers (the loss denominator).
        num_samples:  kept samples over all workers (for the stats).
        """
        started = time.perf_counter()
        rollouts = [ray.get(r) if isinstance(r, ray.ObjectRef) else r for r in rollouts]
        prepared = self._prepare(rollouts, chunks)
        g = self.grpo
        denom = float(max(num_elements, 1))
        # summed over updates and elements: policy loss, kl, clipped elements, approx kl, ratio
        totals = torch.zeros(5, dtype=torch.float64)
        # max |ratio - 1| over the first update, and over all updates; then this worker's compute seconds
        maxima = torch.zeros(3, dtype=torch.float64)
        grad_norms = []
        for update in range(g.num_updates_per_step):
            self.optimizer.zero_grad(set_to_none=True)
            for pc in prepared:
                out = self.policy.logprob(pc.rollout, pc.step_indices, use_adapter=True)
                policy = clipped_surrogate(out.log_prob, pc.old_log_prob, pc.advantages, eps_low=g.eps_low, eps_high=g.eps_high)
                if pc.ref_mean is not None:
                    kl = kl_to_reference(out.mean, pc.ref_mean, out.sigma, out.dt, exact=g.exact_kl)
                else:
                    kl = torch.zeros_like(policy)
                loss = (policy.sum() + g.beta * kl.sum()) / denom
                loss.backward()
                n = policy.numel()
                ratio = torch.exp(out.log_prob.detach() - pc.old_log_prob)
                totals += torch.tensor(
                    [
                        policy.detach().sum().item(),
                        kl.detach().sum().item(),
                        clip_fraction(out.log_prob, pc.old_log_prob, eps_low=g.eps_low, eps_high=g.eps_high).item() * n,
                        approx_kl(out.log_prob, pc.old_log_prob).item() * n,
                        ratio.sum().item(),
                    ],
                    dtype=torch.float64,
                )
                dev = (ratio - 1).abs().max().double().cpu()
                maxima[1] = torch.maximum(maxima[1], dev)
                if update == 0:
                    maxima[0] = torch.maximum(maxima[0], dev)
            self._sync_gradients()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, g.max_grad_norm)
            if not torch.isfinite(grad_norm):
                raise NonFiniteGradientError(f"LoRA gradient norm is {grad_norm.item()} at version {self.version}")
            grad_norms.append(float(grad_norm))
            self.optimizer.step()
        self.policy.adapter_version += 1
        maxima[2] = time.perf_counter() - started
        self._all_reduce_(totals)
        self._all_reduce_(maxima, dist.ReduceOp.MAX)
        per = denom * g.num_updates_per_step
        policy_loss, kl_value = totals[0].item() / per, totals[1].item() / per
        return LearnerStats(
            policy_loss=policy_loss,
            kl=kl_value,
            loss=policy_loss + g.beta * kl_value,
            clip_fraction=totals[2].item() / per,
            approx_kl=totals[3].item() / per,
            ratio_mean=totals[4].item() / per if num_elements else 1.0,
            ratio_max_dev=maxima[1].item(),
            first_update_ratio_max_dev=maxima[0].item(),
            compute_seconds=maxima[2].item(),
            grad_norm=sum(grad_norms) / len(grad_norms),
            n_samples=num_samples,
            n_elements=num_elements,
            version=self.version,
        )

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
