"""The policy pretraining's flow-matching stage: which modules it trains."""

import pytest
import torch

from policies.omnigen2.tiny import TINY_SAMPLING
from world.pretrain import PretrainConfig, build_world_pipeline, train_flow_matching
from world.tasks import make_tasks


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("train_text_encoder", [False, True])
def test_the_text_encoder_trains_only_when_asked(train_text_encoder):
    cfg = PretrainConfig(vae_channels=[8, 8], flow_steps=3, flow_batch_size=4, flow_train_text_encoder=train_text_encoder)
    pipeline = build_world_pipeline(cfg, 32, TINY_SAMPLING)
    mllm, transformer = _snapshot(pipeline.text_encoder.mllm), _snapshot(pipeline.transformer)
    losses = train_flow_matching(pipeline, make_tasks("pretrain", 8, 32), cfg, progress=False)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    changed = lambda before, module: any(not torch.equal(v, module.state_dict()[k]) for k, v in before.items())  # noqa: E731
    assert changed(transformer, pipeline.transformer)
    assert changed(mllm, pipeline.text_encoder.mllm) is train_text_encoder
    # trained or not, both are frozen again afterwards (the saved base is an inference model)
    assert not any(p.requires_grad for p in pipeline.text_encoder.mllm.parameters())
    assert not any(p.requires_grad for p in pipeline.transformer.parameters())


def test_the_changed_share_of_each_latent_pixel_is_the_pooled_edit_mask():
    from world.pretrain import _encode_tasks

    cfg = PretrainConfig(vae_channels=[8, 8])
    pipeline = build_world_pipeline(cfg, 32, TINY_SAMPLING)
    tasks = make_tasks("pretrain", 3, 32)
    data = _encode_tasks(pipeline, tasks)
    assert data.changed.shape == (3, 1, *data.targets.shape[-2:])
    for row, task in enumerate(tasks):
        mask = torch.from_numpy(task.changed_mask).float()
        # each latent pixel covers a 2x2 block of image pixels (one downsampling)
        assert torch.allclose(data.changed[row, 0], mask.reshape(16, 2, 16, 2).mean(dim=(1, 3)))
        assert 0 < float(data.changed[row].mean()) < 0.5  # an edit changes some, not most, of the image


def test_condition_dropout_splits_the_unit_interval_at_the_two_probabilities():
    from world.pretrain import condition_dropout

    draws = torch.tensor([0.0, 0.049, 0.05, 0.149, 0.15, 0.99])
    assert condition_dropout(draws, 0.1, 0.05) == ["text_image", "text_image", "text", "text", "", ""]
    assert condition_dropout(draws, 0.0, 0.0) == [""] * 6


def test_dropped_rows_get_the_unconditional_prompt_and_lose_the_reference_only_when_asked():
    from world.pretrain import _encode_tasks, _unconditional_states

    cfg = PretrainConfig(vae_channels=[8, 8])
    pipeline = build_world_pipeline(cfg, 32, TINY_SAMPLING)
    data = _encode_tasks(pipeline, make_tasks("pretrain", 3, 32))
    uncond = _unconditional_states(pipeline, "")
    conditions = data.conditions(torch.tensor([0, 1, 2]), dropped=["", "text", "text_image"], uncond=uncond)
    length = conditions.text_attention_mask.sum(dim=1).tolist()
    assert length == [data.text[0].shape[0], uncond.shape[0], uncond.shape[0]]
    assert torch.equal(conditions.text_hidden_states[0, : length[0]], data.text[0])
    assert torch.equal(conditions.text_hidden_states[1, : length[1]], uncond)
    assert torch.equal(conditions.ref_latents[0][0], data.refs[0]) and torch.equal(conditions.ref_latents[1][0], data.refs[1])
    assert conditions.ref_latents[2] is None


@pytest.mark.parametrize("text, both", [(-0.1, 0.0), (0.6, 0.4), (0.0, 1.0)])
def test_condition_dropout_probabilities_are_validated(text, both):
    from editrl.config import ConfigError

    with pytest.raises(ConfigError, match="text_dropout"):
        PretrainConfig(text_dropout=text, text_image_dropout=both).validate()


def test_world_vocabulary_gives_the_policy_a_tokenizer_that_keeps_instruction_words_whole(tmp_path):
    from policies.omnigen2.pipeline import OmniGen2EditPipeline

    plain = build_world_pipeline(PretrainConfig(vae_channels=[8, 8]), 32, TINY_SAMPLING)
    worded = build_world_pipeline(PretrainConfig(vae_channels=[8, 8], world_vocabulary=True), 32, TINY_SAMPLING)
    text = "change the colour of the cyan triangle to purple"
    assert len(worded.tokenizer.tokenize(text)) < len(plain.tokenizer.tokenize(text))
    assert worded.text_encoder.mllm.get_input_embeddings().num_embeddings >= len(worded.tokenizer)
    worded.save_pretrained(tmp_path / "policy")  # the tokenizer travels with the checkpoint
    loaded = OmniGen2EditPipeline.from_pretrained(tmp_path / "policy")
    assert loaded.tokenizer.tokenize(text) == worded.tokenizer.tokenize(text)
