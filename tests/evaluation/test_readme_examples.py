"""The README's evaluation commands, run as written on tiny stand-ins: a tiny RL run (two checkpoints written
here with the RL checkpoint code), the tiny policy as the base model, a tiny JRM checkpoint, tiny benchmark
releases and a local scripted judge. Only the paths are substituted, and test-only settings appended (the
judge's address, 2 sampling steps at 32 px, output directories)."""

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image

from editrl.config import ConfigError, to_yaml
from editrl.manifest import write_manifest
from launch.evaluate import main
from policies.omnigen2.config import build_pipeline
from policies.policy_config import PolicyConfig
from reward.jrm.model import JRM
from rl.checkpoint import TrainingState, save_checkpoint
from rl.config import ExperimentConfig
from tests.evaluation.fixtures import ScriptedServer, chat_reply, solid, write_editreward_bench, write_gedit

REPO = Path(__file__).resolve().parents[2]


def readme_evaluation_commands() -> list[list[str]]:
    """The ``python launch/evaluate.py ...`` commands of the README's Evaluation section, as argv lists."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    commands = [shlex.split(line) for line in lines]
    assert all(c[:2] == ["python", "launch/evaluate.py"] for c in commands), commands
    return [c[2:] for c in commands]


def write_tiny_rl_run(output_dir: Path) -> dict[int, dict[str, torch.Tensor]]:
    """A tiny RL run with checkpoints at steps 1 and 2 (different adapters); returns step -> adapter."""
    policy_cfg = PolicyConfig(tiny=True, height=32, width=32, num_inference_steps=2, lora_rank=4, lora_alpha=8)
    config_yaml = to_yaml(ExperimentConfig(output_dir=str(output_dir), policy=policy_cfg))
    initial = build_pipeline(policy_cfg).adapter_state_dict()
    adapters = {}
    for step in (1, 2):
        gen = torch.Generator().manual_seed(step)
        adapters[step] = {k: v + 0.3 * torch.randn(v.shape, generator=gen) for k, v in initial.items()}
        state = TrainingState(step=step, data_position=4 * step, adapter_version=step)
        save_checkpoint(output_dir, state, adapters[step], None, {"torch_cpu": torch.get_rng_state()}, config_yaml)
    return adapters


def test_readme_evaluation_commands_run(tmp_path, monkeypatch):
    commands = readme_evaluation_commands()
    assert len(commands) == 3 and [c[0] for c in commands] == ["policy", "policy", "reward"]
    run_dir = tmp_path / "rl_run"
    write_tiny_rl_run(run_dir)
    jrm_dir = tmp_path / "jrm_final"
    JRM.build_tiny(seed=0).save_pretrained(jrm_dir)
    write_gedit(tmp_path / "gedit", [
        {"task_type": g, "key": k, "instruction": f"make it {colour}", "instruction_language": "en", "input_image": solid(v, (32, 32))}
        for g, k, colour, v in [("color_alter", "c1", "red", 40), ("subject-add", "s1", "green", 200)]
    ])
    write_editreward_bench(tmp_path / "bench", [
        {"key": (f"k{i}a", f"k{i}b"), "instruction": "add a hat", "input_image": solid(10, (32, 32)),
         "output_images": [solid(200, (32, 32)), solid(20 * i, (32, 32))], "task_type": "subject-add", "dimension": dim}
        for i, dim in enumerate(["prompt_following", "overall"])
    ])
    substitutions = {
        "runs/omnigen2_jrm_32gpu/checkpoints/latest": str(run_dir / "checkpoints" / "latest"),
        "/data/OmniGen2": "tiny",
        "/data/GEdit-Bench": str(tmp_path / "gedit"),
        "/data/EditReward-Bench": str(tmp_path / "bench"),
        "runs/omnigen2_jrm_32gpu/jrm/final": str(jrm_dir),
    }
    monkeypatch.chdir(REPO)  # the README's relative paths (configs/...) are relative to the repository
    monkeypatch.setenv("EDITRL_TEST_JUDGE_KEY", "k")
    reports = []
    with ScriptedServer([(200, chat_reply('{"score": [7, 5], "reasoning": "ok"}'), {}, 0.0)]) as server:
        for i, argv in enumerate(commands):
            argv = [substitutions.get(a, a) for a in argv]
            assert not [a for a in argv if a.startswith(("/data", "runs/"))], argv  # every placeholder replaced
            out = tmp_path / f"out{i}"
            extra = ["--out", str(out)]
            if argv[0] == "policy":
                extra += [
                    "--set", f"judge.openai.base_url={server.base_url}", "--set", "judge.openai.api_key_env=EDITRL_TEST_JUDGE_KEY",
                    "--set", f"judge.openai.cache_dir={tmp_path / 'cache'}", "--set", "edit.num_inference_steps=2",
                    "--set", "edit.height=32", "--set", "edit.width=32",
                ]
            assert main([*argv, *extra]) == 0, argv
            bench = "gedit" if argv[0] == "policy" else "editreward_bench"
            reports.append((out, json.loads((out / f"{bench}.json").read_text())))
    (rl_out, rl_report), (base_out, base_report), (_, reward_report) = reports
    # the RL command evaluated the newest checkpoint of the run, on the run's (tiny) base model
    assert rl_report["settings"]["rl_step"] == 2 and rl_report["settings"]["checkpoint"] == "tiny"
    assert rl_report["settings"]["rl_checkpoint"] == str((run_dir / "checkpoints" / "step_00000002").resolve())
    assert "rl_step" not in base_report["settings"]
    assert rl_report["n_items"] == base_report["n_items"] == 2 and rl_report["n_failures"] == 0
    assert reward_report["n_items"] >= 1
    # the adapter was in use: the RL policy's edits differ from the base policy's
    rl_edits = sorted((rl_out / "edits").rglob("*.png"))
    base_edits = sorted((base_out / "edits").rglob("*.png"))
    assert [p.name for p in rl_edits] == [p.name for p in base_edits] == ["c1.png", "s1.png"]
    for a, b in zip(rl_edits, base_edits, strict=True):
        assert Image.open(a).tobytes() != Image.open(b).tobytes()


@pytest.mark.parametrize("how", ["run", "checkpoints", "latest", "step"])
def test_every_name_of_an_rl_checkpoint_loads_its_adapter(tmp_path, how):
    from rl.run_checkpoint import find_rl_checkpoint, load_rl_policy

    run_dir = tmp_path / "run"
    adapters = write_tiny_rl_run(run_dir)
    path = {"run": run_dir, "checkpoints": run_dir / "checkpoints", "latest": run_dir / "checkpoints" / "latest",
            "step": run_dir / "checkpoints" / "step_00000001"}[how]
    step = 1 if how == "step" else 2
    assert find_rl_checkpoint(path) == run_dir / "checkpoints" / f"step_{step:08d}"
    loaded = load_rl_policy(path)
    assert loaded.step == step and loaded.policy.adapter_version == step
    got = loaded.policy.adapter_state_dict()
    assert sorted(got) == sorted(adapters[step])
    assert all(torch.equal(got[k], adapters[step][k]) for k in got)
    assert loaded.policy_config.lora_rank == 4 and loaded.policy_config.height == 32


def test_rl_checkpoint_as_lora_and_errors(tmp_path, capsys):
    from rl.run_checkpoint import find_rl_checkpoint, load_rl_policy

    run_dir = tmp_path / "run"
    adapters = write_tiny_rl_run(run_dir)
    from launch.evaluate import _load_policy

    policy, identity = _load_policy("tiny", str(run_dir / "checkpoints" / "step_00000001"), "cpu", "float32")
    assert identity["rl_step"] == 1 and all(torch.equal(v, adapters[1][k]) for k, v in policy.adapter_state_dict().items())
    # not an RL path: None (an OmniGen2 directory, say); an RL run without checkpoints: an error naming it
    assert find_rl_checkpoint(tmp_path) is None
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        find_rl_checkpoint(tmp_path / "empty_run" / "checkpoints" / "latest")
    with pytest.raises(FileNotFoundError, match="not an RL run"):
        load_rl_policy(tmp_path)
    # a recorded base model that is not here: the error says to pass another
    (run_dir / "checkpoints" / "step_00000002" / "config.yaml").write_text(
        (run_dir / "checkpoints" / "step_00000002" / "config.yaml").read_text().replace("checkpoint: null", "checkpoint: /nowhere/OmniGen2", 1)
    )
    write_manifest(run_dir / "checkpoints" / "step_00000002")  # as if the run had been written with that base
    with pytest.raises(ConfigError, match=r"checkpoint: .*/nowhere/OmniGen2.*another base"):
        load_rl_policy(run_dir)
    assert load_rl_policy(run_dir, tiny_base=True).step == 2
