"""The toy world's data files, built when missing: driven by config, deterministic, atomic, reused as they are."""

import hashlib
import logging
from dataclasses import replace
from pathlib import Path

import pytest

import world.tasks
from editrl.config import ConfigError, load_config
from reward.jrm.annotate import read_rationales
from reward.jrm.data import load_preference_pairs
from reward.jrm.train_config import JRMDataConfig, JRMTrainConfig
from rl.data import read_instruction_jsonl
from world.data_files import WorldDataConfig, ensure_world_data

SMALL = WorldDataConfig(build_if_missing=True, n_instructions=4, n_pair_tasks=3, pairs_per_task=2)


def stage1(directory: Path, **kwargs) -> JRMTrainConfig:
    data = JRMDataConfig(train_pairs=str(directory / "pairs.jsonl"), rationales=str(directory / "annotations.jsonl"))
    return replace(JRMTrainConfig(data=data), **kwargs)


def tree(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (relative path -> sha256)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_off_by_default_writes_nothing(tmp_path):
    report = ensure_world_data(WorldDataConfig(), str(tmp_path / "w" / "instructions.jsonl"), stage1(tmp_path / "w"))
    assert not report.built and not report.reused
    assert not (tmp_path / "w").exists()


def test_builds_instructions_pairs_and_rationales_that_load(tmp_path, caplog):
    directory = tmp_path / "w"
    with caplog.at_level(logging.INFO, logger="editrl.world.data"):
        report = ensure_world_data(SMALL, str(directory / "instructions.jsonl"), stage1(directory))
    assert sorted(report.built) == ["data.train_path", "jrm.data.rationales", "jrm.data.train_pairs"]
    assert not report.reused
    records = read_instruction_jsonl(directory / "instructions.jsonl")
    assert [r.record_id for r in records] == [f"rl-{i:06d}" for i in range(4)]
    pairs, _ = load_preference_pairs(directory / "pairs.jsonl")
    assert len(pairs) == 3 * 2
    rationales = read_rationales(directory / "annotations.jsonl")
    assert len(rationales) == 2 * len(pairs)  # both sides of every pair, none rejected
    assert not (directory / "annotations.jsonl.partial").exists()
    assert "data.train_path=" in caplog.text and "is missing; building it" in caplog.text
    assert "wrote jrm.data.rationales=" in caplog.text


def test_same_config_same_bytes_and_the_seed_changes_the_pairs(tmp_path):
    for name, cfg in (("a", SMALL), ("b", SMALL), ("c", replace(SMALL, seed=1))):
        ensure_world_data(cfg, str(tmp_path / name / "instructions.jsonl"), stage1(tmp_path / name))
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b and len(a) > 10
    assert a["instructions.jsonl"] == c["instructions.jsonl"]  # tasks come from their split, not the seed
    assert a["pairs.jsonl"] != c["pairs.jsonl"]


def test_existing_files_are_used_as_they_are(tmp_path, caplog):
    directory = tmp_path / "w"
    ensure_world_data(SMALL, str(directory / "instructions.jsonl"), stage1(directory))
    before = tree(directory)
    mtimes = {p: p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO, logger="editrl.world.data"):
        report = ensure_world_data(replace(SMALL, seed=7, n_instructions=9), str(directory / "instructions.jsonl"), stage1(directory))
    assert not report.built and sorted(report.reused) == ["data.train_path", "jrm.data.rationales", "jrm.data.train_pairs"]
    assert tree(directory) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert caplog.text.count("exists; using it as it is (not rebuilt)") == 3


def test_stage1_files_only_when_stage1_runs_and_rationales_only_when_it_needs_them(tmp_path):
    report = ensure_world_data(SMALL, str(tmp_path / "a" / "instructions.jsonl"), None)
    assert sorted(report.built) == ["data.train_path"] and not (tmp_path / "a" / "pairs.jsonl").exists()
    for name, jrm in (("b", stage1(tmp_path / "b", alpha=0.0)), ("c", stage1(tmp_path / "c"))):
        if name == "c":
            jrm = replace(jrm, annotate=replace(jrm.annotate, enabled=True))  # its teacher writes them instead
        report = ensure_world_data(SMALL, str(tmp_path / name / "instructions.jsonl"), jrm)
        assert sorted(report.built) == ["data.train_path", "jrm.data.train_pairs"]
        assert not (tmp_path / name / "annotations.jsonl").exists()


def test_a_killed_build_leaves_no_index_and_the_next_run_builds_it(tmp_path, monkeypatch):
    directory, real_write = tmp_path / "w", world.tasks.atomic_write_bytes
    calls = []

    def dies_on_the_third_file(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        real_write(path, data)

    monkeypatch.setattr(world.tasks, "atomic_write_bytes", dies_on_the_third_file)
    with pytest.raises(KeyboardInterrupt):
        ensure_world_data(SMALL, str(directory / "instructions.jsonl"), None)
    assert not (directory / "instructions.jsonl").exists()  # two images written, never the file naming them
    assert [p.name for p in directory.rglob("*") if p.is_file()] == [Path(calls[0]).name, Path(calls[1]).name]
    monkeypatch.setattr(world.tasks, "atomic_write_bytes", real_write)
    report = ensure_world_data(SMALL, str(directory / "instructions.jsonl"), None)
    assert sorted(report.built) == ["data.train_path"] and len(read_instruction_jsonl(directory / "instructions.jsonl")) == 4


def test_a_killed_annotation_leaves_no_rationale_file(tmp_path, monkeypatch):
    import world.data_files

    directory = tmp_path / "w"

    def dies_midway(pairs, teacher, out, **kwargs):
        Path(out).write_text('{"key": "torn')
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(world.data_files, "annotate_pairs", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ensure_world_data(SMALL, str(directory / "instructions.jsonl"), stage1(directory))
    assert (directory / "pairs.jsonl").is_file() and not (directory / "annotations.jsonl").exists()
    monkeypatch.undo()
    report = ensure_world_data(SMALL, str(directory / "instructions.jsonl"), stage1(directory))
    assert sorted(report.built) == ["jrm.data.rationales"]  # the torn partial is discarded, not resumed into
    assert len(read_rationales(directory / "annotations.jsonl")) == 2 * 3 * 2


@pytest.mark.parametrize(
    ("override", "named"),
    [("n_instructions=0", "n_instructions"), ("image_size=20", "image_size"), ("edit_types=[spin]", "edit_types"),
     ("tie_fraction=1.0", "tie_fraction"), ("seeed=1", "seeed")],
)
def test_bad_values_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(WorldDataConfig, None, [override])
