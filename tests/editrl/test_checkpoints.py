"""Step checkpoint directories: naming, listing order, latest, atomic write, pruning."""

import pytest

from editrl.checkpoints import StepCheckpoints, step_dir_name, write_dir_atomically


def _fill(text):
    def fill(tmp):
        (tmp / "state.json").write_text(text)

    return fill


def test_step_dir_name_pads_to_eight_digits():
    assert step_dir_name(0) == "step_00000000"
    assert step_dir_name(12) == "step_00000012"
    assert step_dir_name(123456789) == "step_123456789"
    with pytest.raises(ValueError, match="-1"):
        step_dir_name(-1)


def test_lists_complete_checkpoints_by_step_and_finds_latest(tmp_path):
    ckpts = StepCheckpoints(tmp_path / "checkpoints", marker="state.json")
    assert ckpts.paths() == [] and ckpts.latest() is None
    for step in (10, 2, 100_000_000):
        ckpts.write(step, _fill(str(step)))
    (tmp_path / "checkpoints" / "step_00000050").mkdir()  # no marker: incomplete, ignored
    (tmp_path / "checkpoints" / "step_00000003.old").mkdir()  # not a step name
    (tmp_path / "checkpoints" / "step_00000003.old" / "state.json").write_text("x")
    assert [p.name for p in ckpts.paths()] == ["step_00000002", "step_00000010", "step_100000000"]
    assert ckpts.steps() == [2, 10, 100_000_000]
    assert ckpts.latest() == tmp_path / "checkpoints" / "step_100000000"
    assert (ckpts.path(10) / "state.json").read_text() == "10"


def test_write_replaces_and_failed_write_leaves_old_checkpoint(tmp_path):
    ckpts = StepCheckpoints(tmp_path, marker="state.json")
    ckpts.write(1, _fill("first"))
    ckpts.write(1, _fill("second"))
    assert (ckpts.path(1) / "state.json").read_text() == "second"

    def crash(tmp):
        (tmp / "state.json").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        ckpts.write(1, crash)
    assert (ckpts.path(1) / "state.json").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001"]  # no temporary left behind


def test_write_dir_atomically_clears_a_stale_temporary(tmp_path):
    stale = tmp_path / ".final.tmp"
    stale.mkdir()
    (stale / "junk").write_text("from a crashed run")
    write_dir_atomically(tmp_path / "final", _fill("done"))
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == ["state.json"]
    assert not stale.exists()


def test_prune_keeps_the_newest(tmp_path):
    ckpts = StepCheckpoints(tmp_path, marker="state.json")
    for step in range(1, 6):
        ckpts.write(step, _fill(""))
    deleted = ckpts.prune(keep_last=2)
    assert [p.name for p in deleted] == ["step_00000001", "step_00000002", "step_00000003"]
    assert ckpts.steps() == [4, 5]
    assert ckpts.prune(keep_last=3) == []
    with pytest.raises(ValueError, match="keep_last must be >= 1, got 0"):
        ckpts.prune(keep_last=0)
