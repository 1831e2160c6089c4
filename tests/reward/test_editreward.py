"""EditReward reproduction: published head layout and names, strict loading, two-pass scoring."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from reward.base import RewardModel
from reward.editreward import EDITREWARD_TOKEN, EditRewardModel, rename_legacy_keys
from tests.reward._jrm_fixtures import solid

SOURCES = [solid((255, 0, 0)), solid((0, 255, 0))]
EDITS = [solid((0, 0, 255)), solid((255, 255, 0), (48, 64))]
INSTRUCTIONS = ["make it blue", "make it yellow"]


@pytest.fixture(scope="module")
def editreward():
    return EditRewardModel.build_tiny(seed=0)


def test_published_head_layout_and_names(editreward):
    names = set(editreward.published_state_dict())
    for head in ("head_0", "head_1"):
        for layer, shape in (("0", (1024, 32)), ("3", (16, 1024)), ("5", (2, 16))):
            assert editreward.published_state_dict()[f"rm_heads.{head}.{layer}.weight"].shape == shape
            assert f"rm_heads.{head}.{layer}.bias" in names
    assert "lm_head.weight" in names and "model.language_model.embed_tokens.weight" in names
    assert any(k.startswith("model.visual.") for k in names)
    assert EDITREWARD_TOKEN in editreward.tokenizer.get_vocab()


def test_score_is_two_passes_averaged(editreward):
    assert isinstance(editreward, RewardModel)
    editreward.eval()
    scores = editreward.score(SOURCES, EDITS, INSTRUCTIONS)
    with torch.no_grad():
        head0 = editreward._head_scores(0, SOURCES, EDITS, INSTRUCTIONS)
        head1 = editreward._head_scores(1, SOURCES, EDITS, INSTRUCTIONS)
    torch.testing.assert_close(scores.mu, torch.stack([head0[:, 0], head1[:, 0]], dim=1))
    torch.testing.assert_close(scores.sigma, torch.stack([head0[:, 1], head1[:, 1]], dim=1).exp())
    torch.testing.assert_close(scores.reward, (head0[:, 0] + head1[:, 0]) / 2)
    assert not torch.allclose(head0, head1)  # the two prompts/heads really differ


def test_round_trip_strict_and_legacy_names(editreward, tmp_path):
    editreward.save_pretrained(tmp_path / "er")
    loaded = EditRewardModel.from_pretrained(tmp_path / "er")
    torch.testing.assert_close(loaded.score(SOURCES, EDITS, INSTRUCTIONS).mu, editreward.score(SOURCES, EDITS, INSTRUCTIONS).mu)

    weights = load_file(tmp_path / "er" / "model.safetensors")
    legacy = {("model." + k[len("model.language_model.") :] if k.startswith("model.language_model.") else k[len("model.") :] if k.startswith("model.visual.") else k): v for k, v in weights.items()}
    assert any(k.startswith("visual.") for k in legacy) and any(k.startswith("model.layers.") for k in legacy)
    assert rename_legacy_keys(legacy).keys() == weights.keys()

    save_file({k: v for k, v in weights.items() if k != "rm_heads.head_1.5.bias"}, tmp_path / "er" / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing \['rm_heads.head_1.5.bias'\]"):
        EditRewardModel.from_pretrained(tmp_path / "er")
    save_file({**weights, "rm_heads.head_2.0.weight": torch.zeros(1)}, tmp_path / "er" / "model.safetensors")
    with pytest.raises(ValueError, match="unexpected"):
        EditRewardModel.from_pretrained(tmp_path / "er")
