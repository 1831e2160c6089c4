"""GEdit-Bench and ImgEdit-Bench end to end with a fake policy and a scripted judge; metrics by hand."""

import json
import math

import pytest

from policies.settings import SamplingSettings
from reward.judges.prompts.imgedit import IMGEDIT_EDIT_TYPES
from rl.benchmarks.gedit import GEditBenchmark, load_gedit_bench, viescore
from rl.benchmarks.hooks import PolicyBenchmarkHook, fixed_subset
from rl.benchmarks.imgedit import ImgEditBenchmark, load_imgedit_bench, resolve_imgedit_prompts
from rl.benchmarks.runner import evaluate_policy
from rl.hooks import EvalHook
from tests.evaluation.fixtures import FakePolicy, ScriptedJudge, solid, write_gedit

GEDIT_ANSWERS = {
    "k1/SC": "[8, 6]", "k1/PQ": "[9, 4]",
    "k2/SC": "[3, 9]", "k2/PQ": "[5, 5]",
    "k3/SC": "[10, 10]", "k3/PQ": "[4, 9]",
    "k4/SC": None, "k4/PQ": "[9, 9]",
}


def _gedit_answer(request):
    scores = GEDIT_ANSWERS[request.request_id]
    return None if scores is None else f'{{"score": {scores}, "reasoning": "r"}}'


@pytest.fixture
def gedit_dir(tmp_path):
    rows = [
        ("background_change", "k1", "en", 50), ("background_change", "k2", "en", 100),
        ("color_alter", "k3", "en", 150), ("color_alter", "k4", "en", 200), ("color_alter", "k5", "cn", 60),
    ]
    write_gedit(tmp_path, [
        {"task_type": g, "key": k, "instruction": f"edit {k}", "instruction_language": lang, "input_image": solid(v, (20, 10))}
        for g, k, lang, v in rows
    ])
    return tmp_path


def test_viescore_is_min_then_geometric_mean():
    assert viescore([8, 6], [9, 4]) == {"SC": 6, "PQ": 4, "O": math.sqrt(24)}


def test_gedit_per_group_then_over_groups(gedit_dir, tmp_path):
    items = load_gedit_bench(gedit_dir, "en")
    assert [(i.key, i.group) for i in items] == [
        ("k1", "background_change"), ("k2", "background_change"), ("k3", "color_alter"), ("k4", "color_alter"),
    ]
    policy, judge = FakePolicy(delta=10), ScriptedJudge(_gedit_answer)
    outcome = evaluate_policy(
        policy, GEditBenchmark(), items, judge, seed=3, edit_kwargs={"text_guidance_scale": 5.0},
        edits_dir=tmp_path / "edits",
    )
    report = outcome.report
    bg, color = report.groups
    assert (bg.name, bg.n_items, bg.n_failures) == ("background_change", 2, 0)
    assert (color.name, color.n_items, color.n_failures) == ("color_alter", 2, 1)
    assert bg.metrics["SC"] == pytest.approx(4.5) and bg.metrics["PQ"] == pytest.approx(4.5)
    assert bg.metrics["O"] == pytest.approx((math.sqrt(24) + math.sqrt(15)) / 2)
    assert color.metrics == pytest.approx({"SC": 10, "PQ": 4, "O": math.sqrt(40)})
    assert report.overall["SC"] == pytest.approx(7.25) and report.overall["PQ"] == pytest.approx(4.25)
    assert report.overall["O"] == pytest.approx(((math.sqrt(24) + math.sqrt(15)) / 2 + math.sqrt(40)) / 2)
    assert (report.n_items, report.n_failures) == (4, 1)
    assert "groups without items" in report.notes[0] and "ps_human" in report.notes[0]

    sc_k1, pq_k1 = judge.seen[0], judge.seen[1]
    assert len(sc_k1.images) == 2 and len(pq_k1.images) == 1
    assert sc_k1.images[0].getpixel((0, 0)) == (50, 50, 50) and pq_k1.images[0].getpixel((0, 0)) == (60, 60, 60)
    assert "edit k1" in sc_k1.prompt
    assert policy.calls[0] == {"n": 1, "seed": 3, "settings": SamplingSettings(text_guidance_scale=5.0)}
    assert (tmp_path / "edits" / "color_alter" / "k3.png").is_file()

    again = FakePolicy(delta=99)
    rerun = evaluate_policy(again, GEditBenchmark(), items, ScriptedJudge(_gedit_answer), edits_dir=tmp_path / "edits", reuse_edits=True)
    assert again.calls == [] and rerun.edits["k1"].getpixel((0, 0)) == (60, 60, 60)


