"""Flow-GRPO-Fast's SDE window: steps outside it are the ODE (no noise drawn, log-prob 0, not re-scorable), steps
inside it are the SDE and re-score to their sampled log-probs; for OmniGen2 and a diffusers family."""

import pytest
import torch
from PIL import Image

from editrl.config import load_config
from policies.omnigen2.tiny import TINY_SAMPLING, build_tiny_pipeline
from policies.policy_config import PolicyConfig
from policies.registry import build_policy
from policies.settings import SamplingSettings, in_sde_window

KONTEXT = ["tiny=true", "height=32", "width=32", "num_inference_steps=4", "lora_rank=4", "lora_alpha=8",
           "noise_level=0.8", "kind=flux_kontext", "text_guidance_scale=2.5", "flux_kontext.max_sequence_length=16"]


@pytest.fixture(scope="module", params=["omnigen2", "flux_kontext"])
def policy_and_settings(request):
    if request.param == "omnigen2":
        return build_tiny_pipeline(), TINY_SAMPLING.override(num_inference_steps=4)
    policy = build_policy(load_config(PolicyConfig, None, KONTEXT))
    return policy, policy.sampling


def _sample(policy, settings, window, seed=0):
    sources = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (20, 160, 90))]
    return policy.sample_with_logprob(
        sources, ["make it blue", "add a cat"], settings.override(sde_window=window),
        generator=[torch.Generator().manual_seed(seed + i) for i in range(2)],
    )


def test_steps_before_the_window_are_the_noise_free_ode(policy_and_settings):
    policy, settings = policy_and_settings
    late, later = _sample(policy, settings, (2, 4)), _sample(policy, settings, (3, 4))
    # the same seed: the same x_0, and the ODE steps 0-1 draw no noise, so both trajectories agree up to x_2 ...
    assert torch.equal(late.latents[:, :3], later.latents[:, :3])
    # ... and split at step 2, the SDE in one and the ODE in the other
    assert (late.latents[:, 3] - later.latents[:, 3]).abs().max() > 1e-3
    assert torch.equal(late.log_probs[:, :2], torch.zeros(2, 2)) and bool((late.log_probs[:, 2:] != 0).all())
    assert torch.equal(later.log_probs[:, :3], torch.zeros(2, 3)) and bool((later.log_probs[:, 3] != 0).all())
    assert late.sde_window == (2, 4) and later.sde_window == (3, 4)
    whole = _sample(policy, settings, None)
    assert whole.sde_window is None and bool((whole.log_probs != 0).all())


def test_window_steps_rescore_to_their_sampled_log_probs_and_ode_steps_are_refused(policy_and_settings):
    policy, settings = policy_and_settings
    rollout = _sample(policy, settings, (1, 3))
    with torch.no_grad():
        again = policy.logprob(rollout, torch.tensor([[1, 2], [1, 2]]))
    assert torch.allclose(again.log_prob, rollout.log_probs[:, 1:3], atol=1e-4)
    with pytest.raises(ValueError, match=r"SDE window \[1, 3\).*got \[0, 1\]"):
        policy.logprob(rollout, torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"SDE window \[1, 3\)"):
        policy.logprob(rollout, torch.tensor([[3], [3]]))


def test_a_window_outside_the_steps_is_refused_before_sampling(policy_and_settings):
    policy, settings = policy_and_settings
    for window in ((2, 5), (3, 3), (-1, 2)):
        with pytest.raises(ValueError, match="sde_window must satisfy 0 <= start < end <= T=4"):
            _sample(policy, settings, window)


def test_window_membership_and_per_step_noise_level():
    settings = SamplingSettings(noise_level=0.7, sde_window=(2, 4))
    assert [settings.step_noise_level(i) for i in range(5)] == [0.0, 0.0, 0.7, 0.7, 0.0]
    assert all(in_sde_window(i, None) for i in range(5))
    assert SamplingSettings().override(sde_window=[1, 2]).sde_window == (1, 2)
