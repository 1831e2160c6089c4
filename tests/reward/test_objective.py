"""compute_loss: which side wins each comparison, ties, the rank objective, the alpha mix, the LM reduction,
gradients, non-finite handling."""

import pytest
import torch

from reward.jrm.loss import RANK_LOSSES, rank_loss
from reward.jrm.model import JRM
from reward.jrm.objective import compute_loss
from tests.reward._jrm_fixtures import make_pair

RATIONALE = '{"visual_quality": {"reasoning": "clean edges"}}'


@pytest.fixture(scope="module")
def jrm():
    return JRM.build_tiny(seed=0)


def _pairs():
    return [
        # IF: preferred wins; VQ tie; overall decided.
        make_pair("r0", (4, 2), (3, 3), rationales={"preferred": RATIONALE}),
        # IF: the REJECTED side scores higher; VQ: rejected higher; overall tie.
        make_pair("r1", (2, 3), (1, 4), tie=True, colors=((10, 200, 10), (200, 200, 10))),
    ]


@pytest.mark.parametrize("kind", RANK_LOSSES)
def test_comparisons_ties_and_rank_value(jrm, kind):
    jrm.eval()
    pairs = _pairs()
    out = compute_loss(jrm, pairs, alpha=0.0, rank_objective=kind)
    assert out.compared == {"instruction_following": 2, "visual_quality": 1, "overall": 1}
    assert out.ties_skipped == {"instruction_following": 0, "visual_quality": 1, "overall": 1}
    # Rebuild the expected loss from the per-row scores: rows 0,1 = preferred of r0,r1; rows 2,3 = rejected.
    with torch.no_grad():
        s = jrm(jrm.build_inputs([p.source for p in pairs] * 2, [pairs[0].preferred, pairs[1].preferred, pairs[0].rejected, pairs[1].rejected], [p.pair.instruction for p in pairs] * 2)).scores
    mu, sig = s.mu, s.sigma
    w_mu = torch.stack([mu[0, 0], mu[3, 0], mu[3, 1], mu[0].mean()])  # IF r0 pref, IF r1 rej, VQ r1 rej, overall r0
    w_sig = torch.stack([sig[0, 0], sig[3, 0], sig[3, 1], sig[0].pow(2).sum().sqrt() / 2])
    l_mu = torch.stack([mu[2, 0], mu[1, 0], mu[1, 1], mu[2].mean()])
    l_sig = torch.stack([sig[2, 0], sig[1, 0], sig[1, 1], sig[2].pow(2).sum().sqrt() / 2])
    torch.testing.assert_close(out.rank, rank_loss(kind, w_mu, w_sig, l_mu, l_sig), atol=1e-5, rtol=1e-5)
    assert out.lm_tokens == 0 and out.lm.item() == 0.0


def test_alpha_mix_and_lm_only_where_rationales_exist(jrm):
    out = compute_loss(jrm, _pairs(), alpha=0.7)
    assert out.lm_sequences == 1
    expected_tokens = len(jrm.tokenizer(RATIONALE + "<|im_end|>", add_special_tokens=False)["input_ids"])
    assert out.lm_tokens == expected_tokens
    assert out.lm.item() > 0
    torch.testing.assert_close(out.total.detach(), 0.3 * out.rank + 0.7 * out.lm)


def test_the_model_config_chooses_the_objective_by_default(jrm):
    jrm.eval()
    assert jrm.config.rank_loss == "hpsv3" and jrm.config.lm_reduction == "token_mean"
    default = compute_loss(jrm, _pairs(), alpha=0.0)
    torch.testing.assert_close(default.rank, compute_loss(jrm, _pairs(), alpha=0.0, rank_objective="hpsv3").rank)
    paper = compute_loss(jrm, _pairs(), alpha=0.0, rank_objective="paper")
    assert paper.rank.item() < default.rank.item()  # Jensen: E[-log sigmoid] > -log E[sigmoid] (sigma > 0)


def test_lm_reduction_token_mean_vs_sequence_sum(jrm):
    """Two rationales of different lengths: Eq. 6's per-sequence sum, averaged over the two, vs the token mean."""
    jrm.eval()
    long = '{"instruction_following": {"reasoning": "the square is blue now, and nothing else changed"}}'
    pairs = [make_pair("r0", (4, 2), (3, 3), rationales={"preferred": RATIONALE, "rejected": long})]
    token_mean = compute_loss(jrm, pairs, alpha=1.0, lm_reduction="token_mean")
    sequence_sum = compute_loss(jrm, pairs, alpha=1.0, lm_reduction="sequence_sum")
    assert token_mean.lm_sequences == sequence_sum.lm_sequences == 2
    n = token_mean.lm_tokens
    n_short = len(jrm.tokenizer(RATIONALE + "<|im_end|>", add_special_tokens=False)["input_ids"])
    n_long = len(jrm.tokenizer(long + "<|im_end|>", add_special_tokens=False)["input_ids"])
    assert n == n_short + n_long and n_short != n_long
    # sum over all N tokens = token_mean * N = sequence_sum * 2 sequences
    torch.testing.assert_close(sequence_sum.lm, token_mean.lm * n / 2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sequence_sum.total.detach(), sequence_sum.lm)
    # and per sequence: the long side's sum is its own tokens' nll, computed here from the model's logits
    with torch.no_grad():
        batch = jrm.build_inputs([pairs[0].source] * 2, [pairs[0].preferred, pairs[0].rejected], [pairs[0].pair.instruction] * 2, rationales=[RATIONALE, long])
        out = jrm(batch, with_lm=True)
        nll = torch.nn.functional.cross_entropy(out.lm_logits, out.lm_targets, reduction="none")
    torch.testing.assert_close(sequence_sum.lm, (nll[:n_short].sum() + nll[n_short:].sum()) / 2, rtol=1e-5, atol=1e-5)


def _grads(model, alpha):
    model.zero_grad(set_to_none=True)
    compute_loss(model, _pairs(), alpha=alpha).total.backward()
    lm_head = model.backbone.lm_head.weight.grad
    head = [p.grad for p in model.head.parameters()]
    return lm_head, head


def test_alpha_zero_has_no_lm_gradient_and_alpha_one_no_ranking_gradient(jrm):
    jrm.train()
    lm_head, head = _grads(jrm, 0.0)
    assert lm_head is None or lm_head.abs().sum() == 0
    assert any(g is not None and g.abs().sum() > 0 for g in head)
    lm_head, head = _grads(jrm, 1.0)
    assert lm_head.abs().sum() > 0
    assert all(g is None or g.abs().sum() == 0 for g in head)
    jrm.zero_grad(set_to_none=True)


def test_non_finite_scores_name_the_records():
    model = JRM.build_tiny(seed=5)
    with torch.no_grad():
        model.head.mlp[-1].bias.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match=r"r0.*r1"):
        compute_loss(model, _pairs(), alpha=0.5)
