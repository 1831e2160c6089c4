"""The local transformers judge: a tiny random Qwen2.5-VL saved to and loaded from a local directory."""

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from editrl.tiny_qwen_vl import build_tiny_qwen2_5_vl
from reward.judges.base import JudgeRequest
from reward.judges.local_vlm import LocalVLMJudge, LocalVLMJudgeConfig
from reward.judges.prompts.viescore import VIESCORE_FORMAT
from tests.evaluation.fixtures import solid


def test_random_tiny_vlm_answers_are_failures_after_retries(tmp_path):
    torch.manual_seed(0)
    parts = build_tiny_qwen2_5_vl()
    Qwen2_5_VLForConditionalGeneration(parts.config).save_pretrained(tmp_path)
    parts.tokenizer.save_pretrained(tmp_path)
    parts.image_processor.save_pretrained(tmp_path)
    judge = LocalVLMJudge.from_pretrained(
        LocalVLMJudgeConfig(model_dir=str(tmp_path), dtype="float32", max_new_tokens=6, max_attempts=2)
    )
    [answer] = judge.judge([JudgeRequest("r", "Rate the edit.", [solid(10, (56, 56)), solid(200, (56, 56))], VIESCORE_FORMAT)])
    assert answer.scores is None and answer.attempts == 2 and "malformed" in answer.failure
    assert answer.raw_text is not None


class _ScriptedGenerator(torch.nn.Module):
    """Stands in for the model: returns the prompt followed by scripted answer tokens, records sampling flags."""

    def __init__(self, tokenizer, answers):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.dtype, self.device = torch.float32, torch.device("cpu")
        self.tokenizer, self.answers, self.sampled = tokenizer, list(answers), []

    def generate(self, input_ids, do_sample, max_new_tokens, temperature=None, **_):
        self.sampled.append(do_sample)
        new = self.tokenizer(self.answers.pop(0), return_tensors="pt").input_ids
        return torch.cat([input_ids, new], dim=1)


def test_malformed_answer_is_retried_with_sampling():
    parts = build_tiny_qwen2_5_vl()
    model = _ScriptedGenerator(parts.tokenizer, ["I think it is fine", '{"score": [7, 2], "reasoning": "ok"}'])
    judge = LocalVLMJudge(model, parts.tokenizer, parts.image_processor, LocalVLMJudgeConfig(dtype="float32", max_attempts=3))
    [answer] = judge.judge([JudgeRequest("r", "Rate.", [solid(10, (56, 56))], VIESCORE_FORMAT)])
    assert answer.scores == (7.0, 2.0) and answer.attempts == 2
    assert model.sampled == [False, True]
