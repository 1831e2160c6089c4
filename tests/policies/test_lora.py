"""LoRA on the tiny OmniGen2 transformer: identity at init, disabling, strict tensor I/O, peft-readable files."""

import pytest
import torch
from peft import PeftModel
from PIL import Image

from policies.base import AdapterState
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from policies.omnigen2.tiny import build_tiny_pipeline


def _inputs(pipeline, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    text = torch.randn(2, 5, 32, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    refs = [[torch.randn(4, 8, 6, generator=generator)], None]
    return x, torch.tensor([0.2, 0.7]), text, pipeline.freqs_cis, mask, refs


def _forward(model, inputs):
    x, t, text, freqs, mask, refs = inputs
    with torch.no_grad():
        return model(x, t, text, freqs, mask, ref_image_hidden_states=refs)


def _randomise_lora(pipeline, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in pipeline.trainable_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def test_lora_at_init_equals_base_and_disabling_restores_base():
    pipeline = build_tiny_pipeline()
    inputs = _inputs(pipeline)
    base = _forward(pipeline.transformer, inputs)
    pipeline.add_lora(rank=4, alpha=8)
    assert torch.equal(_forward(pipeline.transformer, inputs), base)
    trainable = {n for n, p in pipeline.transformer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert len(pipeline.trainable_parameters()) == len(trainable)
    assert any(n.endswith("to_out.0.lora_A.default.weight") for n in trainable)

    _randomise_lora(pipeline)
    adapted = _forward(pipeline.transformer, inputs)
    assert not torch.allclose(adapted, base, atol=1e-4)
    with pipeline.adapter_disabled():
        assert torch.equal(_forward(pipeline.transformer, inputs), base)
    assert torch.equal(_forward(pipeline.transformer, inputs), adapted)
    assert all(p.requires_grad for p in pipeline.trainable_parameters())


def test_adapter_tensors_round_trip_strictly(tmp_path):
    source = build_tiny_pipeline()
    source.add_lora(rank=4, alpha=8)
    _randomise_lora(source)
    inputs = _inputs(source)
    expected = _forward(source.transformer, inputs)

    target = build_tiny_pipeline()
    target.add_lora(rank=4, alpha=8)
    target.load_adapter_state(AdapterState(source.adapter_state_dict(), version=3))
    assert target.adapter_version == 3 and target.adapter_state().version == 3
    assert torch.equal(_forward(target.transformer, inputs), expected)

    tensors = source.adapter_state_dict()
    name = next(iter(tensors))
    with pytest.raises(KeyError, match="missing"):
        target.load_adapter_state_dict({k: v for k, v in tensors.items() if k != name})
    with pytest.raises(ValueError, match="shape"):
        target.load_adapter_state_dict({**tensors, name: torch.zeros(1)})
    with pytest.raises(ValueError, match="non-finite"):
        target.load_adapter_state_dict({**tensors, name: torch.full_like(tensors[name], float("nan"))})

    source.save_lora(tmp_path / "lora")
    assert {p.name for p in (tmp_path / "lora").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    fresh = build_tiny_pipeline()
    fresh.load_lora(tmp_path / "lora")
    loaded = fresh.adapter_state_dict()
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert torch.equal(_forward(fresh.transformer, inputs), expected)

    mismatched = build_tiny_pipeline()
    mismatched.add_lora(rank=2, alpha=8)
    with pytest.raises(ValueError, match="differ"):
        mismatched.load_lora(tmp_path / "lora")

    # peft itself reads the directory
    plain = build_tiny_pipeline().transformer
    via_peft = PeftModel.from_pretrained(plain, tmp_path / "lora")
    assert torch.allclose(_forward(via_peft, inputs), expected, atol=1e-6)


def test_save_pretrained_with_merged_lora_matches_the_adapted_model(tmp_path):
    pipeline = build_tiny_pipeline()
    pipeline.add_lora(rank=4, alpha=8)
    _randomise_lora(pipeline)
    inputs = _inputs(pipeline)
    expected = _forward(pipeline.transformer, inputs)
    pipeline.save_pretrained(tmp_path / "merged", merge_lora=True)
    merged = OmniGen2EditPipeline.from_pretrained(tmp_path / "merged")
    assert torch.allclose(_forward(merged.transformer, inputs), expected, atol=1e-5)
    pipeline.save_pretrained(tmp_path / "base")
    base = OmniGen2EditPipeline.from_pretrained(tmp_path / "base")
    with pipeline.adapter_disabled():
        assert torch.equal(_forward(base.transformer, inputs), _forward(pipeline.transformer, inputs))


def test_edit_inputs_are_checked_before_any_work():
    pipeline = build_tiny_pipeline()
    image = Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match="at most 5"):
        pipeline.edit([[image] * 6], ["too many"])


def test_reads_a_diffusers_layout_lora_file(tmp_path):
    from diffusers.loaders.lora_base import LoraBaseMixin, _pack_dict_with_prefix

    source = build_tiny_pipeline()
    source.add_lora(rank=4, alpha=8)
    _randomise_lora(source)
    tensors = source.adapter_state_dict()
    metadata = {"r": 4, "lora_alpha": 8, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
    LoraBaseMixin.write_lora_layers(
        state_dict=_pack_dict_with_prefix(tensors, "transformer"),
        save_directory=str(tmp_path),
        is_main_process=True,
        weight_name="pytorch_lora_weights.safetensors",
        save_function=None,
        safe_serialization=True,
        lora_adapter_metadata=_pack_dict_with_prefix(metadata, "transformer"),
    )
    fresh = build_tiny_pipeline()
    fresh.load_lora(tmp_path)
    assert (fresh.lora_config.r, fresh.lora_config.lora_alpha) == (4, 8.0)
    loaded = fresh.adapter_state_dict()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_lora_init_is_seeded_not_taken_from_the_global_rng():
    def adapter(global_seed, seed):
        pipeline = build_tiny_pipeline()
        torch.manual_seed(global_seed)  # a different process state must not change the adapter
        pipeline.add_lora(rank=4, alpha=8, seed=seed)
        return pipeline.adapter_state_dict()

    first, second, other = adapter(1, 0), adapter(2, 0), adapter(1, 5)
    a_keys = [k for k in first if "lora_A" in k]
    assert a_keys and first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in a_keys)
    for key in a_keys:  # peft's Kaiming-uniform range for A: |a| <= 1 / sqrt(fan_in)
        assert first[key].abs().max() <= first[key].shape[1] ** -0.5 and first[key].std() > 0
    assert all(torch.count_nonzero(first[k]) == 0 for k in first if "lora_B" in k)
