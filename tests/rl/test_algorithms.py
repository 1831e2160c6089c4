"""Flow-GRPO algorithm functions against hand-computed values."""

import math

import pytest
import torch

from rl.algorithms import (
    approx_kl,
    assign_minibatches,
    clip_fraction,
    clipped_surrogate,
    draw_sde_window,
    group_advantages,
    kl_to_reference,
    micro_batch_rows,
    minibatch_element_counts,
    trained_step_indices,
)


def test_group_advantages_hand_computed():
    # group 0: rewards 1, 3 -> mean 2, population std 1 -> A = -1/(1+1e-4), +1/(1+1e-4)
    # group 1: rewards 2, 2, 2 -> zero spread, dropped
    # group 2: 0, 10 and a NaN -> the NaN is dropped; mean 5, std 5 -> A = -5/(5+1e-4), +5/(5+1e-4)
    rewards = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.0, 10.0, float("nan")])
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    out = group_advantages(rewards, groups)
    a = 1.0 / (1.0 + 1e-4)
    b = 5.0 / (5.0 + 1e-4)
    expected = torch.tensor([-a, a, 0, 0, 0, -b, b, 0])
    assert torch.allclose(out.advantages, expected, atol=1e-7)
    assert out.valid.tolist() == [True, True, False, False, False, True, True, False]
    assert out.n_zero_spread == 3
    assert out.n_nonfinite == 1


def test_group_advantages_batch_std_and_clip():
    rewards = torch.tensor([0.0, 1.0, 0.0, 100.0])
    groups = torch.tensor([0, 0, 1, 1])
    out = group_advantages(rewards, groups, std_over_batch=True, clip=5.0)
    # batch population std of [0, 1, 0, 100]: mean 25.25
    mean = 25.25
    std = math.sqrt(((0 - mean) ** 2 * 2 + (1 - mean) ** 2 + (100 - mean) ** 2) / 4)
    assert out.advantages[0].item() == pytest.approx(-0.5 / (std + 1e-4), rel=1e-6)
    assert out.advantages[3].item() == pytest.approx(50.0 / (std + 1e-4), rel=1e-6)
    clipped = group_advantages(torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), torch.zeros(10, dtype=torch.long))
    # one outlier among 10: (1 - 0.1) / 0.3 = 3.0 -> not clipped; with clip 2 it is
    assert clipped.advantages[1].item() == pytest.approx(0.9 / (0.3 + 1e-4), rel=1e-5)
    clipped2 = group_advantages(torch.tensor([0.0, 1.0] + [0.0] * 8), torch.zeros(10, dtype=torch.long), clip=2.0)
    assert clipped2.advantages[1].item() == 2.0


def test_clipped_surrogate_hand_computed():
    eps_low, eps_high = 0.1, 0.2
    old = torch.zeros(2, 2)
    # ratios: 1.5 (above 1.2), 0.5 (below 0.9), 1.0, 1.1
    new = torch.log(torch.tensor([[1.5, 0.5], [1.0, 1.1]]))
    adv = torch.tensor([2.0, -1.0])
    loss = clipped_surrogate(new, old, adv, eps_low=eps_low, eps_high=eps_high)
    # A=2, rho=1.5: max(-3, -2.4) = -2.4 ; rho=0.5: max(-1, -1.8) = -1
    # A=-1, rho=1.0: max(1, 1) = 1 ; rho=1.1: max(1.1, 1.1) = 1.1
    assert torch.allclose(loss, torch.tensor([[-2.4, -1.0], [1.0, 1.1]]), atol=1e-6)
    assert clip_fraction(new, old, eps_low=eps_low, eps_high=eps_high).item() == pytest.approx(0.5)
    d = torch.log(torch.tensor([1.5, 0.5, 1.0, 1.1]))
    assert approx_kl(new, old).item() == pytest.approx(0.5 * float((d**2).mean()), rel=1e-6)


