"""Learner worker: re-scores the trained SDE steps, takes GRPO optimizer steps on the LoRA parameters.

One or more workers form a torch.distributed group (gloo on CPU, NCCL on GPU). Each worker holds a copy of
the policy and a shard of the round's chunks. A round is ``num_epochs_per_step`` passes over the round's
kept samples, each pass one optimizer step per minibatch (the controller splits the round's samples into
``num_updates_per_step`` disjoint minibatches, so every worker knows which of its samples belong to which
step and how many elements each minibatch has globally). Within a step the worker back-propagates
``learner_micro_batch`` (sample, trained step) rows at a time (default: one trained step of every sample of
a chunk) and accumulates gradients, so activation memory does not grow with the number of trained steps;
the reference mean of a micro-batch is computed just before it. Every local loss is divided by the
minibatch's *global* number of trained (sample, step) elements, so the accumulated, all-reduced gradient is
exactly the gradient of the mean over the whole minibatch, however the rows are split. All workers then
clip and step identically, and every worker steps the same number of times (an empty local share gives a
zero local gradient).

Every tensor the loss touches lives on the policy's device (:attr:`RLPolicy.device`); rollouts stay on the
CPU until the policy moves the rows it re-scores. Ray is imported only to fetch rollouts given as object
references and to find the node address, so the learner runs where Ray is not installed (``bench.real_scale``).

The policy is built by the policy registry from the config's ``kind`` and used only through
:class:`policies.base.RLPolicy`; it owns the adapter version, which the learner advances after each round.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from policies.base import AdapterState, RLPolicy
from policies.registry import PolicyRegistry, build_policy
from policies.rollout import Rollout
from rl.actor_location import Locatable
from rl.algorithms import approx_kl, clip_fraction, clipped_surrogate, kl_to_reference, micro_batch_rows
from rl.config import GRPOConfig
from rl.rollout_ops import select_samples
from rl.types import LearnChunk, LearnerStats, WeightSyncPayload


class NonFiniteGradientError(RuntimeError):
    """The LoRA gradient is NaN/inf; the step is refused so nothing non-finite reaches the weights."""


@dataclass
class _MicroBatch:
    """m (sample, trained step) rows of one chunk, re-scored and back-propagated together.

    source:       the chunk's rollout (CPU, shared by the chunk's micro-batches).
    owners:       (m,) int64, each row's sample in ``source`` (a sample appears once per trained step of it).
    step_indices: (m, 1) int64, the trained step of each row.
    advantages:   (m,) float32, on the policy's device.
    old_log_prob: (m, 1) float32 log-probs recorded while sampling, on the policy's device.
    ref_mean:     (m, 1, C, H, W) reference-policy transition means on the policy's device, computed just
                  before the micro-batch's first backward (kept for later epochs), or None (beta = 0 or not
                  yet computed).
    """

    source: Rollout
    owners: torch.Tensor
    step_indices: torch.Tensor
    advantages: torch.Tensor
    old_log_prob: torch.Tensor
    ref_mean: torch.Tensor | None = None

    @property
    def rollout(self) -> Rollout:
        """The rows' samples as a sub-rollout, built when re-scored (host memory holds only the chunks)."""
        return select_samples(self.source, self.owners)


@dataclass
class _MicroLoss:
    """One micro-batch's loss and its detached per-element terms (all on the policy's device).

    loss:     0-d, ``(sum(policy) + beta * sum(kl)) / denominator`` (what is back-propagated).
    policy:   (m, 1) clipped surrogate per element.
    kl:       (m, 1) KL to the reference per element (zeros when beta = 0).
    log_prob: (m, 1) re-scored log-probs; old_log_prob: (m, 1) the sampling log-probs.
    """

    loss: torch.Tensor
    policy: torch.Tensor
    kl: torch.Tensor
    log_prob: torch.Tensor
    old_log_prob: torch.Tensor


