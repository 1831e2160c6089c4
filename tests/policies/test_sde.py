"""The Flow-GRPO SDE step (DESIGN §2.2) against hand-computed values and its own sampling distribution."""

import math

import pytest
import torch

from policies.omnigen2.sde import sde_step_with_logprob


def test_zero_noise_is_the_euler_step_exactly():
    x, v = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    out = sde_step_with_logprob(v, 0.3, 0.45, x, 0.0)
    dt = torch.tensor(0.45) - torch.tensor(0.3)
    assert torch.equal(out.prev_sample, x + dt * v)
    assert torch.equal(out.log_prob, torch.zeros(2))


def test_mean_std_and_log_prob_match_hand_computed_values():
    # t=0.25, t'=0.5, c=0.9: sigma_t = 0.9*sqrt(3) (sigma^2 = 2.43), dt = 0.25, x = 1, v = 2.
    # mean = 1*(1 - 2.43*0.25/1.5) + 2*(1 + 2.43*0.25/1.5)*0.25 = 0.595 + 0.7025 = 1.2975
    # std  = 0.9*sqrt(3)*0.5 = 0.779422863...
    x, v = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 2.0)
    z = torch.tensor([0.5, -1.0, 2.0, 0.0]).view(1, 1, 2, 2)
    std = 0.9 * math.sqrt(3) * 0.5
    given = 1.2975 + std * z
    out = sde_step_with_logprob(v, 0.25, 0.5, x, 0.9, prev_sample=given)
    assert torch.allclose(out.mean, torch.full_like(x, 1.2975), atol=1e-6)
    assert out.std.item() == pytest.approx(std, rel=1e-6)
    expected = sum(-(zi**2) / 2 for zi in (0.5, -1.0, 2.0, 0.0)) / 4 - math.log(std) - 0.5 * math.log(2 * math.pi)
    assert out.log_prob.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(out.prev_sample, given)
    masked = sde_step_with_logprob(v, 0.25, 0.5, x, 0.9, prev_sample=given, mask=torch.tensor([[1, 0], [0, 0]]))
    assert masked.log_prob.item() == pytest.approx(-0.125 - math.log(std) - 0.5 * math.log(2 * math.pi), rel=1e-5)


def test_first_step_uses_next_time_in_the_denominator_and_per_sample_times():
    # t = 0, t' = 0.25, c = 0.5: sigma = 0.5*sqrt(1/0.25) = 1, std = sqrt(0.25) = 0.5.
    # second sample t = 0.5, t' = 0.75: sigma = 0.5, std = 0.25.
    x = torch.zeros(2, 1, 1, 1)
    out = sde_step_with_logprob(torch.zeros_like(x), torch.tensor([0.0, 0.5]), torch.tensor([0.25, 0.75]), x, 0.5)
    assert out.std.tolist() == pytest.approx([0.5, 0.25], rel=1e-6)


def test_empirical_distribution_of_one_step_matches_the_formula():
    x, v = torch.ones(1, 1, 400, 500), torch.full((1, 1, 400, 500), 2.0)
    generator = torch.Generator().manual_seed(0)
    out = sde_step_with_logprob(v, 0.25, 0.5, x, 0.9, generator=generator)
    assert out.prev_sample.mean().item() == pytest.approx(1.2975, abs=5e-3)
    assert out.prev_sample.std().item() == pytest.approx(0.9 * math.sqrt(3) * 0.5, rel=5e-3)
    # the log-prob of its own draw averages to the Gaussian's negative entropy
    entropy = 0.5 + math.log(0.9 * math.sqrt(3) * 0.5) + 0.5 * math.log(2 * math.pi)
    assert out.log_prob.item() == pytest.approx(-entropy, abs=5e-3)


def test_rejects_backward_steps():
    x = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ValueError, match="t < t'"):
        sde_step_with_logprob(x, 0.5, 0.5, x, 0.9)


def test_agrees_with_flow_grpo_sd3_form_under_the_change_of_convention():
    # SD3 convention: s = 1 - t (noise level), velocity u = -v, ds = -(t' - t); Flow-GRPO's step there:
    # std = c*sqrt(s/(1-s)); mean = x*(1 + std^2/(2s)*ds) + u*(1 + std^2*(1-s)/(2s))*ds
    generator = torch.Generator().manual_seed(3)
    x, v = torch.randn(3, 2, 4, 4, generator=generator), torch.randn(3, 2, 4, 4, generator=generator)
    t, t_next, c = torch.tensor([0.1, 0.4, 0.8]), torch.tensor([0.3, 0.5, 0.95]), 0.7
    s, ds = (1 - t).view(-1, 1, 1, 1), (t - t_next).view(-1, 1, 1, 1)
    std_sd3 = c * torch.sqrt(s / (1 - s))
    mean_sd3 = x * (1 + std_sd3**2 / (2 * s) * ds) + (-v) * (1 + std_sd3**2 * (1 - s) / (2 * s)) * ds
    out = sde_step_with_logprob(v, t, t_next, x, c)
    assert torch.allclose(out.mean, mean_sd3, atol=1e-5)
    assert torch.allclose(out.std, (std_sd3 * torch.sqrt(-ds)).flatten(), atol=1e-6)


def test_sde_keeps_the_flow_marginals_for_gaussian_data():
    # data x1 ~ N(0, a^2): x_t = t*x1 + (1-t)*x0 has variance t^2 a^2 + (1-t)^2 and the exact velocity
    # E[x1 - x0 | x_t] = x * (t a^2 - (1-t)) / (t^2 a^2 + (1-t)^2). With c = 0.9 the SDE must end at Var = a^2.
    a, steps = 0.5, 100
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40000, 1, 1, 1, generator=generator)
    grid = torch.linspace(0, 1, steps + 1)
    for i in range(steps):
        t = grid[i]
        velocity = x * (t * a * a - (1 - t)) / (t * t * a * a + (1 - t) ** 2)
        x = sde_step_with_logprob(velocity, grid[i], grid[i + 1], x, 0.9, generator=generator).prev_sample
    assert x.var().item() == pytest.approx(a * a, rel=0.04)
