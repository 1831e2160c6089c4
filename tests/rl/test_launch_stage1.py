"""The launcher as a user runs it: stage 1 trains the JRM on Ray Train, stage 2 runs Flow-GRPO with that JRM."""

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from PIL import Image

from reward.jrm.model import JRM
from reward.registry import RewardModelConfig, build_reward_model
from rl.checkpoint import latest_checkpoint
from tests.reward.test_annotate import chat_server  # noqa: F401 (the scripted OpenAI-compatible teacher)
from tests.rl.helpers import REPO, TOY, write_toy_instructions
from world.pairs import write_preference_pairs
from world.tasks import make_tasks

LAUNCH = REPO / "launch" / "flow_grpo_jrm.py"
ENV = {
    **os.environ, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
}


@pytest.mark.slow
def test_stage1_trains_the_jrm_and_stage2_scores_with_it(tmp_path, chat_server):  # noqa: F811
    pairs = write_preference_pairs(make_tasks("pairs", 4), tmp_path / "pairs", seed=0, pairs_per_task=2).path
    data = write_toy_instructions(tmp_path / "world", 4)
    jrm_out, rl_out = tmp_path / "jrm", tmp_path / "run"
    rationales = tmp_path / "rationales.jsonl"
    args = [
        sys.executable, str(LAUNCH), "--config", str(TOY), "train_jrm=true",
        f"jrm.data.train_pairs={pairs}", f"jrm.output_dir={jrm_out}", "jrm.epochs=3", "jrm.max_steps=2",
        # stage 1 is joint (alpha 0.7): the rationale file does not exist yet, so the job annotates first
        f"jrm.data.rationales={rationales}", "jrm.annotate.enabled=true", "jrm.annotate.teacher.kind=openai",
        f"jrm.annotate.teacher.base_url={chat_server}", "jrm.annotate.teacher.model=judge",
        "jrm.annotate.teacher.api_key_env=null",
        "jrm.eval_every_steps=1", "jrm.checkpoint_every_steps=1", "jrm.wandb_mode=disabled", "jrm.progress_bar=false",
        f"data.train_path={data}", f"output_dir={rl_out}", "grpo.num_steps=1",
        "logging.wandb=false", "logging.progress_bar=false",
    ]
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    final = jrm_out / "final"
    assert final.is_dir()
    assert len(rationales.read_text().splitlines()) >= 2 and "annotation: " in proc.stderr
    assert "rationales: " in proc.stderr and json.loads((final / "jrm_config.json").read_text())["alpha"] == 0.7
    assert json.loads((jrm_out / "metrics.json").read_text())["final"]["step"] == 2.0
    reward = build_reward_model(RewardModelConfig(kind="jrm", checkpoint=str(final)))
    assert isinstance(reward, JRM)
    record = json.loads(pairs.read_text().splitlines()[0])
    source, edit = (Image.open(pairs.parent / record[k]).convert("RGB") for k in ("path_src", "path1"))
    scores = reward.score([source], [edit], [record["prompt"]])
    assert scores.mu.shape == (1, 2) and scores.mu.isfinite().all()

    summary = json.loads(proc.stdout[proc.stdout.index('{\n  "output_dir"'):proc.stdout.rindex("}") + 1])
    assert summary["steps_completed"] == 1 and summary["output_dir"] == str(rl_out)
    ckpt = latest_checkpoint(rl_out)
    assert ckpt is not None and ckpt.name == "step_00000001"
    recorded = OmegaConf.load(ckpt / "config.yaml")
    assert recorded.train_jrm is True
    assert recorded.reward.checkpoint == str(final)
    assert f"stage 1 done: {final}" in proc.stderr


def test_wrong_key_exits_2_naming_the_key_before_ray_starts(tmp_path):
    data = write_toy_instructions(tmp_path / "world", 2)
    args = [
        sys.executable, str(LAUNCH), "--config", str(TOY), "train_jrm=true", f"data.train_path={data}",
        f"output_dir={tmp_path / 'run'}", "jrm.max_stepz=2",
    ]
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "max_stepz" in proc.stderr
    assert "config error" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists()


def test_joint_stage1_without_rationales_exits_2_naming_the_key_before_ray_starts(tmp_path):
    pairs = write_preference_pairs(make_tasks("pairs", 2), tmp_path / "pairs", seed=0, pairs_per_task=2).path
    data = write_toy_instructions(tmp_path / "world", 2)
    args = [
        sys.executable, str(LAUNCH), "--config", str(TOY), "train_jrm=true", f"data.train_path={data}",
        f"jrm.data.train_pairs={pairs}", f"output_dir={tmp_path / 'run'}", f"jrm.output_dir={tmp_path / 'jrm'}",
        "jrm.data.rationales=null",  # the toy preset names a rationale file (its world_data builds it)
    ]
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "config error: jrm.data.rationales: alpha=0.7 > 0" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "jrm").exists()


def test_unknown_eval_hook_kind_exits_2_naming_the_key_before_stage_1(tmp_path):
    data = write_toy_instructions(tmp_path / "world", 2)
    args = [
        sys.executable, str(LAUNCH), "--config", str(TOY), "train_jrm=true", f"data.train_path={data}",
        f"output_dir={tmp_path / 'run'}", "eval_hooks=[{kind: world_oracle, path: x.jsonl}, {kind: nope, path: y.jsonl}]",
    ]
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "config error: eval_hooks.1.kind: unknown eval hook kind 'nope'" in proc.stderr
    assert "'world_oracle'" in proc.stderr  # the launcher offers the toy world's kind
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists()


def test_train_jrm_with_a_non_jrm_reward_exits_2_from_config_validation(tmp_path):
    data = write_toy_instructions(tmp_path / "world", 2)
    args = [
        sys.executable, str(LAUNCH), "--config", str(TOY), "train_jrm=true", "reward.kind=editreward",
        f"data.train_path={data}", f"output_dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "config error" in proc.stderr and "train_jrm" in proc.stderr and "editreward" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run").exists()
