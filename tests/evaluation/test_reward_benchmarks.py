"""EditReward-Bench, TIGER's EditReward-Bench and MMRB2 with a brightness-based reward model; hand-computed."""

import json

import pytest

from editrl.config import ConfigError
from reward.benchmarks.editreward_bench import (
    EditRewardBenchConfig,
    load_editreward_bench,
    run_editreward_bench,
)
from reward.benchmarks.mmrb2 import MMRB2Config, forward_reverse_correct, load_mmrb2_edit, run_mmrb2
from reward.benchmarks.tiger_editreward_bench import (
    TigerBenchConfig,
    calibrate_tie_threshold,
    load_tiger_bench,
    parse_ranking,
    run_tiger_bench,
)
from tests.evaluation.fixtures import BrightnessReward, solid, write_editreward_bench

# BrightnessReward: instruction_following = brightness / 64, visual_quality = 4 - that, reward = instruction_following


@pytest.fixture
def editreward_dir(tmp_path):
    def row(task, dim, keys, values):
        return {"key": keys, "instruction": "do it", "input_image": solid(0), "output_images": [solid(v) for v in values],
                "task_type": task, "dimension": dim}

    write_editreward_bench(tmp_path, [
        row("subject-add", "prompt_following", ("a0", "a1"), (200, 100)),  # correct
        row("subject-add", "prompt_following", ("a2", "a3"), (100, 100)),  # tie -> wrong
        row("subject-add", "consistency", ("a0", "a1"), (200, 100)),  # VQ 0.875 < 2.4375 -> wrong
        row("color_alter", "prompt_following", ("c0", "c1"), (50, 150)),  # wrong
        row("color_alter", "overall", ("c1", "c0"), (150, 50)),  # correct
        row("color_alter", "consistency", ("c0", "c1"), (50, 150)),  # VQ higher for darker -> correct
    ])
    return tmp_path


def test_editreward_bench_accuracy_per_task_then_macro(editreward_dir):
    pairs = load_editreward_bench(editreward_dir)
    model = BrightnessReward()
    report = run_editreward_bench(model, pairs, EditRewardBenchConfig(batch_size=4))
    assert sum(model.calls) == 6  # a0..a3, c0, c1 each scored once
    groups = {g.name: g for g in report.groups}
    assert [g.name for g in report.groups] == ["color_alter", "subject-add"]  # the release's column order
    assert groups["subject-add"].metrics == {"prompt_following": 0.5, "consistency": 0.0}
    assert groups["color_alter"].metrics == {"prompt_following": 0.0, "consistency": 1.0, "overall": 1.0}
    assert report.overall == pytest.approx({"prompt_following": 0.25, "consistency": 0.5, "overall": 1.0})
    assert report.n_items == 6 and report.settings["dimension_map"]["consistency"] == "visual_quality"


def test_editreward_bench_dimension_map_is_explicit(editreward_dir):
    pairs = load_editreward_bench(editreward_dir)
    cfg = EditRewardBenchConfig(dimension_map={"prompt_following": "reward", "consistency": "instruction_following", "overall": "reward"})
    groups = {g.name: g for g in run_editreward_bench(BrightnessReward(), pairs, cfg).groups}
    assert groups["subject-add"].metrics["consistency"] == 1.0 and groups["color_alter"].metrics["consistency"] == 0.0
    with pytest.raises(ValueError, match="dimension_map.consistency"):
        run_editreward_bench(BrightnessReward(), pairs, EditRewardBenchConfig(dimension_map={
            "prompt_following": "reward", "consistency": "sharpness", "overall": "reward"}))
    with pytest.raises(ConfigError, match="unknown bench dimension"):
        EditRewardBenchConfig(dimension_map={"realism": "reward"}).validate()


