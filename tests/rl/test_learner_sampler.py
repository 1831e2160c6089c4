"""Sampler and learner in-process on the tiny OmniGen2: on-policy ratio, weight sync, version check, NaN rewards."""

from dataclasses import replace

import pytest
import torch
from PIL import Image

from editrl.config import ConfigError
from policies.base import RLPolicy
from policies.registry import default_policy_registry
from reward.registry import build_reward_model
from rl.algorithms import group_advantages, trained_step_indices
from rl.learner import LearnerWorker
from rl.reward_actor import score_safely
from rl.sampler import NO_WEIGHTS, NoWeightsError, PolicySampler, StaleWeightsError
from rl.types import LearnChunk, RewardResult, SampleRequest, ScoringInput
from tests.rl.helpers import toy_config


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return toy_config(tmp_path_factory.mktemp("cfg"), "grpo.num_updates_per_step=1")


def _request(version: int, seed: int = 1) -> SampleRequest:
    img = Image.new("RGB", (32, 32), (200, 40, 40))
    other = Image.new("RGB", (32, 32), (20, 160, 40))
    return SampleRequest(
        record_ids=["a", "b"], instructions=["make the square blue", "add a red dot"], sources=[[img], [other]],
        group_ids=torch.tensor([0, 1]), samples_per_group=3, seed=seed, learner_version=version,
    )


def _chunk(rollout, seed: int = 0) -> tuple[LearnChunk, int]:
    rewards = torch.arange(rollout.latents.shape[0], dtype=torch.float32) % 3
    adv = group_advantages(rewards, rollout.group_ids)
    t = rollout.log_probs.shape[1]
    idx = trained_step_indices(rewards.numel(), t, 0.5, torch.Generator().manual_seed(seed))
    minibatch = torch.where(adv.valid, 0, -1)
    return LearnChunk(adv.advantages, adv.valid, idx, minibatch), int(adv.valid.sum())


def test_first_update_on_fresh_rollouts_has_ratio_one_and_sync_changes_samples(cfg):
    learner = LearnerWorker(cfg.policy, cfg.grpo)
    sampler = PolicySampler(cfg.policy, max_weight_lag=0)
    with pytest.raises(NoWeightsError):
        sampler.sample(_request(0))
    payload = learner.weight_payload()
    assert payload.num_bytes == sum(p.numel() * p.element_size() for p in learner.params)
    sampler.load_weights(payload)
    rollout, scoring = sampler.sample(_request(0))
    assert rollout.latents.shape[0] == 6 and rollout.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(scoring.edits) == 6 and scoring.instructions[3] == "add a red dot"
    chunk, kept = _chunk(rollout)
    k = chunk.step_indices.shape[1]
    stats = learner.learn([rollout], [chunk], [kept * k], kept)
    assert stats.first_update_ratio_max_dev == 0.0
    assert stats.ratio_mean == 1.0
    assert stats.grad_norm > 0 and stats.version == 1

    # the same request with the old weights and with the new ones: the update changes what is sampled
    again, _ = sampler.sample(_request(0))
    assert torch.equal(again.latents, rollout.latents)
    with pytest.raises(StaleWeightsError, match="lag 1 exceeds max_weight_lag=0"):
        sampler.sample(_request(1))
    sampler.load_weights(learner.weight_payload())
    updated, _ = sampler.sample(_request(1))
    assert updated.adapter_version == 1
    assert not torch.allclose(updated.latents[:, -1], rollout.latents[:, -1])


def test_lag_one_sampler_accepts_one_version_behind(cfg):
    learner = LearnerWorker(cfg.policy, cfg.grpo)
    sampler = PolicySampler(cfg.policy, max_weight_lag=1)
    sampler.load_weights(learner.weight_payload())
    sampler.check_version(1)
    with pytest.raises(StaleWeightsError, match="lag 2"):
        sampler.check_version(2)


