"""The ranking loss against Monte Carlo, closed forms and limits; the masked LM loss against a hand count."""

import math

import pytest
import torch
import torch.nn.functional as F

from reward.jrm.loss import (
    RANK_LOSSES,
    expected_log_loss,
    lm_target_sequences,
    log_prob_preferred,
    rank_loss,
    rationale_lm_loss,
    reduce_token_nll,
    uncertainty_rank_loss,
)


def _monte_carlo_loss(mu_w, sigma_w, mu_l, sigma_l, n=100_000):
    """-mean log E[sigmoid(z)] with antithetic Gaussian samples (float64)."""
    gen = torch.Generator().manual_seed(123)
    u = torch.randn(mu_w.shape[0], n // 2, generator=gen, dtype=torch.float64)
    u = torch.cat([u, -u], dim=1)
    m = (mu_w - mu_l).double()[:, None]
    s = torch.sqrt(sigma_w.double() ** 2 + sigma_l.double() ** 2)[:, None]
    p = torch.sigmoid(m + s * u).mean(dim=1)
    return -torch.log(p).mean()


def _trapezoid_log_p(margin, spread):
    """log E[sigmoid(margin + spread * u)], u ~ N(0, 1), by a 4M-point trapezoid rule in float64."""
    u = torch.linspace(-40, 40, 4_000_001, dtype=torch.float64)
    density = torch.exp(-u * u / 2) / math.sqrt(2 * math.pi)
    return math.log(float((density * torch.sigmoid(margin + spread * u)).sum() * (u[1] - u[0])))


MU_W = torch.tensor([0.3, 2.0, -1.0, 4.0, 0.0, -6.0, 1.5, 10.0])
MU_L = torch.tensor([0.0, -0.5, 1.0, 0.0, 3.0, -2.0, 1.5, 0.0])
SIGMA_W = torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0, 0.7, 5.0, 8.0])
SIGMA_L = torch.tensor([0.2, 0.5, 0.3, 2.5, 1.0, 4.0, 0.1, 6.0])


def test_matches_monte_carlo():
    got = uncertainty_rank_loss(MU_W, SIGMA_W, MU_L, SIGMA_L)
    ref = _monte_carlo_loss(MU_W, SIGMA_W, MU_L, SIGMA_L)
    assert abs(got.item() - ref.item()) < 1e-3, (got.item(), ref.item())


def test_each_element_matches_a_fine_deterministic_integral():
    got = log_prob_preferred(MU_W, SIGMA_W, MU_L, SIGMA_L)
    for i in range(MU_W.shape[0]):  # narrow (Hermite) and wide (Laguerre) branches both covered
        spread = math.hypot(SIGMA_W[i].item(), SIGMA_L[i].item())
        ref = _trapezoid_log_p((MU_W[i] - MU_L[i]).item(), spread)
        assert math.isclose(got[i].item(), ref, rel_tol=1e-6), (i, got[i].item(), ref)


def test_closed_forms_and_limits():
    # sigma -> 0: P = sigmoid(mu_w - mu_l)
    mu_w, mu_l = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    tiny = torch.full((3,), 1e-6)
    expected = -F.logsigmoid(mu_w - mu_l).double().mean().item()
    assert math.isclose(uncertainty_rank_loss(mu_w, tiny, mu_l, tiny).item(), expected, rel_tol=1e-5)
    # equal means: P = 1/2 exactly for any spread, by symmetry of the sigmoid around 1/2
    for s in (0.3, 2.9, 3.1, 40.0):
        sig = torch.tensor([s])
        assert math.isclose(uncertainty_rank_loss(torch.zeros(1), sig, torch.zeros(1), sig).item(), math.log(2), rel_tol=1e-6)
    # P(w > l) + P(l > w) = 1
    mw, ml, sw, sl = torch.tensor([0.7, 3.0]), torch.tensor([-0.4, 0.0]), torch.tensor([1.2, 4.0]), torch.tensor([0.5, 2.0])
    total = log_prob_preferred(mw, sw, ml, sl).exp() + log_prob_preferred(ml, sl, mw, sw).exp()
    torch.testing.assert_close(total, torch.ones(2), atol=1e-6, rtol=0)


def test_gradient_directions_and_finiteness():
    mu_w = torch.tensor([2.0, 2.0], requires_grad=True)
    mu_l = torch.tensor([0.0, 0.0], requires_grad=True)
    sigma_w = torch.tensor([0.5, 4.0], requires_grad=True)  # one narrow, one wide-branch element
    sigma_l = torch.tensor([0.5, 4.0], requires_grad=True)
    uncertainty_rank_loss(mu_w, sigma_w, mu_l, sigma_l).backward()
    assert (mu_w.grad < 0).all()  # raising the winner's mean lowers the loss
    assert (mu_l.grad > 0).all()  # raising the loser's mean raises it
    assert (sigma_w.grad > 0).all() and (sigma_l.grad > 0).all()  # a correct ranking wants confidence
    # extreme margins stay finite in value and gradient
    mw = torch.tensor([-500.0, 500.0, -150.0], requires_grad=True)
    sig = torch.tensor([0.01, 50.0, 5.0], requires_grad=True)
    loss = uncertainty_rank_loss(mw, sig, torch.zeros(3), sig)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(mw.grad).all() and torch.isfinite(sig.grad).all()


