"""``evaluate.py self-correct`` and ``evaluate.py analyze`` end to end: a tiny GEdit release, the tiny OmniGen2
policy evaluated by ``evaluate.py policy`` against a local scripted judge, then its saved edits corrected with a
tiny JRM's critiques (judged by a second scripted judge) and analysed with two tiny JRMs."""

import json
import math

import pytest
import torch
from PIL import Image

from launch.evaluate import main
from reward.jrm.analysis import collect_features, jrm_feature_fn, spectrum_stats
from reward.jrm.model import JRM, tiny_jrm_config
from tests.evaluation.fixtures import ScriptedServer, chat_reply, solid, write_gedit

ITEMS = [("color_alter", "c1", "make it red", 40), ("color_alter", "c2", "make it blue", 120),
         ("subject-add", "s1", "add a hat", 200), ("background_change", "b1", "make the sky green", 90)]


def _judge_args(server, cache):
    return ["--set", f"judge.openai.base_url={server.base_url}", "--set", "judge.openai.api_key_env=EDITRL_TEST_JUDGE_KEY",
            "--set", f"judge.openai.cache_dir={cache}"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(tmp, eval_dir, jrm dirs): a policy run on 4 items, every VIEScore O = sqrt(7 * 5)... SC = 5, PQ = 5."""
    tmp = tmp_path_factory.mktemp("selfcorrect")
    write_gedit(tmp / "gedit", [
        {"task_type": g, "key": k, "instruction": text, "instruction_language": "en", "input_image": solid(v, (32, 32))}
        for g, k, text, v in ITEMS
    ])
    jrms = {}
    for name, alpha, seed in (("alpha0", 0.0, 0), ("alpha0.7", 0.7, 1)):
        cfg = tiny_jrm_config()
        cfg.alpha = alpha
        JRM.build_tiny(seed=seed, config=cfg).save_pretrained(tmp / name)
        jrms[name] = tmp / name
    mp = pytest.MonkeyPatch()
    mp.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    with ScriptedServer([(200, chat_reply('{"score": [7, 5], "reasoning": "ok"}'), {}, 0.0)]) as server:
        argv = ["policy", "--bench", "gedit", "--data", str(tmp / "gedit"), "--checkpoint", "tiny", "--out", str(tmp / "eval"),
                *_judge_args(server, tmp / "cache1"), "--set", "edit.num_inference_steps=2", "--set", "edit.height=32",
                "--set", "edit.width=32", "--set", "seed=3"]
        assert main(argv) == 0
    yield tmp, tmp / "eval", jrms
    mp.undo()


def test_self_correct_table3_end_to_end(evaluated, monkeypatch):
    tmp, eval_dir, jrms = evaluated
    monkeypatch.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    with ScriptedServer([(200, chat_reply('{"score": [9, 8], "reasoning": "better"}'), {}, 0.0)]) as server:
        argv = ["self-correct", "--from", str(eval_dir), "--jrm", str(jrms["alpha0.7"]), "--max-new-tokens", "6",
                *_judge_args(server, tmp / "cache2")]
        assert main(argv) == 0
        assert len(server.bodies) == 2 * len(ITEMS)  # SC and PQ of every re-edit
    out = eval_dir / "self_correct"
    result = json.loads((out / "self_correct.json").read_text())
    rows = {r["threshold"]: r for r in result["rows"]}
    # every original O = sqrt(5 * 5) = 5, every re-edit O = sqrt(8 * 8) = 8
    assert [rows[t]["samples"] for t in (7.0, 6.0, 5.0, 4.0, 3.0)] == [4, 4, 0, 0, 0]
    assert rows[7.0]["viescore_delta"] == pytest.approx(3.0) and rows[6.0]["judged"] == 4
    assert rows[5.0]["viescore_delta"] is None and rows[5.0]["jrm_delta"] is None
    # JRM's deltas: the score head on the saved edits and on the re-edits, recomputed here
    jrm = JRM.from_pretrained(jrms["alpha0.7"])
    sources = [solid(v, (32, 32)) for *_, v in ITEMS]
    instructions = [text for _, _, text, _ in ITEMS]
    edits_dir = eval_dir / "edits"
    fingerprint_dir = next(edits_dir.iterdir())
    originals = [Image.open(fingerprint_dir / g / f"{k}.png").convert("RGB") for g, k, _, _ in ITEMS]
    reedits = [Image.open(out / "edits" / "round_1" / g / f"{k}.png").convert("RGB") for g, k, _, _ in ITEMS]
    before = jrm.score(sources, originals, instructions).reward
    after = jrm.score(sources, reedits, instructions).reward
    assert rows[7.0]["jrm_delta"] == pytest.approx(float((after - before).mean()), abs=1e-5)
    items = {i["key"]: i for i in result["items"]}
    for _, key, text, _ in ITEMS:
        assert items[key]["refined_instructions"][0].startswith(text)
        assert items[key]["before"]["O"] == pytest.approx(5.0) and items[key]["after"]["O"] == pytest.approx(8.0)
    # the re-edit used the original run's seed and sampling settings, with the refined instruction
    assert result["settings"]["seed"] == 3 and result["settings"]["edit"]["num_inference_steps"] == 2
    assert result["settings"]["policy"]["checkpoint"] == "tiny"
    assert any(a.tobytes() != b.tobytes() for a, b in zip(originals, reedits) if a.size == b.size)
    assert "| O < 7 | 4 |" in (out / "self_correct.md").read_text()


def test_self_correct_loop_end_to_end(evaluated, monkeypatch):
    tmp, eval_dir, jrms = evaluated
    monkeypatch.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    with ScriptedServer([(200, chat_reply('{"score": [6, 6], "reasoning": "ok"}'), {}, 0.0)]) as server:
        argv = ["self-correct", "--from", str(eval_dir), "--jrm", str(jrms["alpha0.7"]), "--loop", "3",
                "--max-new-tokens", "4", "--thresholds", "11", *_judge_args(server, tmp / "cache3")]
        assert main(argv) == 0
    result = json.loads((eval_dir / "loop_3" / "self_correct.json").read_text())
    assert result["settings"]["select"] == "best_jrm" and result["settings"]["rounds"] == 2
    for item in result["items"]:
        assert len(item["candidates_jrm"]) == 3 and len(item["critiques"]) == 2
        assert item["chosen"] == max(range(3), key=item["candidates_jrm"].__getitem__)
        assert item["jrm_after"] == pytest.approx(max(item["candidates_jrm"]))
        assert item["after"]["O"] == pytest.approx(5.0 if item["chosen"] == 0 else 6.0)
    assert result["rows"][0]["samples"] == 4 and result["rows"][0]["jrm_delta"] >= 0
    assert main(["self-correct", "--from", str(eval_dir), "--jrm", "tiny", "--loop", "1"]) == 2


def test_analyze_end_to_end(evaluated):
    tmp, eval_dir, jrms = evaluated
    out = tmp / "analysis"
    argv = ["analyze", "--from", str(eval_dir), "--checkpoint", f"alpha0={jrms['alpha0']}",
            "--checkpoint", f"alpha0.7={jrms['alpha0.7']}", "--out", str(out), "--batch-size", "3"]
    assert main(argv) == 0
    spectra = json.loads((out / "spectra.json").read_text())
    pca = json.loads((out / "pca.json").read_text())
    summary = json.loads((out / "analysis.json").read_text())
    assert set(spectra) == set(pca["models"]) == {"alpha0", "alpha0.7"}
    assert summary["settings"]["items"] == [k for _, k, _, _ in ITEMS] and summary["settings"]["dtype"] == "float32"
    assert pca["labels"] == [g for g, _, _, _ in ITEMS]
    assert pca["models"]["alpha0"]["disparity"] == 0.0 and len(pca["models"]["alpha0.7"]["coords"]) == len(ITEMS)
    rotation = torch.tensor(pca["models"]["alpha0.7"]["rotation"])
    assert torch.allclose(rotation @ rotation.T, torch.eye(3, dtype=rotation.dtype), atol=1e-6)
    for name in ("spectra.png", "pca.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # h on the saved edits (not training pairs), recomputed here
    fingerprint_dir = next((eval_dir / "edits").iterdir())
    samples = [(solid(v, (32, 32)), Image.open(fingerprint_dir / g / f"{k}.png").convert("RGB"), text) for g, k, text, v in ITEMS]
    h = collect_features(jrm_feature_fn(JRM.from_pretrained(jrms["alpha0"])), samples)
    expected = spectrum_stats(h)
    assert spectra["alpha0"]["effective_rank"] == pytest.approx(expected.effective_rank, rel=1e-4)
    assert spectra["alpha0"]["effective_rank"] == pytest.approx(math.exp(spectra["alpha0"]["spectral_entropy"]))


def test_analyze_in_bfloat16(evaluated):
    tmp, eval_dir, jrms = evaluated
    out = tmp / "analysis_bf16"
    argv = ["analyze", "--from", str(eval_dir), "--checkpoint", f"a={jrms['alpha0']}", "--checkpoint", f"b={jrms['alpha0.7']}",
            "--dtype", "bfloat16", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["settings"]["dtype"] == "bfloat16" and summary["models"]["a"]["num_samples"] == len(ITEMS)
    assert main(["analyze", "--from", str(eval_dir), "--checkpoint", "nodir"]) == 2


def test_readme_self_correct_and_analyze_commands_parse():
    """The README's second Evaluation block (self-correct, the loop, analyze) uses only flags that exist."""
    import re
    import shlex
    from pathlib import Path

    from launch.evaluate import _parser

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[1]
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    commands = [shlex.split(line)[2:] for line in lines]
    assert [c[0] for c in commands] == ["self-correct", "self-correct", "analyze"]
    parsed = [_parser().parse_args(c) for c in commands]
    assert parsed[0].loop is None and parsed[1].loop == 3 and parsed[1].thresholds == [11.0]
    assert parsed[2].checkpoint[0].startswith("alpha0=") and parsed[2].dtype == "bfloat16"


def test_saved_outputs_of_a_moved_run_and_a_missing_edit(evaluated, tmp_path):
    """A run directory moved elsewhere still finds its edits (the fingerprint folder under its own edits/); a
    missing edit is an error naming the item."""
    import shutil

    from rl.benchmarks.saved_outputs import load_policy_outputs

    _, eval_dir, _ = evaluated
    moved = tmp_path / "moved"
    shutil.copytree(eval_dir / "edits", moved / "edits")
    for name in ("gedit.json", "gedit_items.json"):
        shutil.copy(eval_dir / name, moved / name)
    report = json.loads((moved / "gedit.json").read_text())
    report["settings"]["edits_dir"] = "/nowhere/edits/" + next((eval_dir / "edits").iterdir()).name
    (moved / "gedit.json").write_text(json.dumps(report))
    saved = load_policy_outputs(moved)
    assert [s.item.key for s in saved.edits] == [k for _, k, _, _ in ITEMS]
    assert saved.seed == 3 and saved.edit_kwargs["height"] == 32 and saved.edits[0].metrics["O"] == pytest.approx(5.0)
    next((moved / "edits").iterdir()).joinpath("subject-add", "s1.png").unlink()
    with pytest.raises(FileNotFoundError, match="'s1'"):
        load_policy_outputs(moved)
    with pytest.raises(FileNotFoundError, match="evaluate.py policy"):
        load_policy_outputs(tmp_path)


def test_self_correct_reloads_the_rl_checkpoint_the_run_evaluated(tmp_path, monkeypatch):
    """An evaluation of an RL run's ``latest`` checkpoint: self-correct re-edits with that same step's adapter."""
    from tests.evaluation.test_readme_examples import write_tiny_rl_run

    write_tiny_rl_run(tmp_path / "rl_run")
    write_gedit(tmp_path / "gedit", [
        {"task_type": "color_alter", "key": "c1", "instruction": "make it red", "instruction_language": "en", "input_image": solid(40, (32, 32))},
    ])
    JRM.build_tiny(seed=0).save_pretrained(tmp_path / "jrm")
    monkeypatch.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    with ScriptedServer([(200, chat_reply('{"score": [3, 3], "reasoning": "ok"}'), {}, 0.0)]) as server:
        judge = _judge_args(server, tmp_path / "cache")
        assert main(["policy", "--bench", "gedit", "--data", str(tmp_path / "gedit"), "--out", str(tmp_path / "eval"),
                     "--checkpoint", str(tmp_path / "rl_run" / "checkpoints" / "latest"), *judge]) == 0
        assert main(["self-correct", "--from", str(tmp_path / "eval"), "--jrm", str(tmp_path / "jrm"),
                     "--max-new-tokens", "4", *judge]) == 0
    result = json.loads((tmp_path / "eval" / "self_correct" / "self_correct.json").read_text())
    policy = result["settings"]["policy"]
    assert policy["rl_step"] == 2 and policy["checkpoint"] == "tiny"
    assert policy["rl_checkpoint"] == str((tmp_path / "rl_run" / "checkpoints" / "step_00000002").resolve())
    assert result["rows"][0]["samples"] == 1 and result["rows"][0]["viescore_delta"] == pytest.approx(0.0)
