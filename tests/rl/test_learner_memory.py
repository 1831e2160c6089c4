"""The learner at scale: loss tensors on the policy's device, micro-batched back-propagation (same gradient as
one graph, activation memory flat in the number of trained steps), and the minibatch update semantics."""

from __future__ import annotations

import weakref
from dataclasses import replace

import pytest
import torch
from PIL import Image

from policies.base import AdapterState
from policies.registry import default_policy_registry
from policies.rollout import EditConditions, Rollout, StepLogProbs
from rl.algorithms import assign_minibatches, group_advantages, minibatch_element_counts, trained_step_indices
from rl.learner import LearnerWorker
from rl.sampler import PolicySampler
from rl.types import LearnChunk, SampleRequest
from tests.rl.helpers import toy_config


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return toy_config(tmp_path_factory.mktemp("cfg"), "grpo.num_updates_per_step=1", "grpo.beta=0.5")


def _perturbed_adapter(learner: LearnerWorker, seed: int = 3) -> AdapterState:
    """A non-trivial adapter (B != 0), so every LoRA tensor gets a gradient and the KL is non-zero."""
    gen = torch.Generator().manual_seed(seed)
    state = learner.policy.adapter_state()
    tensors = {k: 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in state.tensors.items()}
    return AdapterState(tensors=tensors, version=0)


@pytest.fixture(scope="module")
def rollout(cfg):
    """6 SDE samples (2 groups of 3, 4 steps) drawn with a different adapter than the learners will hold,
    so ratios differ from 1 and the clipped surrogate has a gradient."""
    learner = LearnerWorker(cfg.policy, cfg.grpo)
    sampler = PolicySampler(cfg.policy, max_weight_lag=0)
    sampler.load_weights(learner.weight_payload())
    img = Image.new("RGB", (32, 32), (200, 40, 40))
    other = Image.new("RGB", (32, 32), (20, 160, 40))
    request = SampleRequest(
        record_ids=["a", "b"], instructions=["make the square blue", "add a small red dot in the corner"],
        sources=[[img], [other]], group_ids=torch.tensor([0, 1]), samples_per_group=3, seed=5, learner_version=0,
    )
    return sampler.sample(request)[0]


def _chunk(rollout: Rollout, fraction: float, num_minibatches: int = 1, seed: int = 0) -> LearnChunk:
    rewards = torch.tensor([0.0, 1.0, 3.0, 2.0, 0.5, 1.0])
    adv = group_advantages(rewards, rollout.group_ids)
    gen = torch.Generator().manual_seed(seed)
    idx = trained_step_indices(6, rollout.log_probs.shape[1], fraction, gen)
    return LearnChunk(adv.advantages, adv.valid, idx, assign_minibatches(adv.valid, num_minibatches, gen))


def _gradient(learner: LearnerWorker, rollout: Rollout, chunk: LearnChunk, micro_batch: int) -> list[torch.Tensor]:
    learner.grpo = replace(learner.grpo, learner_micro_batch=micro_batch)
    learner.optimizer.zero_grad(set_to_none=True)
    micro = learner._prepare([rollout], [chunk], 1)
    elements = int(chunk.valid.sum()) * chunk.step_indices.shape[1]
    learner.accumulate_minibatch(micro[0], elements)
    return [p.grad.detach().clone() for p in learner.params]


