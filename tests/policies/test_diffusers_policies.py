"""FLUX.1 Kontext and Qwen-Image-Edit policies on tiny random diffusers pipelines: the SD3 mapping of the one SDE
step, on-policy re-scoring, LoRA, guidance, config selection."""

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from editrl.config import ConfigError, load_config
from policies.base import AdapterState, RLPolicy
from policies.diffusers_tiny import FLUX_SCHEDULER_CONFIG, QWEN_SCHEDULER_CONFIG
from policies.flux_kontext import FluxKontextPolicy
from policies.policy_config import PolicyConfig
from policies.qwen_image_edit import QwenImageEditPolicy, true_cfg
from policies.registry import build_policy
from policies.sd3 import sd3_sde_step, sd3_sigmas

TINY = ["tiny=true", "height=32", "width=32", "num_inference_steps=4", "lora_rank=4", "lora_alpha=8", "noise_level=0.8"]
FAMILIES = {
    "flux_kontext": [*TINY, "kind=flux_kontext", "text_guidance_scale=2.5", "flux_kontext.max_sequence_length=16"],
    "qwen_image_edit": [*TINY, "kind=qwen_image_edit", "text_guidance_scale=4.0", "cfg_range=[0.0,0.6]"],
}


def _cfg(kind, *extra):
    return load_config(PolicyConfig, None, [*FAMILIES[kind], *extra])


def _sources():
    return [Image.new("RGB", (40, 32), (200, 30, 30)), Image.new("RGB", (32, 48), (20, 160, 90))]


