"""JRM checkpoint pieces: which checkpoint a run resumes from, RNG capture/restore through JSON."""

import json
import random

import pytest
import torch

from editrl.config import ConfigError
from reward.jrm.checkpoints import TRAINER_STATE, jrm_checkpoints, resolve_resume
from reward.jrm.rng import capture_rng, restore_rng, seed_worker
from reward.jrm.train_config import JRMTrainConfig


def _write(path):
    path.mkdir(parents=True)
    (path / TRAINER_STATE).write_text("{}")


def test_resolve_resume_never_auto_and_explicit(tmp_path):
    cfg = JRMTrainConfig(output_dir=str(tmp_path), resume="auto")
    assert resolve_resume(cfg) is None  # nothing written yet
    for step in (2, 10):
        _write(tmp_path / "checkpoints" / f"step_{step:08d}")
    (tmp_path / "checkpoints" / ".step_00000012.tmp").mkdir()  # an interrupted write is not a checkpoint
    assert resolve_resume(cfg) == tmp_path / "checkpoints" / "step_00000010"
    assert jrm_checkpoints(tmp_path).steps() == [2, 10]
    assert resolve_resume(JRMTrainConfig(output_dir=str(tmp_path), resume="never")) is None
    explicit = tmp_path / "checkpoints" / "step_00000002"
    assert resolve_resume(JRMTrainConfig(output_dir=str(tmp_path), resume=str(explicit))) == explicit
    with pytest.raises(ConfigError, match=rf"resume: {tmp_path / 'elsewhere'} is not a checkpoint directory"):
        resolve_resume(JRMTrainConfig(output_dir=str(tmp_path), resume=str(tmp_path / "elsewhere")))


def test_rng_restore_through_json_repeats_the_draws():
    seed_worker(3)
    tensors, python_state = capture_rng()
    python_state = json.loads(json.dumps(python_state))  # how trainer_state.json stores it (tuples become lists)
    first = (torch.rand(3), random.random())
    torch.rand(5)
    random.random()
    restore_rng(tensors, python_state)
    again = (torch.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