def test_accumulated_micro_batch_gradient_equals_the_one_graph_gradient(cfg, rollout):
    learner = LearnerWorker(cfg.policy, cfg.grpo)
    learner.load_state(_perturbed_adapter(learner).tensors, None, 0)
    chunk = _chunk(rollout, fraction=0.75)  # K = 3 trained steps of 6 samples: 18 rows
    one_graph = _gradient(learner, rollout, chunk, micro_batch=10**6)
    assert all(g.abs().sum() > 0 for g in one_graph)
    for micro_batch in (0, 1, 4):  # per trained step (6 rows), per row, and 4 rows crossing step boundaries
        grads = _gradient(learner, rollout, chunk, micro_batch)
        for got, want in zip(grads, one_graph, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


class _SavedTensorBytes:
    """Bytes held by autograd's saved tensors (activations) at any moment, and the peak, via saved-tensor hooks.

    Each saved tensor is packed into a holder that autograd keeps until the graph is freed (after backward);
    a finaliser on the holder releases its bytes. Storages are counted once; ``ignore`` (the weights) not at all.
    """

    def __init__(self, ignore: list[torch.Tensor]) -> None:
        self.ignore = {t.untyped_storage().data_ptr() for t in ignore}
        self.refs: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _pack(self, tensor: torch.Tensor) -> object:
        holder = _Holder(tensor)
        key = tensor.untyped_storage().data_ptr()
        if key in self.ignore:
            return holder
        if self.refs.get(key, 0) == 0:
            self.current += tensor.untyped_storage().nbytes()
            self.peak = max(self.peak, self.current)
        self.refs[key] = self.refs.get(key, 0) + 1
        weakref.finalize(holder, self._release, key, tensor.untyped_storage().nbytes())
        return holder

    def _release(self, key: int, nbytes: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.current -= nbytes

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda holder: holder.tensor)


class _Holder:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def _peak_activation_bytes(learner: LearnerWorker, rollout: Rollout, chunk: LearnChunk, micro_batch: int) -> int:
    weights = list(learner.policy.transformer.parameters())
    meter = _SavedTensorBytes(weights)
    with meter.hooks():
        _gradient(learner, rollout, chunk, micro_batch)
    assert meter.current == 0  # every graph was freed by its backward
    return meter.peak


def test_peak_activation_memory_does_not_grow_with_the_number_of_trained_steps(cfg, rollout):
    learner = LearnerWorker(cfg.policy, cfg.grpo)
    learner.load_state(_perturbed_adapter(learner).tensors, None, 0)
    # K = 1 (step 0) and K = 4 (every step); CFG (three branches) runs at steps 0-2 here, so step 0 is a
    # most expensive step and the two peaks are comparable
    all_steps = _chunk(rollout, fraction=1.0)
    one_step = replace(all_steps, step_indices=all_steps.step_indices[:, :1])
    assert (one_step.step_indices == 0).all() and all_steps.step_indices.shape[1] == 4
    per_step_1 = _peak_activation_bytes(learner, rollout, one_step, micro_batch=0)
    per_step_4 = _peak_activation_bytes(learner, rollout, all_steps, micro_batch=0)
    one_graph_4 = _peak_activation_bytes(learner, rollout, all_steps, micro_batch=10**6)
    assert per_step_1 > 0
    assert per_step_4 <= 1.05 * per_step_1  # per trained step: flat in K
    assert one_graph_4 >= 3 * per_step_1  # one graph over all steps: grows with K (what the meter is for)


def test_two_minibatches_take_two_optimizer_steps_and_use_each_sample_once(cfg, rollout):
    grpo = replace(cfg.grpo, num_updates_per_step=2, num_epochs_per_step=1)
    learner = LearnerWorker(cfg.policy, grpo)
    sampler = PolicySampler(cfg.policy, max_weight_lag=0)
    sampler.load_weights(learner.weight_payload())
    chunk = _chunk(rollout, fraction=0.5, num_minibatches=2)
    assert sorted(chunk.minibatch.tolist()) == [0, 0, 0, 1, 1, 1]
    k = chunk.step_indices.shape[1]
    steps: list[int] = []
    seen: list[list[tuple[float, int]]] = [[]]

    def stepped(*_: object) -> None:
        steps.append(1)
        seen.append([])

    learner.optimizer.register_step_post_hook(stepped)
    score = learner.policy.logprob

    def recording(r: Rollout, step_indices: torch.Tensor, *, use_adapter: bool = True) -> StepLogProbs:
        if use_adapter:  # a sample is identified by its first recorded log-prob
            seen[-1].extend(zip(r.log_probs[:, 0].tolist(), step_indices[:, 0].tolist()))
        return score(r, step_indices, use_adapter=use_adapter)

    learner.policy.logprob = recording
    stats = learner.learn([rollout], [chunk], minibatch_element_counts(chunk.minibatch, 2, k), 6)
    assert len(steps) == stats.optimizer_steps == 2
    per_step = [sorted(s) for s in seen[:2]]
    samples = [{lp for lp, _ in s} for s in per_step]
    assert len(samples[0]) == len(samples[1]) == 3 and not samples[0] & samples[1]
    assert all(len(s) == 3 * k for s in per_step)  # every trained step of each sample, once
    assert stats.n_elements == 6 * k and stats.version == 1
    assert stats.first_update_ratio_max_dev <= 2.4e-7  # the first minibatch sees the sampling weights
    assert stats.ratio_max_dev > stats.first_update_ratio_max_dev  # the second sees the stepped ones

    epochs = LearnerWorker(cfg.policy, replace(grpo, num_epochs_per_step=2))
    assert epochs.learn([rollout], [chunk], minibatch_element_counts(chunk.minibatch, 2, k), 6).optimizer_steps == 4
    empty = LearnerWorker(cfg.policy, replace(grpo, num_updates_per_step=3))
    assert empty.learn([rollout], [chunk], [3 * k, 0, 3 * k], 6).optimizer_steps == 2  # empty minibatch: no step


class _MetaPolicy:
    """An RLPolicy whose device is ``meta``: what a CUDA policy looks like to a learner on a CPU-only machine.

    ``logprob`` answers on its device (shapes only) and depends on one trainable parameter there.
    """

    def __init__(self) -> None:
        self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))
        self.adapter_version = 0
        self.sampling = None

    @property
    def device(self) -> torch.device:
        return torch.device("meta")

    def logprob(self, rollout: Rollout, step_indices: torch.Tensor, *, use_adapter: bool = True) -> StepLogProbs:
        b, k = step_indices.shape
        c, h, w = rollout.latents.shape[2:]
        scale = self.weight if use_adapter else self.weight.detach()
        return StepLogProbs(
            log_prob=torch.zeros(b, k, device="meta") * scale,
            mean=torch.zeros(b, k, c, h, w, device="meta") * scale,
            std=torch.ones(b, k, device="meta"),
            sigma=torch.ones(b, k, device="meta"),
            dt=torch.ones(b, k, device="meta"),
        )

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [self.weight]