@pytest.fixture
def tiger_dir(tmp_path):
    def group(name, src, values, ranking):
        paths = []
        for i, v in enumerate(values):
            rel = f"images/{name}_{i}.png"
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            solid(v).save(tmp_path / rel)
            paths.append(rel)
        solid(src).save(tmp_path / f"images/{name}_src.png")
        return {"prompt": f"edit {name}", "path_src": f"images/{name}_src.png", "paths_generated": paths,
                "human_vote": {"ranking": ranking}}

    files = {
        "EditReward_Bench_2pair.json": [
            group("t0", 5, (200, 100), "A>B"), group("t1", 5, (100, 110), "A=B=Good"),
            group("t2", 5, (120, 100), "B>A"), group("t3", 5, (100, 100), "A=B=Bad"),
        ],
        "EditReward_Bench_3pair.json": [group("h0", 5, (150, 100, 200), "C>A>B"), group("h1", 5, (100, 100, 50), "A>B>C")],
        "EditReward_Bench_4pair.json": [group("f0", 5, (100, 200, 10, 50), "B>A>D>C")],
    }
    for name, records in files.items():
        (tmp_path / name).write_text(json.dumps(records))
    return tmp_path


def test_parse_ranking():
    assert parse_ranking("C>A>B", 3, "x") == (2, 0, 1)
    assert parse_ranking("A<B", 2, "x") == (1, 0) and parse_ranking("A=B=Bad", 2, "x") == "tie"
    with pytest.raises(FileNotFoundError, match="rec 7"):
        parse_ranking("A>A>B", 3, "rec 7")


def test_tiger_strict_ranking_with_given_and_calibrated_tie_threshold(tiger_dir):
    groups = load_tiger_bench(tiger_dir)
    given = run_tiger_bench(BrightnessReward(), groups, TigerBenchConfig(tie_threshold=0.2))
    strict = {g.name: g.metrics["strict_accuracy"] for g in given.groups}
    assert strict == {"2-pair": 0.75, "3-pair": 0.5, "4-pair": 1.0}
    assert given.overall["strict_accuracy"] == pytest.approx(5 / 7)

    calibrated = run_tiger_bench(BrightnessReward(), groups, TigerBenchConfig())
    # 2-pair (label, diff): (1, 1.5625), (0, -0.15625), (-1, 0.3125), (0, 0): best eps 0.15625 -> 3/4
    assert calibrated.settings["tie_threshold"] == pytest.approx(0.15625)
    metrics = {g.name: g.metrics for g in calibrated.groups}
    assert metrics["2-pair"] == pytest.approx({"strict_accuracy": 0.75, "pairwise_accuracy": 0.75})
    assert metrics["3-pair"]["pairwise_accuracy"] == pytest.approx(5 / 6)  # h1's A-B score tie is wrong
    assert metrics["4-pair"]["pairwise_accuracy"] == 1.0
    assert calibrated.overall["pairwise_accuracy"] == pytest.approx(14 / 16)
    assert calibrate_tie_threshold([(1, 2.0), (-1, -1.0)]) == 0.0


@pytest.fixture
def mmrb2_dir(tmp_path):
    def img(name, value, size=(16, 12)):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "input_images").mkdir(exist_ok=True)
        solid(value, size).save(tmp_path / name)
        return name

    def pair(pid, inputs, a, b, chosen):
        prompt = [["text", f"edit {pid}"]] + [["image", img(f"input_images/{pid}_{i}.png", 9, s)] for i, s in enumerate(inputs)]
        return {"id": pid, "prompt_content": prompt, "chosen": chosen,
                "response_a": {"model_name": "m1", "response_content": [["image", img(f"images/{pid}_0.png", a)]]},
                "response_b": {"model_name": "m2", "response_content": [["image", img(f"images/{pid}_1.png", b)]]}}

    pairs = [
        pair("p1", [(16, 12)], 200, 100, "A"),  # both verdicts right
        pair("p2", [(16, 12)], 100, 100, "B"),  # tie: both wrong
        pair("p3", [(16, 12), (8, 6)], 50, 150, "B"),  # multi-image, right
        pair("p4", [(16, 12)], 150, 50, "B"),  # wrong
    ]
    (tmp_path / "edit.json").write_text(json.dumps({"pairs": pairs}))
    return tmp_path


def test_forward_and_reverse_verdicts():
    assert forward_reverse_correct(1.0, 2.0, "B") == (True, True)
    assert forward_reverse_correct(2.0, 1.0, "B") == (False, False)
    assert forward_reverse_correct(1.0, 1.0, "A") == (False, False)


