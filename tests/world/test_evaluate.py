import numpy as np
import pytest
import torch

from policies.omnigen2.tiny import TINY_SAMPLING, build_tiny_pipeline
from rl.hooks import EvalHook
from world.eval_hook import WorldOracleHook
from world.evaluate import evaluate_autoencoder, oracle_scores_of_policy
from world.pretrain import PretrainConfig, build_world_pipeline
from world.render import to_pil
from world.stats import paired_bootstrap, pairwise_agreement
from world.tasks import make_tasks


class _LookupPolicy:
    """Returns the exact target for sources it knows (by pixels) and the source itself otherwise."""

    def __init__(self, tasks):
        self.targets = {np.asarray(to_pil(t.source_image)).tobytes() + t.instruction.encode(): t.target_image for t in tasks}

    def edit(self, sources, instructions, *, seed=0):
        out = []
        for image, text in zip(sources, instructions):
            key = np.asarray(image).tobytes() + text.encode()
            out.append(to_pil(self.targets[key]) if key in self.targets else image)
        return out


def test_oracle_scores_of_policy_score_a_perfect_and_a_no_op_policy():
    tasks = make_tasks("heldout", 6)
    perfect = oracle_scores_of_policy(_LookupPolicy(tasks), tasks, batch_size=4)
    assert perfect.instruction_following.tolist() == [4] * 6 and perfect.visual_quality.tolist() == [4] * 6
    no_op = oracle_scores_of_policy(_LookupPolicy([]), tasks, batch_size=4)
    assert no_op.instruction_following.tolist() == [1] * 6
    assert no_op.task_ids == [t.task_id for t in tasks]


class _PixelAutoencoder:
    """"Latents" are the pixels themselves; ``noise`` adds Gaussian pixel noise of that std on the way back."""

    def __init__(self, noise: float = 0.0):
        self.noise = noise

    def encode_image(self, pixels):
        return pixels

    def decode_latents(self, latents):
        noise = self.noise * torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        return ((latents + 1.0) / 2.0 + noise).clamp(0.0, 1.0)


def test_evaluate_autoencoder_scores_round_tripped_targets():
    tasks = make_tasks("heldout", 5)
    lossless = evaluate_autoencoder(_PixelAutoencoder(), tasks, batch_size=2)
    assert lossless.instruction_following.tolist() == [4] * 5 and lossless.visual_quality.tolist() == [4] * 5
    assert lossless.task_ids == [t.task_id for t in tasks]
    assert np.array_equal(np.asarray(lossless.images[3]), np.asarray(to_pil(tasks[3].target_image)))
    # noise of std 0.3 puts most pixels > 0.15 from every palette colour: defect fraction > 0.15 is VQ 1
    noisy = evaluate_autoencoder(_PixelAutoencoder(noise=0.3), tasks, batch_size=2)
    assert noisy.visual_quality.tolist() == [1] * 5


def test_world_oracle_hook_is_an_eval_hook():
    tasks = make_tasks("heldout", 3)
    hook = WorldOracleHook(tasks, every_n_steps=2, num_images=2)
    assert isinstance(hook, EvalHook)
    result = hook(_LookupPolicy(tasks), step=1)
    assert result.metrics == {"world_oracle/if": 4.0, "world_oracle/vq": 4.0, "world_oracle/edit_success": 1.0}
    assert len(result.images) == 2 and result.n_items == 3


def test_paired_bootstrap_against_hand_computed_values():
    before = np.array([1.0, 2.0, 2.0, 3.0])
    constant = paired_bootstrap(before, before + 0.5, n_resamples=200)
    assert (constant.mean, constant.low, constant.high) == (0.5, 0.5, 0.5)
    diff = paired_bootstrap(before, np.array([2.0, 2.0, 4.0, 3.0]), n_resamples=4000, seed=1)
    assert diff.mean == 0.75  # differences 1, 0, 2, 0
    assert 0.0 <= diff.low < 0.75 < diff.high <= 2.0  # the bootstrap means lie between min and max difference


def test_pairwise_agreement_against_hand_counted_pairs():
    reference = np.array([1.0, 2.0, 2.0, 4.0])  # ordered pairs: (0,1) (0,2) (0,3) (1,3) (2,3); (1,2) tied
    assert pairwise_agreement(np.array([0.1, 0.2, 0.3, 0.4]), reference) == 1.0
    assert pairwise_agreement(np.array([0.4, 0.3, 0.2, 0.1]), reference) == 0.0
    # item 3 scored lowest: (0,3) (1,3) (2,3) disagree, (0,1) agrees, (0,2) tied in scores -> (1 + 0.5) / 5
    assert pairwise_agreement(np.array([0.5, 0.9, 0.5, 0.0]), reference) == pytest.approx(1.5 / 5)
    assert np.isnan(pairwise_agreement(np.array([1.0, 2.0]), np.array([3.0, 3.0])))
    # within groups only: group a = items 0, 1 (agree), group b = items 2, 3 (disagree); cross pairs ignored
    scores, groups = np.array([0.1, 0.2, 0.9, 0.0]), np.array(["a", "a", "b", "b"])
    assert pairwise_agreement(scores, reference, groups) == 0.5
    assert pairwise_agreement(scores, np.array([1.0, 2.0, 3.0, 3.0]), groups) == 1.0  # group b has no ordered pair
    with pytest.raises(ValueError, match="NaN"):
        pairwise_agreement(np.array([np.nan, 1.0]), np.array([1.0, 2.0]))


def test_world_pipeline_starts_from_the_official_init():
    world = build_world_pipeline(PretrainConfig(vae_channels=[8, 8]), 32, TINY_SAMPLING).transformer
    # adaLN-zero: the output head and every block's modulation start at zero (blocks are the identity)
    assert not torch.any(world.norm_out.linear_2.weight) and not torch.any(world.layers[0].norm1.linear.weight)
    untrained = build_tiny_pipeline(0, transformer_hidden_size=64).transformer
    assert torch.any(untrained.norm_out.linear_2.weight)
