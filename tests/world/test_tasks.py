import json

import numpy as np
import pytest

from world.render import shape_mask
from world.tasks import (
    EDIT_TYPES,
    SPLIT_OFFSETS,
    SPLIT_WIDTH,
    build_task,
    generate_task,
    make_tasks,
    task_from_record,
    write_instruction_jsonl,
)


def test_same_seed_same_task_and_different_seeds_differ():
    a, b = generate_task(123, size=32), generate_task(123, size=32)
    assert a.instruction == b.instruction and a.source == b.source and a.target == b.target
    assert np.array_equal(a.target_image, b.target_image)
    others = [generate_task(s, size=32) for s in range(124, 134)]
    assert any(o.instruction != a.instruction or not np.array_equal(o.source_image, a.source_image) for o in others)


@pytest.mark.parametrize("edit_type", EDIT_TYPES)
def test_target_differs_from_source_exactly_inside_the_edit_region(edit_type):
    for seed in range(15):
        task = build_task(seed, 32, edit_type)
        region = np.zeros((32, 32), dtype=bool)
        for r in task.edit_regions:
            region |= r.mask
        changed = task.changed_mask
        assert changed.any(), task.instruction
        assert not (changed & ~region).any(), f"{task.instruction}: pixels changed outside the edit region"
        if edit_type in ("recolour", "background"):
            assert np.array_equal(changed, region), task.instruction


def test_edit_regions_follow_the_instruction():
    task = next(t for t in (build_task(s, 48, "move") for s in range(20)) if len(t.source.shapes) > 1)
    (old, new) = task.edit_regions
    moved = next(s for s in task.source.shapes if s not in task.target.shapes)
    assert np.array_equal(old.mask, shape_mask(moved, 48))
    assert moved.name in task.instruction and moved.name in old.label
    place = task.instruction.split(" to the ")[-1]
    assert any(s.place == place and s.name == moved.name for s in task.target.shapes)


def test_splits_are_disjoint_and_heldout_is_last():
    offsets = sorted(SPLIT_OFFSETS.values())
    assert all(b - a >= SPLIT_WIDTH for a, b in zip(offsets, offsets[1:]))
    held = make_tasks("heldout", 3)
    assert [t.seed for t in held] == [SPLIT_OFFSETS["heldout"] + i for i in range(3)]
    with pytest.raises(ValueError, match="split"):
        make_tasks("nope", 1)


def test_instruction_jsonl_round_trips(tmp_path):
    tasks = make_tasks("rl", 4, size=32)
    path = write_instruction_jsonl(tasks, tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in records] == [t.task_id for t in tasks]
    for record, task in zip(records, tasks):
        assert (tmp_path / record["source"]).is_file()
        rebuilt = task_from_record(record)
        assert rebuilt.instruction == task.instruction and np.array_equal(rebuilt.target_image, task.target_image)
    bad = dict(records[0], instruction="make it pink")
    with pytest.raises(ValueError, match=records[0]["id"]):
        task_from_record(bad)
