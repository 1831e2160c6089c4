"""Pairwise accuracy: the tie rule by hand, and counting over scored pairs (batch size does not matter)."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from reward.base import RewardScores
from reward.jrm.pairs import EditScores, LoadedPair, PreferencePair
from reward.metrics import PairwiseCounts, count_agreements, pair_case, pairwise_counts


def test_count_agreements_tie_rule():
    model = torch.tensor([0.5, -0.2, 0.0, 0.3, -1.0])
    human = torch.tensor([1.0, 2.0, 1.0, 0.0, -0.5])
    # pair 0 agrees; 1 disagrees; 2 is a model tie (wrong); 3 is a human tie (not counted); 4 agrees (both < 0)
    assert count_agreements(model, human) == (2, 4)
    assert count_agreements(torch.tensor([1e-30]), torch.tensor([1e-30])) == (1, 1)  # signs, not an underflowing product
    assert count_agreements(torch.tensor([float("nan")]), torch.tensor([1.0])) == (0, 1)
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        count_agreements(torch.zeros(3), torch.zeros(2))


def test_accuracies_leave_out_keys_with_nothing_counted():
    counts = PairwiseCounts.empty()
    counts.add("instruction_following", (1, 4))
    counts.add("overall", (2, 2))
    assert counts.accuracies() == {"instruction_following": 0.25, "overall": 1.0}
    assert counts.counted["instruction_following"] == 4 and counts.counted["overall"] == 2
    assert counts.counted["visual_quality"] == counts.counted["overall_conflict"] == 0


class _FirstPixel:
    """IF = red channel of the edit's first pixel / 255, no VQ column; reward = IF."""

    dimensions = ("instruction_following",)

    def score(self, sources, edits, instructions):
        red = torch.tensor([e.getpixel((0, 0))[0] / 255.0 for e in edits])
        return RewardScores(mu=red[:, None], sigma=torch.ones(len(edits), 1), reward=red, dimensions=self.dimensions)


def _pair(i, red_pref, red_rej, if_pref, if_rej, tie=False, vq_pref=3, vq_rej=3):
    pair = PreferencePair(
        record_id=f"p{i}", instruction="redden", source=Path("s.png"), preferred=Path("a.png"), rejected=Path("b.png"),
        scores_preferred=EditScores(if_pref, vq_pref, 7), scores_rejected=EditScores(if_rej, vq_rej, 5), tie=tie,
    )
    image = Image.new("RGB", (2, 2))
    return LoadedPair(
        pair, image, Image.new("RGB", (2, 2), (red_pref, 0, 0)), Image.new("RGB", (2, 2), (red_rej, 0, 0))
    )


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_pairwise_counts_by_hand(batch_size):
    pairs = [
        _pair(0, 200, 100, 4, 2),  # IF right, overall right
        _pair(1, 100, 200, 3, 1),  # IF wrong, overall wrong
        _pair(2, 150, 150, 4, 1),  # model tie: IF wrong, overall wrong
        _pair(3, 200, 100, 2, 2, tie=True),  # human IF tie and overall tie: not counted
    ]
    counts = pairwise_counts(_FirstPixel(), pairs, batch_size)
    assert {k: counts.correct[k] for k in ("instruction_following", "visual_quality", "overall")} == {
        "instruction_following": 1, "visual_quality": 0, "overall": 1}
    assert {k: counts.counted[k] for k in ("instruction_following", "visual_quality", "overall")} == {
        "instruction_following": 3, "visual_quality": 0, "overall": 3}
    assert counts.accuracies() == pytest.approx({"instruction_following": 1 / 3, "overall": 1 / 3, "overall_if_only": 1 / 3})


def test_pair_case_by_hand():
    assert pair_case(2, 0) == pair_case(-1, 0) == "if_only"
    assert pair_case(0, 1) == "vq_only"
    assert pair_case(1, 2) == pair_case(-1, -1) == "agree"
    assert pair_case(2, -1) == pair_case(-3, 1) == "conflict"
    assert pair_case(0, 0) is None


@pytest.mark.parametrize("batch_size", [1, 3])
def test_overall_accuracy_split_by_pair_case(batch_size):
    # the reward is the red channel: right on the IF-only pair and the agreeing pair, wrong on the rest
    pairs = [
        _pair(0, 200, 100, 4, 2),                         # if_only, right
        _pair(1, 100, 200, 3, 1),                         # if_only, wrong
        _pair(2, 100, 200, 3, 3, vq_pref=4, vq_rej=2),    # vq_only, wrong
        _pair(3, 200, 100, 4, 1, vq_pref=4, vq_rej=3),    # agree, right
        _pair(4, 100, 200, 4, 2, vq_pref=2, vq_rej=3),    # conflict (IF +2, VQ -1), wrong
        _pair(5, 200, 100, 1, 1, tie=True),               # overall tie: no case counted
    ]
    counts = pairwise_counts(_FirstPixel(), pairs, batch_size)
    split = {case: (counts.correct[f"overall_{case}"], counts.counted[f"overall_{case}"]) for case in ("if_only", "vq_only", "agree", "conflict")}
    assert split == {"if_only": (1, 2), "vq_only": (0, 1), "agree": (1, 1), "conflict": (0, 1)}
    assert counts.correct["overall"] == 2 and counts.counted["overall"] == 5