def _host_rollout(batch: int = 4, steps: int = 4) -> Rollout:
    """A rollout as samplers ship it: every tensor on the CPU."""
    conditions = EditConditions(torch.zeros(batch, 3, 8), torch.ones(batch, 3, dtype=torch.bool), None, None,
                                [[torch.zeros(4, 2, 2)] for _ in range(batch)])
    return Rollout(latents=torch.randn(batch, steps + 1, 4, 2, 2), log_probs=torch.randn(batch, steps),
                   timesteps=torch.linspace(0, 1, steps + 1), conditions=conditions,
                   images=torch.zeros(batch, 3, 8, 8), noise_level=0.9, group_ids=torch.tensor([0, 0, 1, 1]))


def test_every_loss_tensor_lives_on_the_policy_device(cfg):
    registry = default_policy_registry().extended(meta=lambda _cfg: _MetaPolicy())
    learner = LearnerWorker(replace(cfg.policy, kind="meta"), cfg.grpo, policy_registry=registry)
    assert learner.grpo.beta > 0
    rollout = _host_rollout()
    valid = torch.tensor([True, True, True, False])
    chunk = LearnChunk(torch.tensor([1.0, -1.0, 0.5, 0.0]), valid, torch.tensor([[0, 2], [1, 3], [0, 1], [2, 3]]),
                       torch.tensor([0, 0, 0, -1]))
    micro = learner._prepare([rollout], [chunk], 1)[0]
    assert len(micro) == 2 and all(mb.step_indices.shape == (3, 1) for mb in micro)
    for mb in micro:
        assert mb.advantages.device.type == "meta" and mb.old_log_prob.device.type == "meta"
        term = learner._micro_batch_loss(mb, denominator=6.0)
        assert mb.ref_mean is not None and mb.ref_mean.device.type == "meta"
        for tensor in (term.loss, term.policy, term.kl, term.log_prob, term.old_log_prob):
            assert tensor.device.type == "meta"
        assert learner._term_sums(term).device.type == "meta"
        term.loss.backward()
    assert learner.params[0].grad.device.type == "meta"
    # the bug this guards against: targets left on the host meet the device's log-probs in the loss
    stale = replace(micro[0], old_log_prob=torch.zeros(micro[0].old_log_prob.shape))
    with pytest.raises(RuntimeError, match="device"):
        learner._micro_batch_loss(stale, denominator=6.0)