def test_rationale_lm_loss_counts_only_masked_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, requires_grad=True)
    ids = torch.tensor([[1, 2, 3, 4, 5], [6, 5, 4, 3, 2]])
    mask = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.bool)
    manual = [
        -torch.log_softmax(logits[0, 2], -1)[4],
        -torch.log_softmax(logits[0, 3], -1)[5],
        -torch.log_softmax(logits[1, 1], -1)[4],
    ]
    loss = rationale_lm_loss(logits, ids, mask)
    torch.testing.assert_close(loss, torch.stack(manual).mean())
    loss.backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert touched.tolist() == [[False, False, True, True, False], [False, True, False, False, False]]
    empty = rationale_lm_loss(logits, ids, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad


# --- HPSv3's objective E[-log sigmoid(z)] and the choice between the two (jrm.rank_loss) ---


def _trapezoid_expected_log_loss(margin, spread):
    """E[-log sigmoid(margin + spread * u)] = E[softplus(-z)], u ~ N(0, 1), by a 4M-point trapezoid rule (float64)."""
    u = torch.linspace(-40, 40, 4_000_001, dtype=torch.float64)
    density = torch.exp(-u * u / 2) / math.sqrt(2 * math.pi)
    return float((density * F.softplus(-(margin + spread * u))).sum() * (u[1] - u[0]))


def test_hpsv3_each_element_matches_a_fine_deterministic_integral():
    got = expected_log_loss(MU_W.double(), SIGMA_W.double(), MU_L.double(), SIGMA_L.double())
    for i in range(MU_W.shape[0]):  # narrow (Hermite) and wide (kink + Laguerre) branches both covered
        spread = math.hypot(SIGMA_W[i].item(), SIGMA_L[i].item())
        ref = _trapezoid_expected_log_loss((MU_W[i] - MU_L[i]).item(), spread)
        assert math.isclose(got[i].item(), ref, rel_tol=1e-8), (i, got[i].item(), ref)
    both_sides = rank_loss("hpsv3", MU_W, SIGMA_W, MU_L, SIGMA_L)
    assert math.isclose(both_sides.item(), got.mean().item(), rel_tol=1e-6)


def test_hpsv3_is_continuous_across_the_branch_switch_and_has_the_right_limits():
    # spread just below and above the switch at 3: both branches agree with the reference there
    for spread in (2.999, 3.0, 3.001):
        sig = torch.tensor([spread / math.sqrt(2)], dtype=torch.float64)
        for m in (-4.0, 0.0, 1.7):
            got = expected_log_loss(torch.tensor([m], dtype=torch.float64), sig, torch.zeros(1, dtype=torch.float64), sig)
            assert math.isclose(got.item(), _trapezoid_expected_log_loss(m, spread), rel_tol=1e-9)
    # sigma -> 0: -log sigmoid(margin); huge margins: 0 and -margin
    mu_w, mu_l = torch.tensor([1.0, -2.0, 0.5, 300.0, -300.0]), torch.tensor([0.0, 1.0, 0.5, 0.0, 0.0])
    tiny = torch.full((5,), 1e-6)
    torch.testing.assert_close(expected_log_loss(mu_w, tiny, mu_l, tiny), -F.logsigmoid(mu_w - mu_l), atol=1e-6, rtol=1e-6)
    wide = torch.full((2,), 5.0)
    torch.testing.assert_close(
        expected_log_loss(torch.tensor([400.0, -400.0]), wide, torch.zeros(2), wide), torch.tensor([0.0, 400.0]), atol=1e-5, rtol=1e-7
    )


def test_the_gap_between_the_two_objectives():
    """The issue's numbers: equal means and sigma = 2 on each side, i.e. z ~ N(0, 2^2 + 2^2)."""
    zero, two = torch.zeros(1, dtype=torch.float64), torch.full((1,), 2.0, dtype=torch.float64)
    paper = rank_loss("paper", zero, two, zero, two).item()
    hpsv3 = rank_loss("hpsv3", zero, two, zero, two).item()
    assert math.isclose(paper, math.log(2), rel_tol=1e-9)  # P = 1/2 by symmetry, whatever the spread
    assert math.isclose(hpsv3, _trapezoid_expected_log_loss(0.0, math.sqrt(8.0)), rel_tol=1e-9)
    assert abs(hpsv3 - 1.3354) < 1e-4 and hpsv3 - paper > 0.64  # the "1.337 vs 0.693" (1.337: MC noise)
    # the other convention (spread 2 in total, sigma = sqrt 2 per side) gives 1.068, not the number
    root2 = torch.full((1,), math.sqrt(2.0), dtype=torch.float64)
    assert abs(rank_loss("hpsv3", zero, root2, zero, root2).item() - 1.0677) < 1e-4
    # Jensen: E[-log sigmoid] >= -log E[sigmoid] elementwise
    gap = expected_log_loss(MU_W, SIGMA_W, MU_L, SIGMA_L) + log_prob_preferred(MU_W, SIGMA_W, MU_L, SIGMA_L)
    assert (gap >= -1e-6).all()


def test_hpsv3_gradient_always_pushes_sigma_down_the_papers_does_not():
    for kind, sign_at_zero_margin in (("hpsv3", 1.0), ("paper", 0.0)):
        sig = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
        zeros = torch.zeros(4, dtype=torch.float64)
        rank_loss(kind, zeros, sig, zeros, sig).backward()
        if sign_at_zero_margin > 0:
            assert (sig.grad > 0).all()  # the loss grows with sigma: gradient descent shrinks it
        else:
            torch.testing.assert_close(sig.grad, torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)
    # a wrongly ranked pair: the paper's loss falls as sigma grows (uncertainty forgives), HPSv3's still rises
    mu_w, mu_l = torch.full((2,), -1.0, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    sig = torch.tensor([1.0, 4.0], dtype=torch.float64, requires_grad=True)
    rank_loss("paper", mu_w, sig, mu_l, sig).backward()
    assert (sig.grad < 0).all()
    sig.grad = None
    rank_loss("hpsv3", mu_w, sig, mu_l, sig).backward()
    assert (sig.grad > 0).all()


def test_hpsv3_gradient_matches_finite_differences_in_both_branches():
    mu_w = torch.tensor([0.4, 2.5], dtype=torch.float64, requires_grad=True)
    sigma_w = torch.tensor([0.6, 3.5], dtype=torch.float64, requires_grad=True)
    mu_l = torch.tensor([-0.3, 1.0], dtype=torch.float64, requires_grad=True)
    sigma_l = torch.tensor([0.8, 2.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c, d: expected_log_loss(a, b, c, d), (mu_w, sigma_w, mu_l, sigma_l))


def test_rank_loss_names_and_empty_batches():
    empty = torch.zeros(0, requires_grad=True)
    for kind in RANK_LOSSES:
        out = rank_loss(kind, empty, empty + 1, empty, empty + 1)
        assert out.item() == 0.0 and out.requires_grad
    with pytest.raises(ValueError, match="rank_loss must be one of"):
        rank_loss("mc", torch.zeros(1), torch.ones(1), torch.zeros(1), torch.ones(1))


# --- jrm.lm_reduction ---


def test_lm_reductions_by_hand():
    # two sequences: 3 target tokens in row 0, 1 in row 1; vocabulary of 2 with hand-chosen logits
    ids = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]])
    mask = torch.tensor([[False, True, True, True], [False, False, True, False]])
    logits = torch.zeros(2, 4, 2)
    logits[0, 0] = torch.tensor([0.0, math.log(3.0)])  # predicts ids[0,1]=1 with p = 3/4
    logits[0, 1] = torch.tensor([0.0, 0.0])  # predicts ids[0,2]=0 with p = 1/2
    logits[0, 2] = torch.tensor([math.log(3.0), 0.0])  # predicts ids[0,3]=1 with p = 1/4
    logits[1, 1] = torch.tensor([math.log(9.0), 0.0])  # predicts ids[1,2]=0 with p = 9/10
    row0 = [-math.log(3 / 4), -math.log(1 / 2), -math.log(1 / 4)]
    row1 = [-math.log(9 / 10)]
    token_mean = (sum(row0) + sum(row1)) / 4
    sequence_sum = (sum(row0) + sum(row1)) / 2
    assert math.isclose(rationale_lm_loss(logits, ids, mask).item(), token_mean, rel_tol=1e-6)
    assert math.isclose(rationale_lm_loss(logits, ids, mask, "token_mean").item(), token_mean, rel_tol=1e-6)
    assert math.isclose(rationale_lm_loss(logits, ids, mask, "sequence_sum").item(), sequence_sum, rel_tol=1e-6)
    assert lm_target_sequences(mask).tolist() == [0, 0, 0, 1]
    # a sequence without targets does not count in the sequence mean
    mask3 = torch.cat([mask, torch.zeros(1, 4, dtype=torch.bool)])
    got = rationale_lm_loss(torch.cat([logits, torch.zeros(1, 4, 2)]), torch.cat([ids, ids[:1]]), mask3, "sequence_sum")
    assert math.isclose(got.item(), sequence_sum, rel_tol=1e-6)
    empty = rationale_lm_loss(logits.requires_grad_(), ids, torch.zeros_like(mask), "sequence_sum")
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="lm_reduction must be one of"):
        reduce_token_nll(torch.ones(1), torch.zeros(1, dtype=torch.long), "sum")
