"""JRM on a tiny random Qwen3-VL: the <|reward|> read-out, the LM mask, persistence, dtypes, failure modes."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from editrl.config import ConfigError
from reward.base import RewardModel
from reward.jrm.model import JRM, REWARD_TOKEN, tiny_jrm_config
from tests.reward._jrm_fixtures import solid

SOURCES = [solid((255, 0, 0)), solid((0, 255, 0), (48, 64)), solid((0, 0, 0))]
EDITS = [solid((0, 0, 255)), solid((255, 255, 0)), solid((9, 9, 9), (64, 64))]
INSTRUCTIONS = ["make it blue", "make it yellow and add a much longer description here", "darken"]
RATIONALE = '{"visual_quality": {"reasoning": "clean edges"}}'


@pytest.fixture(scope="module")
def jrm():
    return JRM.build_tiny(seed=0)


def test_is_a_reward_model_with_added_tokens(jrm):
    assert isinstance(jrm, RewardModel)
    vocab = jrm.tokenizer.get_vocab()
    for token in (REWARD_TOKEN, "<|global|>", "<|bbox_0|>", f"<|bbox_{jrm.config.max_region_index}|>"):
        assert token in vocab
    assert jrm.backbone.get_input_embeddings().weight.shape[0] >= len(jrm.tokenizer)


def test_score_stops_at_reward_and_ignores_appended_rationale(jrm):
    scoring = jrm.scoring_inputs(SOURCES, EDITS, INSTRUCTIONS)
    assert (scoring.input_ids[:, -1] == jrm.reward_token_id).all()  # nothing after <|reward|> is run
    scores = jrm.score(SOURCES, EDITS, INSTRUCTIONS)
    jrm.eval()
    with torch.no_grad():
        training_like = jrm(jrm.build_inputs(SOURCES, EDITS, INSTRUCTIONS, [RATIONALE, "x" * 40, RATIONALE]))
    torch.testing.assert_close(training_like.scores.mu, scores.mu, atol=1e-5, rtol=1e-5)
    assert scores.mu.shape == (3, 2) and scores.mu.dtype == torch.float32
    torch.testing.assert_close(scores.reward, scores.mu.mean(dim=1))  # default combine = mean
    assert (scores.sigma > 0).all()


def test_lm_mask_covers_exactly_the_rationale(jrm):
    batch = jrm.build_inputs(SOURCES[:2], EDITS[:2], INSTRUCTIONS[:2], [RATIONALE, None])
    expected = jrm.tokenizer(RATIONALE + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert batch.input_ids[0][batch.continuation_mask[0]].tolist() == expected
    assert not batch.continuation_mask[1].any()
    first = int(batch.continuation_mask[0].nonzero()[0])
    assert batch.input_ids[0, first - 1] == jrm.reward_token_id  # the rationale starts right after <|reward|>
    out = jrm(batch, with_lm=True)
    assert out.lm_targets.tolist() == expected and out.lm_logits.shape == (len(expected), len(jrm.tokenizer))


def test_save_load_round_trip_is_exact_and_strict(jrm, tmp_path):
    jrm.save_pretrained(tmp_path / "ckpt")
    loaded = JRM.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.score(SOURCES, EDITS, INSTRUCTIONS).mu, jrm.score(SOURCES, EDITS, INSTRUCTIONS).mu)
    assert loaded.config == jrm.config and len(loaded.tokenizer) == len(jrm.tokenizer)

    head = load_file(tmp_path / "ckpt" / "reward_head.safetensors")
    save_file({**head, "extra.weight": torch.zeros(1)}, tmp_path / "ckpt" / "reward_head.safetensors")
    with pytest.raises(RuntimeError, match="extra.weight"):
        JRM.from_pretrained(tmp_path / "ckpt")
    save_file(head, tmp_path / "ckpt" / "reward_head.safetensors")

    weights = load_file(tmp_path / "ckpt" / "backbone" / "model.safetensors")
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "ckpt" / "backbone" / "model.safetensors")
    with pytest.raises(ValueError, match="does not match"):
        JRM.from_pretrained(tmp_path / "ckpt")
    save_file(weights, tmp_path / "ckpt" / "backbone" / "model.safetensors")

    cfg_path = tmp_path / "ckpt" / "jrm_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "mystery": 1}))
    with pytest.raises(ValueError, match="mystery"):
        JRM.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="local JRM checkpoint directory"):
        hub_id = "org/some-hub-id"
        JRM.from_pretrained(hub_id)


def test_reward_embedding_trains_and_checkpointing_matches():
    model = JRM.build_tiny(seed=1)
    model.train()
    batch = model.build_inputs(SOURCES[:2], EDITS[:2], INSTRUCTIONS[:2])
    model(batch).scores.mu.sum().backward()
    plain = model.backbone.get_input_embeddings().weight.grad.clone()
    assert plain[model.reward_token_id].abs().sum() > 0
    model.zero_grad()
    model.enable_gradient_checkpointing()
    model(batch).scores.mu.sum().backward()
    torch.testing.assert_close(model.backbone.get_input_embeddings().weight.grad, plain, atol=1e-6, rtol=1e-5)


def test_bf16_backbone_keeps_fp32_head_and_scores():
    model = JRM.build_tiny(seed=2)
    model.backbone.to(torch.bfloat16)
    scores = model.score(SOURCES[:2], EDITS[:2], INSTRUCTIONS[:2])
    assert scores.mu.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.head.parameters())
    assert torch.isfinite(scores.mu).all()


def test_head_runs_in_fp32_under_a_bf16_autocast():
    model = JRM.build_tiny(seed=0)
    model.backbone.to(torch.bfloat16)
    h = torch.randn(3, model.head.mlp[0].in_features).to(torch.bfloat16)
    reference = model.head(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = model.head(h)
        batch = model.build_inputs([solid((1, 2, 3))] * 2, [solid((200, 0, 0)), solid((0, 9, 9))], ["a", "b"])
        scores = model(batch).scores
    assert all(p.dtype == torch.float32 for p in model.head.parameters())
    assert inside.mu.dtype == torch.float32 and torch.equal(inside.mu, reference.mu)
    assert torch.equal(inside.log_sigma, reference.log_sigma)
    assert scores.mu.dtype == torch.float32
    inside.mu.sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.head.parameters())


def test_non_finite_score_raises_and_explain_reports_parse_errors():
    model = JRM.build_tiny(seed=3)
    explanations = model.explain(SOURCES[:1], EDITS[:1], INSTRUCTIONS[:1], max_new_tokens=4)
    assert len(explanations) == 1 and (explanations[0].rationales is None) == (explanations[0].error is not None)
    with torch.no_grad():
        model.head.mlp[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"batch items \[0, 1\]"):
        model.score(SOURCES[:2], EDITS[:2], INSTRUCTIONS[:2])
    with pytest.raises(ValueError, match="non-finite"):
        model.save_pretrained("/tmp/never-written-jrm")


def test_from_backbone_starts_from_a_local_qwen3_vl_dir_and_is_seeded(tmp_path):
    from reward.jrm.tiny import build_tiny_backbone

    backbone, parts = build_tiny_backbone(seed=4)
    backbone.save_pretrained(tmp_path / "qwen3vl")
    parts.tokenizer.save_pretrained(tmp_path / "qwen3vl")
    parts.image_processor.save_pretrained(tmp_path / "qwen3vl")
    cfg = JRM.build_tiny(seed=4).config
    first = JRM.from_backbone(tmp_path / "qwen3vl", cfg, seed=7)
    second = JRM.from_backbone(tmp_path / "qwen3vl", cfg, seed=7)
    torch.testing.assert_close(first.score(SOURCES, EDITS, INSTRUCTIONS).mu, second.score(SOURCES, EDITS, INSTRUCTIONS).mu)
    assert REWARD_TOKEN in first.tokenizer.get_vocab()


def test_explain_decodes_region_tags_and_parses_the_joint_json(monkeypatch):
    model = JRM.build_tiny(seed=6)
    rationale = (
        '{"instruction_following": {"edit_region": [{"id": 0, "label": "square", "bbox_2d": [10, 20, 300, 400]}], '
        '"reasoning": "<|bbox_0|> now blue. <|global|> good."}, "visual_quality": {"reasoning": "clean"}}'
    )
    answer = model.tokenizer(rationale + "<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"]

    def scripted_generate(input_ids, **kwargs):
        return torch.cat([input_ids, answer.expand(input_ids.shape[0], -1)], dim=1)

    monkeypatch.setattr(model.backbone, "generate", scripted_generate)
    (explanation,) = model.explain(SOURCES[:1], EDITS[:1], INSTRUCTIONS[:1])
    assert explanation.error is None and explanation.text == rationale
    assert explanation.rationales["IF"].regions[0].bbox_2d == (10, 20, 300, 400)
    assert explanation.rationales["VQ"].reasoning == "clean"
    assert set(explanation.mu) == {"instruction_following", "visual_quality"}


def test_compact_prompt_is_stored_with_the_checkpoint_and_used_for_scoring(tmp_path):
    from editrl.config import ConfigError
    from reward.jrm.model import JRMConfig, tiny_jrm_config
    from reward.jrm.prompts import COMPACT_EVALUATION_PROMPT

    paper = JRM.build_tiny(seed=0, config=tiny_jrm_config("paper"))
    compact = JRM.build_tiny(seed=0)
    assert compact.config.prompt == "compact"  # the tiny default
    ids_paper = paper.scoring_inputs(SOURCES[:1], EDITS[:1], INSTRUCTIONS[:1]).input_ids
    ids_compact = compact.scoring_inputs(SOURCES[:1], EDITS[:1], INSTRUCTIONS[:1]).input_ids
    assert ids_paper.shape[0] == 2 and ids_compact.shape[0] == 1  # one row per dimension vs one joint row
    text = COMPACT_EVALUATION_PROMPT.format(instruction=INSTRUCTIONS[0])
    prompt_tokens = compact.tokenizer(text, add_special_tokens=False)["input_ids"]
    row = ids_compact[0].tolist()
    assert len(prompt_tokens) < 40 < ids_paper.shape[1] - len(row)  # same images, far shorter text
    assert any(row[i : i + len(prompt_tokens)] == prompt_tokens for i in range(len(row)))
    compact.save_pretrained(tmp_path / "c")
    assert JRM.from_pretrained(tmp_path / "c").config.prompt == "compact"
    with pytest.raises(ConfigError, match="prompt"):
        JRMConfig(prompt="short").validate()
    with pytest.raises(ConfigError, match="paper prompts cover"):
        JRMConfig(prompt="paper", dimensions=["instruction_following", "aesthetics"]).validate()


def test_jrm_config_records_the_training_objective_and_reads_old_checkpoints_as_paper(tmp_path):
    from editrl.config import ConfigError
    from reward.jrm.model import JRMConfig

    path = tmp_path / "jrm_config.json"
    path.write_text(json.dumps({"alpha": 0.7, "prompt": "compact"}))  # written before rank_loss / lm_reduction existed
    old = JRMConfig.from_json(path)
    assert (old.rank_loss, old.lm_reduction) == ("paper", "token_mean")  # the only objective back then
    path.write_text(json.dumps({"alpha": 0.7, "prompt": "compact", "rank_loss": "hpsv3", "lm_reduction": "sequence_sum"}))
    new = JRMConfig.from_json(path)
    assert (new.rank_loss, new.lm_reduction) == ("hpsv3", "sequence_sum")
    path.write_text(json.dumps({"prompt": "compact", "rank_loss": "monte_carlo"}))
    with pytest.raises(ConfigError, match="rank_loss"):
        JRMConfig.from_json(path)


def test_a_backbone_start_takes_the_image_side_and_head_width_of_the_config(tmp_path):
    from editrl.config import ConfigError
    from reward.jrm.model_init import build_model
    from reward.jrm.tiny import build_tiny_backbone
    from reward.jrm.train_config import JRMModelInit

    backbone, parts = build_tiny_backbone(seed=4)
    for what in (backbone, parts.tokenizer, parts.image_processor):
        what.save_pretrained(tmp_path / "qwen3vl")
    model = build_model(JRMModelInit(backbone=str(tmp_path / "qwen3vl"), backbone_image_side=64,
                                     backbone_head_mlp_size=48), prompt="compact")
    assert (model.config.min_pixels, model.config.max_pixels, model.config.head_mlp_size) == (64 * 64, 64 * 64, 48)
    # a 64 px side is (64 / 32)^2 = 4 merged vision tokens per image
    inputs = model.image_processor(images=[SOURCES[0]], return_tensors="pt")
    assert int(inputs["image_grid_thw"].prod()) // 4 == 4
    default = build_model(JRMModelInit(backbone=str(tmp_path / "qwen3vl")), prompt="compact")
    assert default.config.head_mlp_size == 1024 and default.config.max_pixels > 64 * 64
    with pytest.raises(ConfigError, match="model.backbone_image_side applies to a start from model.backbone"):
        JRMModelInit(tiny=True, backbone_image_side=64).validate()
    with pytest.raises(ConfigError, match="multiple of 32"):
        JRMModelInit(backbone="x", backbone_image_side=40).validate()


def test_answer_start_reward_token_starts_as_the_answer_opening_token(tmp_path):
    base = tiny_jrm_config()
    mean = JRM.build_tiny(seed=0, config=base)
    copied = JRM.build_tiny(seed=0, config=dataclasses.replace(base, reward_token_init="answer_start"))
    opening = copied.answer_start_token_id()
    assert copied.tokenizer.decode([opening]) == "\n"  # Qwen's generation prompt ends "<|im_start|>assistant\n"
    rows, mean_rows = copied.backbone.get_input_embeddings().weight, mean.backbone.get_input_embeddings().weight
    reward = copied.reward_token_id
    assert torch.equal(rows[reward], rows[opening])
    assert not torch.equal(mean_rows[reward], mean_rows[opening])
    others = [i for i in range(rows.shape[0]) if i != reward]
    assert torch.equal(rows[others], mean_rows[others])  # only the reward row differs
    with torch.no_grad():
        rows[reward] += 1.0  # as if trained: a checkpoint keeps its row, it is not copied again
    copied.save_pretrained(tmp_path / "ckpt")
    loaded = JRM.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.reward_token_init == "answer_start"
    assert torch.equal(loaded.backbone.get_input_embeddings().weight[reward], rows[reward])
    with pytest.raises(ConfigError, match="reward_token_init"):
        dataclasses.replace(base, reward_token_init="zeros").validate()
