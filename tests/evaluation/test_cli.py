"""launch/evaluate.py as a script, as a module, and end to end with the tiny policy and tiny reward model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch.evaluate import _parser, main, reward_choices
from reward.registry import default_registry
from tests.evaluation.fixtures import ScriptedServer, chat_reply, solid, write_editreward_bench, write_gedit

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [[sys.executable, "launch/evaluate.py"], [sys.executable, "-m", "launch.evaluate"]])
def test_runs_as_script_and_module(command):
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([*command, "reward", "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "editreward_bench" in done.stdout and "tiger_editreward_bench" in done.stdout and "mmrb2" in done.stdout


def test_reward_choices_are_the_registry_kinds_and_judge(capsys):
    assert reward_choices() == (*default_registry().names, "judge")
    for kind in reward_choices():
        args = _parser().parse_args(["reward", "--bench", "mmrb2", "--data", "d", "--reward", kind])
        assert args.reward == kind
    with pytest.raises(SystemExit):
        _parser().parse_args(["reward", "--bench", "mmrb2", "--data", "d", "--reward", "no_such_reward"])
    assert "no_such_reward" in capsys.readouterr().err


def test_wrong_layout_exits_with_the_expected_path(tmp_path, capsys):
    code = main(["reward", "--bench", "mmrb2", "--data", str(tmp_path), "--reward", "jrm", "--checkpoint", "tiny"])
    assert code == 2
    assert str(tmp_path / "edit.json") in capsys.readouterr().err


def test_policy_gedit_with_tiny_policy_and_local_judge(tmp_path, monkeypatch):
    # distinct sources and instructions: every judge request differs, so none is served from the cache
    write_gedit(tmp_path / "gedit", [
        {"task_type": g, "key": k, "instruction": f"make it {colour}", "instruction_language": "en",
         "input_image": solid(value, (32, 32))}
        for g, k, colour, value in [("color_alter", "c1", "red", 40), ("color_alter", "c2", "blue", 120),
                                    ("subject-add", "s1", "green", 200)]
    ])
    monkeypatch.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    out = tmp_path / "out"
    with ScriptedServer([(200, chat_reply('{"score": [6, 8], "reasoning": "ok"}'), {}, 0.0)]) as server:
        code = main([
            "policy", "--bench", "gedit", "--data", str(tmp_path / "gedit"), "--checkpoint", "tiny", "--out", str(out),
            "--max-items-per-group", "1", "--set", f"judge.openai.base_url={server.base_url}",
            "--set", "judge.openai.api_key_env=EDITRL_TEST_JUDGE_KEY", "--set", f"judge.openai.cache_dir={tmp_path / 'cache'}",
            "--set", "edit.num_inference_steps=2", "--set", "edit.height=32", "--set", "edit.width=32",
        ])
        assert code == 0
        assert len(server.bodies) == 4  # 2 items x (SC, PQ)
    report = json.loads((out / "gedit.json").read_text())
    assert report["n_items"] == 2 and report["n_failures"] == 0
    assert report["overall"]["SC"] == 6 and report["overall"]["PQ"] == 6 and report["overall"]["O"] == pytest.approx(6.0)
    markdown = (out / "gedit.md").read_text()
    assert "| O |" in markdown and "evaluated 2 of the benchmark's 606 samples" in markdown
    assert sorted(p.name for p in (out / "edits").rglob("*.png")) == ["c1.png", "s1.png"]
    assert Path(report["settings"]["edits_dir"]).parent == out / "edits"


def test_reward_editreward_bench_with_tiny_jrm(tmp_path):
    pytest.importorskip("reward.registry")
    write_editreward_bench(tmp_path / "bench", [
        {"key": (f"k{i}a", f"k{i}b"), "instruction": "add a hat", "input_image": solid(10, (32, 32)),
         "output_images": [solid(200, (32, 32)), solid(20 * i, (32, 32))], "task_type": task, "dimension": dim}
        for i, (task, dim) in enumerate([("subject-add", "prompt_following"), ("subject-add", "overall"), ("extract", "consistency")])
    ])
    out = tmp_path / "out"
    code = main(["reward", "--bench", "editreward_bench", "--data", str(tmp_path / "bench"), "--reward", "jrm",
                 "--checkpoint", "tiny", "--out", str(out), "--batch-size", "2"])
    assert code == 0
    report = json.loads((out / "editreward_bench.json").read_text())
    assert report["n_items"] == 3 and [g["name"] for g in report["groups"]] == ["subject-add", "extract"]
    for value in report["overall"].values():
        assert 0.0 <= value <= 1.0


def test_reward_tiger_and_mmrb2_with_tiny_jrm(tmp_path):
    pytest.importorskip("reward.registry")
    images = tmp_path / "images"
    images.mkdir()
    for v in (10, 90, 170):
        solid(v, (32, 32)).save(images / f"{v}.png")
    (tmp_path / "EditReward_Bench_3pair.json").write_text(json.dumps([
        {"prompt": "add a hat", "path_src": "images/10.png", "paths_generated": ["images/90.png", "images/170.png", "images/10.png"],
         "human_vote": {"ranking": "B>A>C"}},
    ]))
    content = [["image", "images/90.png"]]
    (tmp_path / "edit.json").write_text(json.dumps({"pairs": [
        {"id": "p1", "prompt_content": [["text", "add a hat"], ["image", "images/10.png"]], "chosen": "A",
         "response_a": {"response_content": content}, "response_b": {"response_content": [["image", "images/170.png"]]}},
    ]}))
    for bench, stem in (("tiger_editreward_bench", "tiger_editreward_bench"), ("mmrb2", "mmrb2_edit")):
        out = tmp_path / bench
        code = main(["reward", "--bench", bench, "--data", str(tmp_path), "--reward", "jrm", "--checkpoint", "tiny", "--out", str(out)])
        assert code == 0
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["n_items"] == 1 and report["settings"]["reward"] == "jrm"
        assert 0.0 <= report["overall"][report["metric_names"][0]] <= 1.0


def test_judge_as_reward_model_on_mmrb2_counts_failures(tmp_path, monkeypatch, capsys):
    for name in ("in", "a", "b"):
        solid(50, (16, 16)).save(tmp_path / f"{name}.png")
    (tmp_path / "edit.json").write_text(json.dumps({"pairs": [
        {"id": "p1", "prompt_content": [["text", "add a hat"], ["image", "in.png"]], "chosen": "A",
         "response_a": {"response_content": [["image", "a.png"]]}, "response_b": {"response_content": [["image", "b.png"]]}},
    ]}))
    monkeypatch.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    with ScriptedServer([(200, chat_reply("I refuse."), {}, 0.0)]) as server:
        judge_yaml = tmp_path / "judge.yaml"
        judge_yaml.write_text(
            f"kind: openai\nopenai:\n  base_url: {server.base_url}\n  api_key_env: EDITRL_TEST_JUDGE_KEY\n"
            f"  max_attempts: 2\n  backoff_initial_s: 0.0\n  cache_dir: {tmp_path / 'cache'}\n"
        )
        code = main(["reward", "--bench", "mmrb2", "--data", str(tmp_path), "--reward", "judge",
                     "--judge-config", str(judge_yaml), "--out", str(tmp_path / "out")])
        assert len(server.bodies) == 8  # 2 images x (SC, PQ) x 2 attempts
    assert code == 1 and "every item failed" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "mmrb2_edit.json").read_text())
    assert (report["n_items"], report["n_failures"], report["overall"]) == (1, 1, {})
