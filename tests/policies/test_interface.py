"""The RL policy interface, its registry and the sampling settings carrier, on the tiny OmniGen2."""

from dataclasses import replace

import pytest
import torch
from PIL import Image

from editrl.config import ConfigError, load_config
from policies.base import AdapterState, EditingPolicy, RLPolicy
from policies.omnigen2.config import OmniGen2PolicyConfig
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from policies.omnigen2.tiny import TINY_SAMPLING, build_tiny_pipeline
from policies.registry import PolicyRegistry, build_policy, default_policy_registry
from policies.settings import SamplingSettings

TINY_OVERRIDES = ["tiny=true", "height=32", "width=32", "num_inference_steps=3", "lora_rank=4", "lora_alpha=8"]


def test_registry_has_the_built_in_kinds_and_unknown_kind_names_policy_kind():
    registry = default_policy_registry()
    assert set(registry.names) == {"omnigen2", "flux_kontext", "qwen_image_edit"}
    assert isinstance(registry, PolicyRegistry)
    with pytest.raises(ConfigError) as err:
        registry.require("nope")
    assert str(err.value).startswith("policy.kind:") and "'nope'" in str(err.value) and "'omnigen2'" in str(err.value)
    cfg = load_config(OmniGen2PolicyConfig, None, [*TINY_OVERRIDES, "kind=nope"])
    with pytest.raises(ConfigError, match=r"^policy.kind: unknown policy kind 'nope'"):
        build_policy(cfg)
    with pytest.raises(ConfigError, match="kind: must name a policy kind"):
        load_config(OmniGen2PolicyConfig, None, ["kind=''"])


def test_extended_registry_builds_a_new_kind_and_leaves_the_default_alone():
    built = []

    def build_mine(cfg):
        built.append(cfg.kind)
        return default_policy_registry().get("omnigen2")(cfg)

    registry = default_policy_registry().extended(mine=build_mine)
    cfg = load_config(OmniGen2PolicyConfig, None, [*TINY_OVERRIDES, "kind=mine"])
    policy = build_policy(cfg, registry)
    assert built == ["mine"] and isinstance(policy, RLPolicy)
    assert "mine" not in default_policy_registry()


def test_omnigen2_satisfies_the_interface_and_owns_the_adapter_version():
    cfg = load_config(OmniGen2PolicyConfig, None, TINY_OVERRIDES)
    policy = build_policy(cfg)
    assert isinstance(policy, OmniGen2EditPipeline)
    assert isinstance(policy, RLPolicy) and isinstance(policy, EditingPolicy)
    assert policy.sampling == cfg.sampling_settings()  # config -> sampling_settings() -> pipeline defaults
    assert policy.device == torch.device("cpu")

    state = policy.adapter_state()
    assert state.version == 0 and len(state.tensors) == len(policy.trainable_parameters()) > 0
    other = build_policy(replace(cfg, tiny_seed=1))
    with torch.no_grad():
        for p in other.trainable_parameters():
            p.add_(0.5)
    other.load_adapter_state(AdapterState(tensors=state.tensors, version=7))
    assert other.adapter_version == 7 and other.adapter_state().version == 7
    assert all(torch.equal(state.tensors[k], v) for k, v in other.adapter_state().tensors.items())
    other.load_adapter_state_dict(state.tensors)  # tensors only: the version is left alone
    assert other.adapter_version == 7
    rollout = other.sample_with_logprob([Image.new("RGB", (32, 32))], ["x"], generator=torch.Generator().manual_seed(0))
    assert rollout.adapter_version == 7


def test_sampling_settings_override_and_explicit_settings_equal_defaults():
    settings = SamplingSettings()
    assert settings.override() == settings
    changed = settings.override(text_guidance_scale=5.0, cfg_range=[0, 1], height=None)
    assert changed == replace(settings, text_guidance_scale=5.0, cfg_range=(0.0, 1.0))
    assert isinstance(changed.cfg_range[0], float)
    with pytest.raises(TypeError, match="unexpected keyword argument 'steps'"):
        settings.override(steps=3)

    pipeline = build_tiny_pipeline()
    red = Image.new("RGB", (32, 32), (200, 30, 30))
    by_default = pipeline.sample_with_logprob([red], ["x"], generator=torch.Generator().manual_seed(2))
    explicit = pipeline.sample_with_logprob([red], ["x"], TINY_SAMPLING, generator=torch.Generator().manual_seed(2))
    assert torch.equal(by_default.latents, explicit.latents) and torch.equal(by_default.log_probs, explicit.log_probs)
    fewer = pipeline.sample_with_logprob(
        [red], ["x"], TINY_SAMPLING.override(num_inference_steps=2, height=16, width=16),
        generator=torch.Generator().manual_seed(2),
    )
    assert fewer.latents.shape == (1, 3, 4, 4, 4)
    with pytest.raises(ValueError, match="noise_level > 0"):
        pipeline.sample_with_logprob([red], ["x"], TINY_SAMPLING.override(noise_level=0.0))
    # edit is the ODE whatever the settings' noise level
    noisy = pipeline.edit([red], ["x"], seed=1, settings=TINY_SAMPLING.override(noise_level=0.5))
    assert noisy[0].tobytes() == pipeline.edit([red], ["x"], seed=1)[0].tobytes()