def test_mmrb2_accuracy_over_all_judgements(mmrb2_dir):
    model = BrightnessReward()
    report = run_mmrb2(model, load_mmrb2_edit(mmrb2_dir), MMRB2Config(batch_size=3))
    acc = {g.name: g.metrics["accuracy"] for g in report.groups}
    assert acc == pytest.approx({"single": 2 / 6, "multi": 1.0})
    assert report.overall["accuracy"] == pytest.approx(4 / 8)
    assert (32, 12) in model.source_sizes  # two inputs side by side at the first one's height (8x6 -> 16x12)


def _hf_row(rid, dataset, a, b, ranking, comparison=None):
    from tests.evaluation.fixtures import png_cell

    row = {"id": rid, "instruction": "edit", "source_image": png_cell(solid(5), "s.png"), "candidate_1": png_cell(solid(a), "1.png"),
           "candidate_2": png_cell(solid(b), "2.png"), "ranking": ranking, "dataset": dataset}
    row["comparison_type"] = comparison
    return row


def test_tiger_hugging_face_layout_rebuilds_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        _hf_row("g1_0", "2pair", 200, 100, "A>B"),
        _hf_row("g2_0", "2pair", 100, 100, "A=B"),
        _hf_row("h1_0", "3pair", 150, 100, "A>B", "AvsB"),
        _hf_row("h1_1", "3pair", 150, 200, "C>A", "AvsC"),
        _hf_row("h1_2", "3pair", 100, 200, "C>B", "BvsC"),
    ]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet")
    groups = load_tiger_bench(tmp_path)
    assert [(g.subset, g.ranking, len(g.candidates)) for g in groups] == [
        ("2-pair", (0, 1), 2), ("2-pair", "tie", 2), ("3-pair", (2, 0, 1), 3),
    ]
    report = run_tiger_bench(BrightnessReward(), groups, TigerBenchConfig(tie_threshold=0.0))
    assert report.overall["strict_accuracy"] == 1.0  # A>B right, exact tie within 0, C>A>B right

    cyclic = rows[:4] + [_hf_row("h1_2", "3pair", 100, 200, "B>C", "BvsC")]  # A>B, C>A, B>C
    pq.write_table(pa.Table.from_pylist(cyclic), tmp_path / "data" / "test-00000-of-00001.parquet")
    with pytest.raises(FileNotFoundError, match="h1.*strict ranking"):
        load_tiger_bench(tmp_path)


class _NaNFor100(BrightnessReward):
    """Like BrightnessReward, but an edit of brightness 100 cannot be scored (NaN), as a failed judge."""

    def score(self, sources, edits, instructions):
        out = super().score(sources, edits, instructions)
        bad = out.mu[:, 0] == 100 / 64
        out.mu[bad] = float("nan")
        out.reward[bad] = float("nan")
        return out


def test_unscorable_items_raise_or_are_excluded_and_counted(editreward_dir):
    pairs = load_editreward_bench(editreward_dir)
    with pytest.raises(ValueError, match="non-finite.*'a1'"):
        run_editreward_bench(_NaNFor100(), pairs, EditRewardBenchConfig())
    report = run_editreward_bench(_NaNFor100(), pairs, EditRewardBenchConfig(allow_failures=True))
    groups = {g.name: g for g in report.groups}
    # a1 and a2/a3 (brightness 100) fail: all three subject-add pairs are excluded
    assert (groups["subject-add"].n_items, groups["subject-add"].n_failures, groups["subject-add"].metrics) == (3, 3, {})
    assert report.n_failures == 3 and report.overall == {"prompt_following": 0.0, "consistency": 1.0, "overall": 1.0}


def test_viescore_judge_as_reward_model():
    from reward.judges.reward_model import VIEScoreJudgeReward
    from tests.evaluation.fixtures import ScriptedJudge

    answers = {"call1/0/SC": "[8, 6]", "call1/0/PQ": "[9, 4]", "call1/1/SC": None, "call1/1/PQ": "[9, 9]"}
    judge = ScriptedJudge(lambda r: None if answers[r.request_id] is None else f'{{"score": {answers[r.request_id]}}}')
    out = VIEScoreJudgeReward(judge).score([solid(1, (20, 10))] * 2, [solid(2), solid(3)], ["a", "b"])
    assert out.mu[0].tolist() == [6.0, 4.0] and out.reward[0].item() == pytest.approx(24 ** 0.5)
    assert out.mu[1].isnan().all() and out.reward[1].isnan()
    assert judge.seen[0].images[1].size == (20, 10)  # the edit is resized to the source's size