INSTRUCTIONS = ["make it blue", "add a cat on the left"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    """(kind, policy, rollout of 2 samples) per family; the tests restore the adapter they change."""
    policy = build_policy(_cfg(request.param))
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    rollout = policy.sample_with_logprob(_sources(), INSTRUCTIONS, generator=generators)
    return request.param, policy, rollout


# ---------------------------------------------------------------------------------------- SD3 mapping


def _euler_maruyama_sd3(v, sigma, sigma_next, x, c, eps, sigma_first_next=None):
    """Flow-GRPO's SD3 step written directly: x_σ' = μ + std·ε, with std_σ = c·sqrt(σ/(1 − σ)) (σ = 1: 1 − σ')."""
    dt = sigma_next - sigma  # < 0
    denominator = (1.0 - sigma_next) if sigma == 1.0 else (1.0 - sigma)
    std_sigma = c * math.sqrt(sigma / denominator)
    mean = x * (1 + std_sigma**2 / (2 * sigma) * dt) + v * (1 + std_sigma**2 * (1 - sigma) / (2 * sigma)) * dt
    std = std_sigma * math.sqrt(-dt)
    sample = mean + std * eps
    log_prob = (-((sample - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)).mean(dim=(1, 2, 3))
    return sample, mean, log_prob


@pytest.mark.parametrize(("sigma", "sigma_next"), [(1.0, 0.83), (0.7, 0.55), (0.2, 0.0625)])
def test_sd3_step_is_euler_maruyama(sigma, sigma_next):
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(3, 4, 6, 6, generator=g), torch.randn(3, 4, 6, 6, generator=g)
    eps = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(7))
    sample, mean, log_prob = _euler_maruyama_sd3(v, sigma, sigma_next, x, 0.8, eps)
    drawn = sd3_sde_step(v, sigma, sigma_next, x, 0.8, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(drawn.prev_sample, sample, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(drawn.mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(drawn.log_prob, log_prob, atol=1e-4, rtol=1e-5)
    scored = sd3_sde_step(v, torch.full((3,), sigma), torch.full((3,), sigma_next), x, 0.8, prev_sample=sample)
    torch.testing.assert_close(scored.log_prob, log_prob, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("config", [FLUX_SCHEDULER_CONFIG, QWEN_SCHEDULER_CONFIG], ids=["flux", "qwen"])
def test_noise_free_step_is_the_family_scheduler_step(config):
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    sigmas = sd3_sigmas(scheduler, 6, 1024, torch.device("cpu"))
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and bool((sigmas[1:] < sigmas[:-1]).all())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ours = x.clone()
    for i, t in enumerate(scheduler.timesteps):
        v = torch.randn(2, 4, 8, 8, generator=g)
        x = scheduler.step(v, t, x, return_dict=False)[0]
        ours = sd3_sde_step(v, sigmas[i], sigmas[i + 1], ours, 0.0).prev_sample
        torch.testing.assert_close(ours, x, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------- the policies


def test_policy_interface_and_rollout(family):
    kind, policy, rollout = family
    assert isinstance(policy, RLPolicy)
    assert isinstance(policy, FluxKontextPolicy if kind == "flux_kontext" else QwenImageEditPolicy)
    assert rollout.latents.shape == (2, 5, 4, 8, 8) and rollout.log_probs.shape == (2, 4)
    assert rollout.timesteps[0] == 0.0 and rollout.timesteps[-1] == 1.0
    assert rollout.images.shape == (2, 3, 32, 32) and torch.isfinite(rollout.log_probs).all()
    assert rollout.text_guidance_scale == policy.sampling.text_guidance_scale
    with pytest.raises(ValueError, match="one reference image"):
        policy.sample_with_logprob([_sources()], INSTRUCTIONS[:1])


def test_first_update_ratio_is_one(family):
    _, policy, rollout = family
    steps = torch.arange(4).repeat(2, 1)
    with torch.no_grad():
        current = policy.logprob(rollout, steps)
        reference = policy.logprob(rollout, steps, use_adapter=False)
    ratio = torch.exp(current.log_prob - rollout.log_probs)
    assert (ratio - 1).abs().max() <= 1e-6
    torch.testing.assert_close(reference.log_prob, current.log_prob)  # LoRA B = 0 at init
    assert current.mean.shape == (2, 4, 4, 8, 8)
    torch.testing.assert_close(current.dt.sum(dim=1), torch.ones(2))


def test_lora_changes_outputs_gets_gradients_and_round_trips(family, tmp_path):
    kind, policy, rollout = family
    steps = torch.tensor([[0, 2], [1, 3]])
    start = policy.adapter_state()
    try:
        out = policy.logprob(rollout, steps)
        out.log_prob.sum().backward()
        grads = [p.grad for p in policy.trainable_parameters() if p.grad is not None]
        assert grads and any(bool(g.abs().sum() > 0) for g in grads)
        for p in policy.trainable_parameters():
            p.grad = None
        tensors = {k: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(3)) for k, v in
                   start.tensors.items()}
        policy.load_adapter_state(AdapterState(tensors=tensors, version=5))
        assert policy.adapter_version == 5
        with torch.no_grad():
            changed = policy.logprob(rollout, steps)
            reference = policy.logprob(rollout, steps, use_adapter=False)
        assert (changed.mean - out.mean.detach()).abs().max() > 1e-4
        torch.testing.assert_close(reference.mean, out.mean.detach())
        policy.save_lora(tmp_path / "lora")
        restored = build_policy(_cfg(kind, f"lora_checkpoint={tmp_path / 'lora'}"))
        for name, value in policy.adapter_state().tensors.items():
            torch.testing.assert_close(restored.adapter_state().tensors[name], value)
        with torch.no_grad():
            torch.testing.assert_close(restored.logprob(rollout, steps).mean, changed.mean)
    finally:
        policy.load_adapter_state(start)


def test_edit_is_deterministic_ode(family):
    _, policy, _ = family
    first = policy.edit(_sources(), INSTRUCTIONS, seed=3)
    again = policy.edit(_sources(), INSTRUCTIONS, seed=3)
    assert [im.size for im in first] == [(32, 32)] * 2
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again))


def test_guidance_as_each_family_defines_it(family):
    kind, policy, rollout = family
    x = rollout.latents[:, 1]
    sigma = 1.0 - rollout.timesteps[1].expand(2)
    conditions = rollout.conditions
    guided = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        low = policy.velocity(x, sigma, conditions, guided, 1.0)
        high = policy.velocity(x, sigma, conditions, guided, 4.0)
        off = policy.velocity(x, sigma, conditions, torch.zeros(2, dtype=torch.bool), 4.0)
    assert (high - low).abs().max() > 1e-5  # the distilled embedding, or true CFG
    if kind == "flux_kontext":
        assert conditions.negative_text_hidden_states is None  # no CFG branch: the guidance is an input
        torch.testing.assert_close(off, high)
    else:
        assert conditions.negative_text_hidden_states is not None
        torch.testing.assert_close(off, low)  # outside cfg_range: the conditional branch only


def test_true_cfg_keeps_the_conditional_norm():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    out = true_cfg(cond, uncond, 4.0)
    torch.testing.assert_close(out.norm(dim=-1), cond.norm(dim=-1))
    combined = uncond + 4.0 * (cond - uncond)
    torch.testing.assert_close(out / out.norm(dim=-1, keepdim=True), combined / combined.norm(dim=-1, keepdim=True))


# ---------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("flux_kontext.max_sequence_length=600", "flux_kontext.max_sequence_length"),
        ("flux_kontext.max_seq_len=16", "flux_kontext.max_seq_len"),
        ("qwen_image_edit.negative_prompt=''", "qwen_image_edit.negative_prompt"),
    ],
)
def test_family_sections_are_strict_and_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(PolicyConfig, None, [override])


def test_checkpoint_must_be_a_local_diffusers_folder(tmp_path):
    cfg = _cfg("flux_kontext", f"checkpoint={tmp_path}")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        build_policy(cfg)


def test_flux_kontext_loads_a_local_diffusers_folder_in_bf16(tmp_path):
    from policies.diffusers_tiny import build_tiny_flux_kontext

    build_tiny_flux_kontext(0).save_pretrained(tmp_path / "kontext")
    policy = build_policy(_cfg("flux_kontext", f"checkpoint={tmp_path / 'kontext'}", "dtype=bfloat16"))
    assert policy.dtype == torch.bfloat16 and policy.pipe.text_encoder_2.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in policy.trainable_parameters())  # the LoRA stays fp32
    rollout = policy.sample_with_logprob(_sources()[:1], INSTRUCTIONS[:1], generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(rollout.log_probs).all() and rollout.latents.dtype == torch.float32
    with torch.no_grad():
        again = policy.logprob(rollout, torch.arange(4)[None])
    torch.testing.assert_close(again.log_prob, rollout.log_probs)  # same rows, same layout: same bf16 numbers



def test_ode_matches_the_family_diffusers_pipeline(family, monkeypatch):
    """With noise level 0 the policy's trajectory is the family pipeline's own sampling (its prompt encoding,
    guidance, schedule and Euler steps) from the same start noise."""
    from dataclasses import replace

    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as qwen_edit

    kind, policy, _ = family
    settings = replace(policy.sampling, noise_level=0.0, cfg_range=(0.0, 1.0))
    source = _sources()[0].resize((32, 32))
    ours = policy._sample([source], INSTRUCTIONS[:1], settings, torch.Generator().manual_seed(0), False)
    common = dict(image=source, prompt=INSTRUCTIONS[0], height=32, width=32, num_inference_steps=4,
                  latents=policy.pack(ours.latents[:, 0]), output_type="latent")
    if kind == "flux_kontext":
        theirs = policy.pipe(**common, guidance_scale=settings.text_guidance_scale, max_area=32 * 32,
                             max_sequence_length=policy.max_sequence_length, _auto_resize=False).images
    else:
        # the pipeline sizes its reference to ~1 MP; the policy uses the output size: ask for 32x32 here
        original = qwen_edit.calculate_dimensions
        monkeypatch.setattr(qwen_edit, "calculate_dimensions", lambda area, ratio: original(32 * 32, ratio))
        theirs = policy.pipe(**common, negative_prompt=policy.negative_prompt,
                             true_cfg_scale=settings.text_guidance_scale).images
    torch.testing.assert_close(policy.pack(ours.latents[:, -1]), theirs.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_gradient_checkpointing_gives_the_same_gradients(kind):
    grads = []
    for checkpointing in ("false", "true"):
        policy = build_policy(_cfg(kind, f"gradient_checkpointing={checkpointing}"))
        rollout = policy.sample_with_logprob(_sources(), INSTRUCTIONS, generator=torch.Generator().manual_seed(0))
        policy.logprob(rollout, torch.tensor([[0, 3], [1, 2]])).log_prob.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.trainable_parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["omnigen2", "flux_kontext", "qwen_image_edit"])
def test_lora_weights_gradients_and_adam_state_stay_fp32_on_a_bf16_base(kind):
    base = ["tiny=true", "height=32", "width=32", "num_inference_steps=3", "lora_rank=4", "lora_alpha=8",
            "dtype=bfloat16", "max_input_pixels=1024", "max_input_side_length=32"]
    policy = build_policy(load_config(PolicyConfig, None, base if kind == "omnigen2" else [*FAMILIES[kind], "dtype=bfloat16"]))
    frozen = [p for p in policy.transformer.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen if p.is_floating_point())
    params = policy.trainable_parameters()
    assert params and all(p.dtype == torch.float32 for p in params)
    rollout = policy.sample_with_logprob(_sources()[:1], INSTRUCTIONS[:1], generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(rollout.log_probs).all()
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    policy.logprob(rollout, torch.tensor([[0, 1]])).log_prob.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)
    optimizer.step()
    states = [optimizer.state[p] for p in params]
    assert all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32 for s in states)
    assert any(not torch.equal(b, p) for b, p in zip(before, params)) and all(p.dtype == torch.float32 for p in params)
    state = policy.adapter_state()
    policy.load_adapter_state(state)  # a weight sync keeps the fp32 adapter
    assert all(p.dtype == torch.float32 for p in policy.trainable_parameters())