def test_kl_to_reference_both_forms():
    mean = torch.zeros(1, 2, 2, 1, 1)
    ref = torch.tensor([[[[[1.0]], [[3.0]]], [[[2.0]], [[0.0]]]]])  # (1, 2, C=2, 1, 1)
    sigma = torch.tensor([[0.5, 2.0]])
    dt = torch.tensor([[0.1, 0.25]])
    # step 0: mean sq = (1 + 9) / 2 = 5 -> 5 / (2 * 0.25) = 10 ; exact: 10 / 0.1 = 100
    # step 1: mean sq = 4 / 2 = 2 -> 2 / (2 * 4) = 0.25 ; exact: 0.25 / 0.25 = 1
    assert torch.allclose(kl_to_reference(mean, ref, sigma, dt), torch.tensor([[10.0, 0.25]]))
    assert torch.allclose(kl_to_reference(mean, ref, sigma, dt, exact=True), torch.tensor([[100.0, 1.0]]))


def test_trained_step_indices():
    gen = torch.Generator().manual_seed(0)
    idx = trained_step_indices(3, 20, 0.6, gen)
    assert idx.shape == (3, 12)
    for row in idx:
        assert len(set(row.tolist())) == 12 and row.min() >= 0 and row.max() < 20
        assert torch.equal(row, row.sort().values)
    again = trained_step_indices(3, 20, 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)


def test_trained_step_indices_of_a_window_lie_in_it():
    idx = trained_step_indices(4, 3, 1.0, torch.Generator().manual_seed(0), offset=5)
    assert idx.tolist() == [[5, 6, 7]] * 4  # fraction 1: every step of the window [5, 8)
    some = trained_step_indices(50, 4, 0.5, torch.Generator().manual_seed(1), offset=2)
    assert some.shape == (50, 2) and set(some.reshape(-1).tolist()) == {2, 3, 4, 5}


def test_sde_window_start_is_uniform_over_the_positions_inside_the_range():
    gen = torch.Generator().manual_seed(0)
    windows = [draw_sde_window(8, 2, (1, 5), gen) for _ in range(400)]
    assert set(windows) == {(1, 3), (2, 4), (3, 5)}  # every start that keeps [start, start + 2) inside [1, 5)
    counts = [windows.count(w) for w in ((1, 3), (2, 4), (3, 5))]
    assert min(counts) > 100  # 400 draws over 3 positions: ~133 each
    assert draw_sde_window(8, 8, None, gen) == (0, 8)
    assert draw_sde_window(8, 0, (1, 5), gen) is None  # size 0: the SDE on every step
    with pytest.raises(ValueError, match=r"3 steps does not fit \[1, 3\) of T=8"):
        draw_sde_window(8, 3, (1, 3), gen)


def test_minibatches_are_disjoint_near_equal_and_cover_every_kept_sample():
    valid = torch.tensor([True, False, True, True, True, True, False, True])
    ids = assign_minibatches(valid, 2, torch.Generator().manual_seed(0))
    assert (ids[~valid] == -1).all() and set(ids[valid].tolist()) == {0, 1}
    assert sorted(torch.bincount(ids[valid]).tolist()) == [3, 3]
    assert torch.equal(ids, assign_minibatches(valid, 2, torch.Generator().manual_seed(0)))
    assert minibatch_element_counts(ids, 2, steps_per_sample=12) == [36, 36]
    few = assign_minibatches(torch.tensor([True, False]), 3, torch.Generator().manual_seed(0))
    assert few.tolist() == [0, -1] and minibatch_element_counts(few, 3, 2) == [2, 0, 0]
    with pytest.raises(ValueError, match="num_minibatches"):
        assign_minibatches(valid, 0, torch.Generator())


def test_micro_batch_rows_go_trained_step_first():
    samples = torch.tensor([4, 7, 9])
    per_step = micro_batch_rows(samples, num_steps=2, micro_batch=0)
    assert [(o.tolist(), c.tolist()) for o, c in per_step] == [([4, 7, 9], [0, 0, 0]), ([4, 7, 9], [1, 1, 1])]
    pairs = micro_batch_rows(samples, num_steps=2, micro_batch=4)
    assert [o.tolist() for o, _ in pairs] == [[4, 7, 9, 4], [7, 9]] and [c.tolist() for _, c in pairs] == [[0, 0, 0, 1], [1, 1]]
    assert len(micro_batch_rows(samples, 2, 100)) == 1 and micro_batch_rows(samples[:0], 2, 0) == []