def _local(rollout: Any) -> Rollout:
    """``rollout`` itself, or the rollout a Ray object reference points to (fetched from the object store)."""
    if isinstance(rollout, Rollout):
        return rollout
    import ray

    return ray.get(rollout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LearnerWorker(Locatable):
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
            import ray

            host = ray.util.get_node_ip_address()
        except Exception:  # not inside Ray (or no Ray): a local single-machine group
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
    def _prepare(
        self, rollouts: list[Rollout], chunks: list[LearnChunk], num_minibatches: int
    ) -> list[list[_MicroBatch]]:
        """This worker's micro-batches of every minibatch: ``result[b]`` lists minibatch b's micro-batches."""
        device = self.policy.device
        micro: list[list[_MicroBatch]] = [[] for _ in range(num_minibatches)]
        for rollout, chunk in zip(rollouts, chunks, strict=True):
            k = chunk.step_indices.shape[1]
            for b in range(num_minibatches):
                members = ((chunk.minibatch == b) & chunk.valid).nonzero().flatten()
                for owners, columns in micro_batch_rows(members, k, self.grpo.learner_micro_batch):
                    steps = chunk.step_indices[owners, columns][:, None]
                    micro[b].append(
                        _MicroBatch(
                            source=rollout,
                            owners=owners,
                            step_indices=steps,
                            advantages=chunk.advantages[owners].float().to(device),
                            old_log_prob=rollout.log_probs[owners].gather(1, steps).float().to(device),
                        )
                    )
        return micro

    def _reference_mean(self, mb: _MicroBatch) -> torch.Tensor | None:
        """The micro-batch's reference-policy means (adapter off, no graph), computed once, on the device."""
        if self.grpo.beta > 0 and mb.ref_mean is None:
            with torch.no_grad():
                mb.ref_mean = self.policy.logprob(mb.rollout, mb.step_indices, use_adapter=False).mean.detach()
        return mb.ref_mean

    def _micro_batch_loss(self, mb: _MicroBatch, denominator: float) -> _MicroLoss:
        """Re-score the micro-batch under the current weights and build its share of the minibatch loss."""
        g = self.grpo
        ref_mean = self._reference_mean(mb)
        out = self.policy.logprob(mb.rollout, mb.step_indices, use_adapter=True)
        policy = clipped_surrogate(out.log_prob, mb.old_log_prob, mb.advantages, eps_low=g.eps_low, eps_high=g.eps_high)
        if ref_mean is not None:
            kl = kl_to_reference(out.mean, ref_mean, out.sigma, out.dt, exact=g.exact_kl)
        else:
            kl = torch.zeros_like(policy)
        loss = (policy.sum() + g.beta * kl.sum()) / denominator
        return _MicroLoss(loss, policy.detach(), kl.detach(), out.log_prob.detach(), mb.old_log_prob)

    def _term_sums(self, term: _MicroLoss) -> torch.Tensor:
        """(5,) float64 on the device: summed policy loss, kl, clipped elements, approx kl, ratio."""
        g = self.grpo
        n = term.policy.numel()
        ratio = torch.exp(term.log_prob - term.old_log_prob)
        return torch.stack(
            [
                term.policy.sum(),
                term.kl.sum(),
                clip_fraction(term.log_prob, term.old_log_prob, eps_low=g.eps_low, eps_high=g.eps_high) * n,
                approx_kl(term.log_prob, term.old_log_prob) * n,
                ratio.sum(),
            ]
        ).double()

    def accumulate_minibatch(self, micro: list[_MicroBatch], num_elements: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward + backward over one minibatch's local micro-batches, adding into the parameters' ``.grad``.

        num_elements: the minibatch's global (sample, step) element count (the loss denominator).
        Returns (sums (5,) float64 as :meth:`_term_sums`, max |ratio - 1| 0-d float64), both on the device.
        """
        device = self.policy.device
        sums = torch.zeros(5, dtype=torch.float64, device=device)
        max_dev = torch.zeros((), dtype=torch.float64, device=device)
        for mb in micro:
            term = self._micro_batch_loss(mb, float(max(num_elements, 1)))
            term.loss.backward()
            sums += self._term_sums(term)
            ratio = torch.exp(term.log_prob - term.old_log_prob)
            max_dev = torch.maximum(max_dev, (ratio - 1).abs().max().double())
        return sums, max_dev

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

    def learn(
        self, rollouts: list, chunks: list[LearnChunk], minibatch_elements: Sequence[int], num_samples: int
    ) -> LearnerStats:
        """One learner round on this worker's chunks (all workers call together).

        rollouts:           this worker's rollouts (or Ray object refs to them), one per chunk.
        chunks:             advantages (B,), valid (B,), step indices (B, K), minibatch ids (B,) of each rollout.
        minibatch_elements: kept (sample, step) elements of each minibatch over all workers (the loss
                            denominators); one optimizer step per non-empty minibatch and epoch.
        num_samples:        kept samples over all workers (for the stats).
        """
        started = time.perf_counter()
        rollouts = [_local(r) for r in rollouts]
        micro = self._prepare(rollouts, chunks, len(minibatch_elements))
        g = self.grpo
        # summed over optimizer steps and elements: policy loss, kl, clipped elements, approx kl, ratio
        totals = torch.zeros(5, dtype=torch.float64, device=self.policy.device)
        # max |ratio - 1| over the first optimizer step, and over all of them
        first_dev = torch.zeros((), dtype=torch.float64, device=self.policy.device)
        max_dev = torch.zeros((), dtype=torch.float64, device=self.policy.device)
        grad_norms = []
        for _epoch in range(g.num_epochs_per_step):
            for b, elements in enumerate(minibatch_elements):
                if elements == 0:  # a global count: every worker skips the same minibatches
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                sums, dev = self.accumulate_minibatch(micro[b], elements)
                totals += sums
                max_dev = torch.maximum(max_dev, dev)
                if not grad_norms:
                    first_dev = dev
                self._sync_gradients()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, g.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    raise NonFiniteGradientError(f"LoRA gradient norm is {grad_norm.item()} at version {self.version}")
                grad_norms.append(float(grad_norm))
                self.optimizer.step()
        self.policy.adapter_version += 1
        # reduced on the policy's device (NCCL reduces CUDA tensors only), then read once
        seconds = torch.tensor(time.perf_counter() - started, dtype=torch.float64, device=first_dev.device)
        totals = self._all_reduce_(totals).cpu()
        maxima = self._all_reduce_(torch.stack([first_dev, max_dev, seconds]), dist.ReduceOp.MAX).cpu()
        num_elements = sum(minibatch_elements)
        per = float(max(num_elements, 1) * g.num_epochs_per_step)
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
            grad_norm=sum(grad_norms) / len(grad_norms) if grad_norms else 0.0,
            n_samples=num_samples,
            n_elements=num_elements,
            version=self.version,
            optimizer_steps=len(grad_norms),
        )

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
