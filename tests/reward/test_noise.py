"""The null-reward control: deterministic per input, blind to quality, on the 1-4 scale."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from editrl.config import ConfigError
from reward.noise import NoiseReward, noise_scores
from reward.registry import RewardModelConfig, build_reward_model


def _image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


def test_scores_are_the_documented_hash_mapped_onto_one_to_four():
    edit = _image(7)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(b"3\0make it red\0(8, 8)\0")
    digest.update(bytes([7]) * (8 * 8 * 3))
    words = [int.from_bytes(digest.digest()[i : i + 8], "little") for i in (0, 8)]
    expected = [1.0 + 3.0 * w / 2.0**64 for w in words]
    assert noise_scores(edit, "make it red", 3, 2) == pytest.approx(expected, abs=1e-12)


def test_the_same_input_scores_the_same_in_any_batch_and_the_source_is_ignored():
    reward = NoiseReward(seed=0)
    edits = [_image(v) for v in range(40)]
    alone = reward.score([_image(0)], edits[5:6], ["x"])
    batch = reward.score([_image(9)] * 40, edits, ["x"] * 40)
    torch.testing.assert_close(batch.mu[5:6], alone.mu)
    assert batch.mu.shape == (40, 2) and bool(((batch.mu >= 1) & (batch.mu <= 4)).all())
    # different edits score independently: 40 draws are not all on one side of the scale's middle
    assert 0 < int((batch.mu[:, 0] > 2.5).sum()) < 40
    torch.testing.assert_close(batch.reward, batch.mu.mean(dim=1))
    other_seed = NoiseReward(seed=1).score([_image(0)], edits[5:6], ["x"])
    assert not torch.equal(other_seed.mu, alone.mu)


def test_the_registry_builds_it_with_combine_and_rejects_a_bad_one():
    reward = build_reward_model(RewardModelConfig(kind="noise", combine="instruction_following", seed=2))
    assert isinstance(reward, NoiseReward)
    scores = reward.score([_image(1)] * 3, [_image(1), _image(2), _image(3)], ["a", "b", "c"])
    torch.testing.assert_close(scores.reward, scores.column("instruction_following"))
    with pytest.raises(ConfigError, match="combine"):
        build_reward_model(RewardModelConfig(kind="noise", combine="aesthetics"))
    with pytest.raises(ValueError, match="2 sources, 1 edits"):
        reward.score([_image(1)] * 2, [_image(1)], ["a", "b"])
