"""Pure round assembly: chunking groups over sampler calls and advantages normalised by group across chunks."""

import torch
from PIL import Image

from rl.config import GRPOConfig
from rl.controller import chunk_requests, round_advantages
from rl.types import InstructionRecord, RewardResult


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
    chunks, stats = round_advantages(requests, rewards, num_steps=20, cfg_grpo=GRPOConfig(), step=3)
    # one group of four: mean 2.5, population std sqrt(1.25)
    std = 1.25**0.5 + 1e-4
    got = torch.cat([c.advantages for c in chunks])
    assert torch.allclose(got, torch.tensor([-1.5, -0.5, 0.5, 1.5]) / std)
    assert stats["n_kept"] == 4 and all(c.step_indices.shape == (2, 12) for c in chunks)
    again, _ = round_advantages(requests, rewards, num_steps=20, cfg_grpo=GRPOConfig(), step=3)
    assert all(torch.equal(a.step_indices, b.step_indices) for a, b in zip(chunks, again))
