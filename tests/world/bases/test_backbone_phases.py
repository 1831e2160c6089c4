"""The backbone's second pretraining phase continues the first phase's model, with its own steps and examples."""

import dataclasses

import pytest
import torch

from world.bases.backbone import CaptionBatches, eval_answer_loss, train_backbone, train_variety_phase
from world.bases.captions import CHANGE_PROMPTS, caption_examples, comparison_examples
from world.bases.config import VarietyPhaseConfig, load_bases_config
from world.tasks import make_tasks


def test_variety_phase_trains_the_first_phase_model_further_with_its_own_schedule():
    cfg = load_bases_config("reduced").backbone
    cfg = dataclasses.replace(cfg, steps=3, variety=VarietyPhaseConfig(steps=4, learning_rate=3e-3, warmup_steps=1))
    tasks = make_tasks("pretrain", 6, 32)
    first = train_backbone(cfg, caption_examples(tasks, 0.5, 0), caption_examples(tasks[:2], 0.5, 1), 32, progress=False)
    after_first = {k: v.clone() for k, v in first.model.state_dict().items()}
    varied = comparison_examples(tasks, 0, 0.3, 0.5)
    held_out = comparison_examples(tasks[:2], 1, 0.3, 0.5)
    expected_start = eval_answer_loss(first.model, CaptionBatches(first.parts, held_out, 32), cfg.batch_size)
    second = train_variety_phase(cfg, first, varied, held_out, 32, progress=False)
    assert second.model is first.model and second.parts is first.parts  # trained further, not rebuilt
    assert len(first.losses) == 3 and len(second.losses) == 4
    changed = [k for k, v in second.model.state_dict().items() if not torch.equal(v, after_first[k])]
    assert changed  # the phase moved the weights
    # the phase's starting loss is the first phase's model on the phase's held-out examples
    assert second.eval_loss_init == pytest.approx(expected_start, rel=1e-6)
    assert second.eval_loss_trained != pytest.approx(expected_start, rel=1e-6)
    assert any(e.prompt != CHANGE_PROMPTS[0] for e in varied)
