"""A wrong data layout raises an error naming what is expected and where."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reward.benchmarks.editreward_bench import load_editreward_bench
from reward.benchmarks.files import BenchmarkLayoutError
from reward.benchmarks.mmrb2 import load_mmrb2_edit
from reward.benchmarks.tiger_editreward_bench import load_tiger_bench
from reward.judges.prompts.imgedit import load_imgedit_prompts
from rl.benchmarks.gedit import load_gedit_bench
from rl.benchmarks.imgedit import load_imgedit_bench
from tests.evaluation.fixtures import solid, write_gedit


def test_gedit_without_parquet_names_the_release_layout(tmp_path):
    with pytest.raises(BenchmarkLayoutError, match=r"no parquet files under .*data/\*\.parquet"):
        load_gedit_bench(tmp_path)
    with pytest.raises(BenchmarkLayoutError, match="does not exist"):
        load_gedit_bench(tmp_path / "missing")


def test_gedit_unknown_task_type_names_the_row(tmp_path):
    write_gedit(tmp_path, [{"task_type": "teleport", "key": "x9", "instruction": "i", "instruction_language": "en",
                            "input_image": solid(1)}])
    with pytest.raises(BenchmarkLayoutError, match="x9.*teleport"):
        load_gedit_bench(tmp_path)


def test_parquet_missing_columns_are_named(tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([{"key": ["a", "b"], "instruction": "i"}]), tmp_path / "data" / "x.parquet")
    with pytest.raises(BenchmarkLayoutError, match=r"lacks column\(s\) \['input_image', 'output_images'"):
        load_editreward_bench(tmp_path)


def test_imgedit_missing_files_name_expected_paths(tmp_path):
    with pytest.raises(BenchmarkLayoutError, match=str(tmp_path / "basic_edit.json")):
        load_imgedit_bench(tmp_path)
    (tmp_path / "basic_edit.json").write_text(json.dumps({"1": {"id": "animal/a.jpg", "prompt": "p", "edit_type": "add"}}))
    with pytest.raises(BenchmarkLayoutError, match=r"Benchmark\.tar.*singleturn/animal/a\.jpg"):
        load_imgedit_bench(tmp_path)
    with pytest.raises(FileNotFoundError, match="prompts.json"):
        load_imgedit_prompts(tmp_path / "prompts.json")


def test_tiger_and_mmrb2_missing_files_name_expected_paths(tmp_path):
    with pytest.raises(BenchmarkLayoutError, match="EditReward_Bench_2pair.json.*EditReward_Bench_4pair.json"):
        load_tiger_bench(tmp_path)
    with pytest.raises(BenchmarkLayoutError, match=r"edit\.json not found"):
        load_mmrb2_edit(tmp_path)
    (tmp_path / "edit.json").write_text(json.dumps({"pairs": [{"id": "p", "chosen": "A", "prompt_content": [["image", "in.png"]],
                                                              "response_a": {"response_content": [["image", "a.png"]]},
                                                              "response_b": {"response_content": [["image", "b.png"]]}}]}))
    with pytest.raises(BenchmarkLayoutError, match=r"pair 0: image file not found: .*in\.png"):
        load_mmrb2_edit(tmp_path)
