"""The ranking loss against Monte Carlo, closed forms and limits; the masked LM loss against a hand count."""

import math

import torch
import torch.nn.functional as F

from reward.jrm.loss import log_prob_preferred, rationale_lm_loss, uncertainty_rank_loss


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
