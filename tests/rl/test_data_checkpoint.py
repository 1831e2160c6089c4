"""Instruction JSONL parsing, seeded resumable order, and atomic checkpoints."""

import json

import pytest
import torch
from PIL import Image

from rl.checkpoint import TrainingState, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from rl.data import InstructionDataError, InstructionDataset, load_reference_images, read_instruction_jsonl


def _write_jsonl(tmp_path, records):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_jsonl_records_and_errors(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "img" / "a.png")
    path = _write_jsonl(
        tmp_path,
        [
            {"id": "a", "instruction": "make it blue", "source": "img/a.png", "extra": 1},
            {"id": "b", "instruction": "merge", "sources": ["img/a.png", "img/a.png"]},
        ],
    )
    records = read_instruction_jsonl(path)
    assert [r.record_id for r in records] == ["a", "b"]
    assert records[1].sources == (tmp_path / "img" / "a.png",) * 2
    assert load_reference_images(records[0])[0].getpixel((0, 0)) == (255, 0, 0)

    bad = _write_jsonl(tmp_path, [{"id": "a", "instruction": "x", "source": "img/a.png"}, {"id": "z", "source": "img/a.png"}])
    with pytest.raises(InstructionDataError, match=r"train.jsonl:2.*'instruction'"):
        read_instruction_jsonl(bad)
    missing = _write_jsonl(tmp_path, [{"id": "m", "instruction": "x", "source": "img/nope.png"}])
    with pytest.raises(InstructionDataError, match="'m'.*image not found"):
        read_instruction_jsonl(missing)


def test_dataset_order_is_seeded_and_resumable(tmp_path):
    records = [r for r in read_instruction_jsonl(_make_many(tmp_path, 7), check_files=False)]
    full = InstructionDataset(records, seed=3)
    stream = [r.record_id for r in full.take(17)]
    # every epoch is a permutation of all ids
    assert sorted(stream[:7]) == sorted(r.record_id for r in records)
    assert sorted(stream[7:14]) == sorted(r.record_id for r in records)
    # stopping anywhere and resuming from the position reproduces the same stream
    part = InstructionDataset(records, seed=3)
    first = [r.record_id for r in part.take(5)]
    resumed = InstructionDataset(records, seed=3, position=part.position)
    assert first + [r.record_id for r in resumed.take(12)] == stream
    assert [r.record_id for r in InstructionDataset(records, seed=4).take(7)] != stream[:7]


def _make_many(tmp_path, n):
    return _write_jsonl(tmp_path, [{"id": f"r{i}", "instruction": f"edit {i}", "source": f"{i}.png"} for i in range(n)])


def test_checkpoint_roundtrip_and_pruning(tmp_path):
    adapter = {"lora_A": torch.randn(2, 3), "lora_B": torch.zeros(3, 2)}
    param = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.ones(3)
    opt.step()
    rng = {"torch_cpu": torch.get_rng_state()}
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, TrainingState(step, step * 10, step), adapter, opt.state_dict(), rng, "a: 1\n", keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    ckpt = load_checkpoint(latest_checkpoint(tmp_path))
    assert ckpt.state == TrainingState(4, 40, 4)
    assert torch.equal(ckpt.adapter["lora_A"], adapter["lora_A"])
    assert torch.equal(ckpt.rng["torch_cpu"], rng["torch_cpu"])
    assert torch.equal(ckpt.optimizer["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(tmp_path, TrainingState(5, 0, 0), {"x": torch.tensor([float("nan")])}, None, rng, "")
    assert latest_checkpoint(tmp_path).name == "step_00000004"