class _NaNOnSecond:
    """The real tiny reward model, with a NaN injected into sample 1 (a numerically failing model)."""

    def __init__(self, model):
        self.model = model
        self.dimensions = model.dimensions

    def score(self, sources, edits, instructions):
        scores = self.model.score(sources, edits, instructions)
        scores.reward[1] = float("nan")
        return scores


class _Raises:
    dimensions = ("instruction_following", "visual_quality")

    def score(self, sources, edits, instructions):
        raise RuntimeError("CUDA error: device-side assert")


def test_nan_or_failing_reward_drops_samples_and_counts_them(cfg):
    model = build_reward_model(cfg.reward)
    img = Image.new("RGB", (32, 32), (1, 2, 3))
    batch = ScoringInput([img] * 3, [img] * 3, ["x", "y", "z"])
    result = score_safely(_NaNOnSecond(model), batch)
    assert result.n_failed == 1
    assert torch.isnan(result.reward[1]) and torch.isfinite(result.reward[[0, 2]]).all()
    failed = score_safely(_Raises(), batch)
    assert failed.n_failed == 3 and "device-side assert" in failed.error
    rewards = torch.cat([result.reward, torch.tensor([0.0, 1.0, 2.0])])
    adv = group_advantages(rewards, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert adv.n_nonfinite == 1 and not adv.valid[1] and torch.isfinite(adv.advantages).all()
    assert isinstance(RewardResult.failed(2, ("a",), "e").reward, torch.Tensor)


def test_a_registered_policy_family_trains_without_editing_rl(cfg, tmp_path):
    """Sampler and learner build the policy the config's ``kind`` names from the registry they are given."""
    built = []

    def build_wrapped(policy_cfg):
        built.append(policy_cfg.kind)
        return default_policy_registry().build(replace(policy_cfg, kind="omnigen2"))

    registry = default_policy_registry().extended(wrapped=build_wrapped)
    policy_cfg = replace(cfg.policy, kind="wrapped")
    learner = LearnerWorker(policy_cfg, cfg.grpo, policy_registry=registry)
    sampler = PolicySampler(policy_cfg, max_weight_lag=0, policy_registry=registry)
    assert built == ["wrapped", "wrapped"] and isinstance(sampler.policy, RLPolicy)
    assert sampler.sampling_defaults() == cfg.policy.sampling_settings()
    assert sampler.get_version() == NO_WEIGHTS
    sampler.load_weights(learner.weight_payload())
    rollout, _ = sampler.sample(_request(0))
    chunk, kept = _chunk(rollout)
    assert learner.learn([rollout], [chunk], [kept * chunk.step_indices.shape[1]], kept).version == 1
    assert learner.version == learner.policy.adapter_version == learner.weight_payload().version == 1
    assert learner.load_state(learner.weight_payload().tensors, learner.optimizer_state(), 5) == 5 and learner.policy.adapter_version == 5

    with pytest.raises(ConfigError, match="policy.kind: unknown policy kind 'wrapped'"):
        PolicySampler(policy_cfg, max_weight_lag=0)
    with pytest.raises(ConfigError, match="policy.kind: unknown policy kind 'wrapped'"):
        toy_config(tmp_path, "policy.kind=wrapped")


def test_resume_applies_the_configured_learning_rate_not_the_checkpoints(cfg):
    policy_cfg = cfg.policy
    old = LearnerWorker(policy_cfg, replace(cfg.grpo, learning_rate=1e-3))
    saved = old.optimizer_state()
    assert saved["param_groups"][0]["lr"] == 1e-3
    new = LearnerWorker(policy_cfg, replace(cfg.grpo, learning_rate=5e-4))
    new.load_state(old.weight_payload().tensors, saved, 3)
    assert new.learning_rates() and all(lr == 5e-4 for lr in new.learning_rates())
    assert new.optimizer.param_groups[0]["lr"] == 5e-4
