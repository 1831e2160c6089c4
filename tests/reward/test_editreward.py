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


# --- positions as the official model computes them (Qwen2.5-VL family) ---

LONG_INSTRUCTIONS = ["make it blue", "turn the whole background a deep yellow and leave the square untouched"]


def _official_reward_hidden(model, head_index, sources, edits, instructions, *, positions=None):
    """The official forward, written from its definition: embed the tokens, put the vision tower's features into
    the image placeholders, run the language model on those embeddings with the attention mask only. ``positions``
    None: what the official call leaves to the backbone; otherwise the (3, B, L) positions given.
    Returns (B, H) the last hidden state at ``<|Reward|>``."""
    from reward.editreward import _SUFFIX, EDITREWARD_PROMPTS
    from reward.qwen_vl_inputs import build_vl_batch, source_edit_sample

    samples = [
        source_edit_sample(s, e, EDITREWARD_PROMPTS[head_index].format(text_prompt=t) + _SUFFIX)
        for s, e, t in zip(sources, edits, instructions, strict=True)
    ]
    batch = build_vl_batch(model.tokenizer, model.image_processor, samples, padding_side="right")
    core = model.backbone.model
    embeds = core.get_input_embeddings()(batch.input_ids)
    features = torch.cat(list(core.get_image_features(batch.pixel_values, batch.image_grid_thw).pooler_output))
    is_image = batch.input_ids == model.backbone.config.image_token_id
    assert int(is_image.sum()) == features.shape[0]
    embeds = embeds.clone()
    embeds[is_image] = features.to(embeds.dtype)
    if positions is None:
        core.rope_deltas = None  # a fresh model, as the official scorer has
        hidden = core(inputs_embeds=embeds, attention_mask=batch.attention_mask, use_cache=False).last_hidden_state
    else:
        hidden = core.language_model(
            inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=positions, use_cache=False
        ).last_hidden_state
    rows = torch.arange(len(samples))
    return hidden[rows, (batch.input_ids == model.reward_token_id).int().argmax(dim=1)], batch


def _one_d_positions(attention_mask):
    """Plain 1-D positions by hand: a running index over each row's real tokens, the same on all 3 axes."""
    rows = []
    for mask_row in attention_mask.tolist():
        index, row = 0, []
        for m in mask_row:
            row.append(index if m else 0)
            index += int(m)
        rows.append(row)
    return torch.tensor(rows)[None].expand(3, -1, -1)


@torch.no_grad()
def test_qwen2_5_vl_scores_with_the_official_plain_positions():
    model = EditRewardModel.build_tiny(seed=3, backbone="qwen2_5_vl", pixels=128 * 128)  # 24 image tokens each
    model.eval()
    for head in (0, 1):
        h_default, batch = _official_reward_hidden(model, head, SOURCES, EDITS, LONG_INSTRUCTIONS)
        assert batch.attention_mask[0].sum() < batch.attention_mask[1].sum()  # the batch really is padded
        h_explicit, _ = _official_reward_hidden(model, head, SOURCES, EDITS, LONG_INSTRUCTIONS, positions=_one_d_positions(batch.attention_mask))
        torch.testing.assert_close(h_default, h_explicit, atol=1e-6, rtol=1e-6)  # the official call = 1-D positions
        official = model.rm_heads[f"head_{head}"](h_explicit.float())
        ours = model._head_scores(head, SOURCES, EDITS, LONG_INSTRUCTIONS)
        torch.testing.assert_close(ours, official, atol=1e-6, rtol=1e-6)
        # the backbone's own 3-D M-RoPE image positions (the previous behaviour) give measurably other scores
        # (a random tiny model's attention is nearly uniform, so the effect is small, but > 10x the tolerance above)
        mrope = model.backbone.model(**batch.model_inputs(), use_cache=False).last_hidden_state
        h_mrope = mrope[torch.arange(2), (batch.input_ids == model.reward_token_id).int().argmax(dim=1)]
        assert (h_mrope - h_explicit).abs().max() > 1e-4
        assert (model.rm_heads[f"head_{head}"](h_mrope.float()) - official).abs().max() > 1e-5
    scores = model.score(SOURCES, EDITS, LONG_INSTRUCTIONS)
    assert torch.isfinite(scores.mu).all()


@torch.no_grad()
def test_qwen3_vl_keeps_its_m_rope_positions():
    model = EditRewardModel.build_tiny(seed=3, backbone="qwen3_vl")
    model.eval()
    from reward.editreward import _SUFFIX, EDITREWARD_PROMPTS
    from reward.qwen_vl_inputs import build_vl_batch, source_edit_sample

    samples = [source_edit_sample(s, e, EDITREWARD_PROMPTS[0].format(text_prompt=t) + _SUFFIX) for s, e, t in zip(SOURCES, EDITS, LONG_INSTRUCTIONS)]
    batch = build_vl_batch(model.tokenizer, model.image_processor, samples, padding_side="right")
    hidden = model.backbone.model(**batch.model_inputs(), use_cache=False).last_hidden_state
    h = hidden[torch.arange(2), (batch.input_ids == model.reward_token_id).int().argmax(dim=1)]
    torch.testing.assert_close(model._head_scores(0, SOURCES, EDITS, LONG_INSTRUCTIONS), model.rm_heads["head_0"](h.float()))


def test_plain_positions_by_hand():
    from reward.editreward import plain_positions

    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    expected = torch.tensor([[0, 1, 2, 0, 0], [0, 1, 2, 3, 4], [0, 0, 0, 1, 2]])
    got = plain_positions(mask)
    assert got.shape == (3, 3, 5) and all(torch.equal(got[axis], expected) for axis in range(3))
    assert torch.equal(got, _one_d_positions(mask))


# --- model.pth, as the official save code writes it ---


def test_model_pth_with_and_without_the_model_key_and_only_weights(editreward, tmp_path):
    editreward.eval()
    expected = editreward.score(SOURCES, EDITS, INSTRUCTIONS).mu
    root = tmp_path / "er"
    editreward.save_pretrained(root)
    weights = load_file(root / "model.safetensors")
    (root / "model.safetensors").unlink()
    for payload in ({"model": weights, "epoch": 3}, weights):
        torch.save(payload, root / "model.pth")
        loaded = EditRewardModel.from_pretrained(root)
        torch.testing.assert_close(loaded.score(SOURCES, EDITS, INSTRUCTIONS).mu, expected)
    # safetensors is preferred when both are there
    save_file({**weights, "rm_heads.head_0.5.bias": weights["rm_heads.head_0.5.bias"] + 1.0}, root / "model.safetensors")
    assert not torch.allclose(EditRewardModel.from_pretrained(root).score(SOURCES, EDITS, INSTRUCTIONS).mu, expected)
    (root / "model.safetensors").unlink()
    # an arbitrary pickled object is refused by weights_only=True (never executed)
    torch.save({"model": weights, "hook": _NotAWeight()}, root / "model.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        EditRewardModel.from_pretrained(root)
    torch.save({"model": {"x": 1.0}}, root / "model.pth")
    with pytest.raises(ValueError, match="not named tensors"):
        EditRewardModel.from_pretrained(root)
    (root / "model.pth").unlink()
    with pytest.raises(FileNotFoundError, match="model.pth"):
        EditRewardModel.from_pretrained(root)


class _NotAWeight:
    """A picklable object that is not a tensor: ``weights_only`` loading must refuse it."""
