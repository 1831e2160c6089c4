"""Pure round assembly: chunking groups over sampler calls, advantages normalised by group across chunks,
reward statistics, and a round's timing from its phase timers."""

import math
import time

import pytest
import torch
from PIL import Image

from editrl.timing import phase_timer
from rl.config import GRPOConfig
from rl.controller import chunk_requests, reward_statistics, round_advantages, round_sde_window
from rl.types import InstructionRecord, RewardResult, RoundTiming


def _records(n):
    return [InstructionRecord(f"r{i}", f"edit {i}", ()) for i in range(n)]


def test_chunking_whole_groups_and_split_groups():
    img = [[Image.new("RGB", (8, 8))] for _ in range(3)]
    whole = chunk_requests(_records(3), img, step=0, group_size=4, samples_per_chunk=8, seed=0, learner_version=0)
    assert [r.group_ids.tolist() for r in whole] == [[0, 1], [2]]
    assert all(r.samples_per_group == 4 for r in whole)
    split = chunk_requests(_records(3), img, step=0, group_size=4, samples_per_chunk=2, seed=0, learner_version=0)
    assert [r.group_ids.tolist() for r in split] == [[0], [0], [1], [1], [2], [2]]
    assert len({r.seed for r in split}) == 6  # the two halves of a group draw different noise
    assert sum(r.num_samples for r in split) == 12


def test_advantages_over_a_group_split_across_chunks():
    img = [[Image.new("RGB", (8, 8))]]
    requests = chunk_requests(_records(1), img, step=3, group_size=4, samples_per_chunk=2, seed=0, learner_version=0)
    dims = ("instruction_following", "visual_quality")
    rewards = [RewardResult(torch.tensor([1.0, 2.0]), torch.zeros(2, 2), dims, 0),
               RewardResult(torch.tensor([3.0, 4.0]), torch.zeros(2, 2), dims, 0)]
    adv = round_advantages(requests, rewards, num_steps=20, cfg_grpo=GRPOConfig(), step=3)
    # one group of four: mean 2.5, population std sqrt(1.25)
    std = 1.25**0.5 + 1e-4
    got = torch.cat([c.advantages for c in adv.chunks])
    assert torch.allclose(got, torch.tensor([-1.5, -0.5, 0.5, 1.5]) / std)
    assert all(c.step_indices.shape == (2, 12) for c in adv.chunks)
    assert (adv.n_samples, adv.n_kept, adv.n_zero_spread, adv.n_nonfinite) == (4, 4, 0, 0)
    assert all(type(n) is int for n in (adv.n_samples, adv.n_kept, adv.n_zero_spread, adv.n_nonfinite))
    assert adv.mean == pytest.approx(0.0, abs=1e-6) and adv.abs_max == pytest.approx(1.5 / std)
    again = round_advantages(requests, rewards, num_steps=20, cfg_grpo=GRPOConfig(), step=3)
    assert all(torch.equal(a.step_indices, b.step_indices) for a, b in zip(adv.chunks, again.chunks))
    # num_updates_per_step = 2 (the default): two disjoint minibatches of two samples over the round's chunks
    minibatch = torch.cat([c.minibatch for c in adv.chunks])
    assert sorted(minibatch.tolist()) == [0, 0, 1, 1] and adv.minibatch_elements == [24, 24]
    assert all(torch.equal(a.minibatch, b.minibatch) for a, b in zip(adv.chunks, again.chunks))


def test_a_round_with_an_sde_window_samples_and_trains_only_the_window():
    cfg = GRPOConfig(sde_window_size=2, sde_window_range=[1, 6], timestep_fraction=1.0, seed=4)
    windows = [round_sde_window(cfg, 8, step) for step in range(60)]
    assert windows[:5] == [round_sde_window(cfg, 8, step) for step in range(5)]  # drawn from (seed, round) alone
    assert {w[0] for w in windows} == {1, 2, 3, 4} and all(w[1] == w[0] + 2 for w in windows)
    assert round_sde_window(GRPOConfig(), 8, 0) is None  # no window: the SDE on every step

    img = [[Image.new("RGB", (8, 8))] for _ in range(2)]
    requests = chunk_requests(_records(2), img, step=0, group_size=2, samples_per_chunk=2, seed=0, learner_version=0,
                              sde_window=(3, 5))
    assert all(r.sde_window == (3, 5) for r in requests)
    dims = ("instruction_following", "visual_quality")
    rewards = [RewardResult(torch.tensor([1.0, 2.0]), torch.zeros(2, 2), dims, 0) for _ in requests]
    adv = round_advantages(requests, rewards, num_steps=8, cfg_grpo=cfg, step=0)
    assert all(c.step_indices.tolist() == [[3, 4], [3, 4]] for c in adv.chunks)
    assert sum(adv.minibatch_elements) == 4 * 2  # 4 samples x the window's 2 steps
    half = round_advantages(requests, rewards, num_steps=8, cfg_grpo=GRPOConfig(sde_window_size=2), step=0)
    assert all(c.step_indices.shape == (2, 1) and set(c.step_indices.reshape(-1).tolist()) <= {3, 4}
               for c in half.chunks)  # timestep_fraction 0.6 of a 2-step window: one step, inside it


def test_dropped_samples_are_counted_and_reward_statistics_skip_nonfinite():
    img = [[Image.new("RGB", (8, 8))] for _ in range(2)]
    requests = chunk_requests(_records(2), img, step=0, group_size=2, samples_per_chunk=4, seed=0, learner_version=0)
    dims = ("instruction_following", "visual_quality")
    mu = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 5.0], [float("nan")] * 2])
    rewards = [RewardResult(torch.tensor([1.0, 3.0, 5.0, float("nan")]), mu, dims, 1)]
    adv = round_advantages(requests, rewards, num_steps=20, cfg_grpo=GRPOConfig(), step=0)
    # group 0 keeps both samples; group 1 has one finite reward (no spread) and one failed
    assert (adv.n_samples, adv.n_kept, adv.n_nonfinite) == (4, 2, 1)
    assert adv.chunks[0].minibatch[2:].tolist() == [-1, -1] and sum(adv.minibatch_elements) == 2 * 12
    stats = reward_statistics(rewards)
    assert stats.mean == {"reward": 3.0, "instruction_following": 3.0, "visual_quality": pytest.approx(11 / 3)}
    assert stats.std["reward"] == pytest.approx(math.sqrt(8 / 3))


def test_round_timing_from_phase_timers():
    timings: dict[str, float] = {}
    with phase_timer("total", timings):
        for _ in range(2):  # a phase entered twice in a round (e.g. a re-issued chunk) accumulates
            with phase_timer("sample", timings):
                time.sleep(0.01)
        with phase_timer("learn", timings):
            time.sleep(0.01)
        time.sleep(0.01)
    timing = RoundTiming.from_phases(timings)
    assert timing.sample >= 0.02 and timing.learn >= 0.01 and timing.reward == 0.0 and timing.sync == 0.0
    assert timing.idle == pytest.approx(timing.total - timing.sample - timing.learn) and timing.idle >= 0.01
    assert RoundTiming.from_phases({"sample": 2.0, "total": 1.0}).idle == 0.0
    with pytest.raises(ValueError, match="lern"):
        RoundTiming.from_phases({"lern": 1.0})