@pytest.fixture
def imgedit_dir(tmp_path):
    meta = {
        "11": {"id": "animal/a1.jpg", "prompt": "add a hat", "edit_type": "add"},
        "12": {"id": "animal/a2.jpg", "prompt": "add a cat", "edit_type": "add"},
        "21": {"id": "for_remove/r1.jpg", "prompt": "remove the car", "edit_type": "remove"},
        "31": {"id": "style/s1.jpg", "prompt": "make it ukiyo-e", "edit_type": "style"},
    }
    (tmp_path / "basic_edit.json").write_text(json.dumps(meta))
    for i, rec in enumerate(meta.values()):
        path = tmp_path / "Benchmark" / "singleturn" / rec["id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        solid(30 * i).save(path)
    prompts = {t: f"RUBRIC {t}: grade <edit_prompt> now" for t in IMGEDIT_EDIT_TYPES}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    return tmp_path


IMGEDIT_ANSWERS = {"11": (4, 3, 2), "12": (5, 5, 5), "21": (1, 2, 3), "31": None}


def _imgedit_answer(request):
    scores = IMGEDIT_ANSWERS[request.request_id.split("/")[0]]
    if scores is None:
        return None
    a, b, c = scores
    return f"Brief reasoning: ok\nCompliance: {a}\nSeamlessness: {b}\nFidelity: {c}"


def test_imgedit_item_mean_then_type_mean_then_over_types(imgedit_dir):
    prompts, source = resolve_imgedit_prompts("auto", imgedit_dir)
    assert source.endswith("prompts.json")
    items = load_imgedit_bench(imgedit_dir)
    judge = ScriptedJudge(_imgedit_answer)
    report = evaluate_policy(FakePolicy(), ImgEditBenchmark(prompts), items, judge).report
    by_name = {g.name: g for g in report.groups}
    assert by_name["add"].metrics["score"] == pytest.approx((3.0 + 5.0) / 2)
    assert by_name["remove"].metrics["score"] == pytest.approx(2.0)
    assert by_name["style"].metrics == {} and by_name["style"].n_failures == 1
    assert report.overall["score"] == pytest.approx((4.0 + 2.0) / 2)  # style excluded, not zero
    assert any("every item failed" in n and "style" in n for n in report.notes)
    assert judge.seen[0].prompt == "RUBRIC add: grade add a hat now"
    assert [im.getpixel((0, 0)) for im in judge.seen[0].images] == [(0, 0, 0), (10, 10, 10)]
    md = report.to_markdown()
    assert "| score | 4.000 | 2.000 | - | 3.000 |" in md and "| failures | 0 | 0 | 1 | 1 |" in md


def test_builtin_imgedit_prompts_cover_all_types(imgedit_dir):
    prompts, source = resolve_imgedit_prompts("builtin", imgedit_dir)
    assert source == "builtin" and set(prompts) == set(IMGEDIT_EDIT_TYPES)
    assert all("<edit_prompt>" in p for p in prompts.values())


def test_eval_hook_on_a_fixed_subset(gedit_dir):
    items = load_gedit_bench(gedit_dir, "en")
    subset = fixed_subset(items, per_group=1, seed=0)
    assert subset == fixed_subset(items, per_group=1, seed=0)
    assert sorted(i.group for i in subset) == ["background_change", "color_alter"]
    hook = PolicyBenchmarkHook("gedit", GEditBenchmark(), subset, ScriptedJudge(_gedit_answer), every_n_steps=5, num_images=1)
    assert isinstance(hook, EvalHook)
    result = hook(FakePolicy(), step=10)
    assert result.n_items == 2 and len(result.images) == 1
    assert "gedit/SC/background_change" in result.metrics
    assert result.metrics["gedit/overall"] == result.metrics["gedit/O"]
    assert result.metrics["gedit/failures"] == float(result.n_failures)
    assert "gedit/intersection/O" in result.metrics  # every fixture row has Intersection_exist = true


def test_eval_hook_with_the_tiny_omnigen2_pipeline(imgedit_dir):
    tiny = pytest.importorskip("policies.omnigen2.tiny")
    prompts, _ = resolve_imgedit_prompts("builtin", imgedit_dir)
    items = fixed_subset(load_imgedit_bench(imgedit_dir), per_group=1, seed=0)
    judge = ScriptedJudge(lambda r: "Brief reasoning: ok\nA: 3\nB: 2\nC: 1")
    hook = PolicyBenchmarkHook(
        "imgedit", ImgEditBenchmark(prompts), items, judge, every_n_steps=1, num_images=2,
        edit_kwargs={"num_inference_steps": 2, "height": 16, "width": 16},
    )
    result = hook(tiny.build_tiny_pipeline(seed=0), step=0)
    assert result.metrics["imgedit/overall"] == pytest.approx(2.0) and result.n_failures == 0
    assert [im.size for _, im in result.images] == [(16, 16), (16, 16)]
    assert len(judge.seen) == 3 and all(len(r.images) == 2 for r in judge.seen)
