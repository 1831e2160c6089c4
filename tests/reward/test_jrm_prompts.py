"""JRM's paper prompts (appendix C) and the paper teacher prompts (appendix A): the text, two rows per edit with
each dimension read from its own row, per-dimension rationales, and checkpoints refusing another prompt.

The expected texts are fixtures under ``tests/reward/fixtures/paper_prompts/`` (the appendices as printed in the
paper), so the tests need nothing outside this repository.
"""

import json
from pathlib import Path

import pytest
import torch

from editrl.config import ConfigError
from reward.jrm.model import JRM, REWARD_TOKEN, tiny_jrm_config
from reward.jrm.prompts import dimension_prompt, paper_prompt, row_prompts
from reward.jrm.rationale import format_joint_rationale, parse_joint_rationale
from reward.jrm.teachers.prompts import build_teacher_prompt, teacher_shows_source
from reward.qwen_vl_inputs import build_vl_batch, source_edit_sample
from reward.registry import RewardModelConfig, build_reward_model
from tests.reward._jrm_fixtures import solid

FIXTURES = Path(__file__).parent / "fixtures" / "paper_prompts"
SOURCES = [solid((255, 0, 0)), solid((0, 255, 0), (48, 64)), solid((10, 10, 10))]
EDITS = [solid((0, 0, 255)), solid((255, 255, 0)), solid((9, 9, 9), (64, 64))]
INSTRUCTIONS = ["make it blue", "make it yellow and add a longer description", "darken"]
JOINT = (
    '{"instruction_following": {"edit_region": [{"id": 0, "label": "square", "bbox_2d": [10, 20, 300, 400]}], '
    '"reasoning": "<|bbox_0|> now blue. <|global|> rest kept."}, "visual_quality": {"reasoning": "clean edges"}}'
)
IF_JSON = '{"edit_region": [{"id": 0, "label": "square", "bbox_2d": [10, 20, 300, 400]}], "reasoning": "<|bbox_0|> now blue. <|global|> rest kept."}'
VQ_JSON = '{"reasoning": "clean edges"}'


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def paper_jrm():
    return JRM.build_tiny(seed=0, config=tiny_jrm_config("paper"))


def test_paper_prompts_are_appendix_c_as_printed():
    rendered_if = paper_prompt("instruction_following", "Make the car red")
    rendered_vq = paper_prompt("visual_quality", "Make the car red")
    assert rendered_if == fixture("jrm_instruction_following").replace("{text_prompt}", "Make the car red")
    assert rendered_vq == fixture("jrm_visual_quality").replace("{text_prompt}", "Make the car red")
    assert rendered_if.endswith("Text instruction - Make the car red") and rendered_vq.endswith("Text instruction - Make the car red")
    assert dimension_prompt("IF", "x") == paper_prompt("instruction_following", "x")
    assert row_prompts("paper", ["instruction_following", "visual_quality"], "x") == [
        paper_prompt("instruction_following", "x"), paper_prompt("visual_quality", "x"),
    ]
    assert row_prompts("compact", ["instruction_following", "visual_quality"], "x") == [
        'Edit: "x"\nJudge instruction following and visual quality (1-4).'
    ]


def test_paper_teacher_prompts_are_appendix_a_and_the_vq_teacher_sees_only_the_edit():
    if_text = build_teacher_prompt("IF", "Change the cat to a dog", 3, template="paper")
    vq_text = build_teacher_prompt("VQ", "Change the cat to a dog", 2, template="paper")
    expected_if = fixture("teacher_instruction_following").replace("{instruction}", "Change the cat to a dog")
    assert if_text == expected_if.replace("{score}", "3")
    assert vq_text == fixture("teacher_visual_quality").replace("{score}", "2")
    assert "Change the cat" not in vq_text  # A.2 does not give the instruction ("Do NOT discuss the text instruction")
    assert teacher_shows_source("IF", "paper") and not teacher_shows_source("VQ", "paper")
    assert teacher_shows_source("VQ", "project")
    with pytest.raises(ValueError, match="teacher template"):
        build_teacher_prompt("IF", "x", 3, template="appendix")


def test_two_rows_per_edit_each_dimension_read_from_its_own_row(paper_jrm):
    batch = paper_jrm.scoring_inputs(SOURCES, EDITS, INSTRUCTIONS)
    assert batch.input_ids.shape[0] == 6 and (batch.input_ids[:, -1] == paper_jrm.reward_token_id).all()
    scores = paper_jrm.score(SOURCES, EDITS, INSTRUCTIONS)
    assert scores.mu.shape == (3, 2)
    paper_jrm.eval()
    for i in range(3):
        for d, dim in enumerate(paper_jrm.dimensions):
            # the row alone: its own prompt, nothing else in the batch
            alone = build_vl_batch(
                paper_jrm.tokenizer, paper_jrm.image_processor,
                [source_edit_sample(SOURCES[i], EDITS[i], paper_prompt(dim, INSTRUCTIONS[i]), suffix=REWARD_TOKEN)],
            )
            with torch.no_grad():
                hidden = paper_jrm.backbone.model(**alone.model_inputs(), use_cache=False).last_hidden_state
                head = paper_jrm.head(hidden[:, -1])
            torch.testing.assert_close(scores.mu[i, d], head.mu[0, d], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(scores.sigma[i, d], head.sigma[0, d], atol=1e-5, rtol=1e-5)
    out = paper_jrm(paper_jrm.scoring_inputs(SOURCES[:1], EDITS[:1], INSTRUCTIONS[:1]))
    assert out.h.shape == (1, 2 * paper_jrm.backbone.config.text_config.hidden_size)  # both rows' <|reward|> states


def test_each_row_is_trained_on_its_own_dimensions_rationale(paper_jrm):
    assert format_joint_rationale(parse_joint_rationale(JOINT)) == JOINT
    vq_only = '{"visual_quality": {"reasoning": "blurry"}}'
    batch = paper_jrm.build_inputs(SOURCES[:2], EDITS[:2], INSTRUCTIONS[:2], [JOINT, vq_only])
    targets = [batch.input_ids[r][batch.continuation_mask[r]].tolist() for r in range(4)]

    def tokens(text):
        return paper_jrm.tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]

    assert targets == [tokens(IF_JSON), tokens(VQ_JSON), [], tokens('{"reasoning": "blurry"}')]
    assert json.loads(IF_JSON) == json.loads(JOINT)["instruction_following"]
    scored = paper_jrm(paper_jrm.scoring_inputs(SOURCES[:2], EDITS[:2], INSTRUCTIONS[:2])).scores.mu
    trained = paper_jrm(batch, with_lm=True)
    torch.testing.assert_close(trained.scores.mu, scored, atol=1e-5, rtol=1e-5)  # rationales never reach h
    assert trained.lm_targets.numel() == sum(len(t) for t in targets)


def test_explain_runs_each_dimension_with_its_own_prompt(paper_jrm, monkeypatch):
    answers = [IF_JSON + "<|im_end|>", VQ_JSON + "<|im_end|>"]
    encoded = [paper_jrm.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    width = max(map(len, encoded))
    pad = paper_jrm.tokenizer.pad_token_id
    rows = torch.tensor([e + [pad] * (width - len(e)) for e in encoded])
    seen = {}

    def scripted_generate(input_ids, **kwargs):
        seen["rows"] = input_ids.shape[0]
        return torch.cat([input_ids, rows.repeat(input_ids.shape[0] // 2, 1)], dim=1)

    monkeypatch.setattr(paper_jrm.backbone, "generate", scripted_generate)
    (explanation,) = paper_jrm.explain(SOURCES[:1], EDITS[:1], INSTRUCTIONS[:1])
    assert seen["rows"] == 2 and explanation.error is None
    assert explanation.texts == {"IF": IF_JSON, "VQ": VQ_JSON}
    assert explanation.rationales["IF"].regions[0].bbox_2d == (10, 20, 300, 400)
    assert explanation.rationales["VQ"].reasoning == "clean edges"


def test_checkpoints_record_their_prompt_and_refuse_another(paper_jrm, tmp_path):
    paper_jrm.save_pretrained(tmp_path / "paper")
    assert json.loads((tmp_path / "paper" / "jrm_config.json").read_text())["prompt"] == "paper"
    assert JRM.from_pretrained(tmp_path / "paper", prompt="paper").config.prompt == "paper"
    with pytest.raises(ConfigError, match="trained with the 'paper' prompt and refuses to score with 'compact'"):
        JRM.from_pretrained(tmp_path / "paper", prompt="compact")
    with pytest.raises(ConfigError, match="refuses"):
        build_reward_model(RewardModelConfig(kind="jrm", checkpoint=str(tmp_path / "paper"), prompt="compact"))
    assert build_reward_model(RewardModelConfig(kind="jrm", checkpoint=str(tmp_path / "paper"))).config.prompt == "paper"

    config_path = tmp_path / "paper" / "jrm_config.json"
    raw = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**raw, "prompt": "full"}))
    with pytest.raises(ConfigError, match="trained with the evaluation prompt 'full'"):
        JRM.from_pretrained(tmp_path / "paper")
    config_path.write_text(json.dumps({k: v for k, v in raw.items() if k != "prompt"}))  # predates the key
    with pytest.raises(ConfigError, match="'full'"):
        JRM.from_pretrained(tmp_path / "paper")


def test_training_config_prompt_and_the_model_it_builds(tmp_path):
    from reward.jrm.model_init import build_model
    from reward.jrm.train_config import JRMModelInit, JRMTrainConfig

    tiny = JRMModelInit(tiny=True)
    assert build_model(tiny).config.prompt == "compact" and build_model(tiny, "paper").config.prompt == "paper"
    with pytest.raises(ConfigError, match="prompt"):
        JRMTrainConfig(prompt="full").validate()
    build_model(tiny).save_pretrained(tmp_path / "c")
    with pytest.raises(ConfigError, match="refuses"):
        build_model(JRMModelInit(checkpoint=str(tmp_path / "c")), "paper")
