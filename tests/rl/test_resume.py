"""Resume after the driver is killed with SIGKILL: continues at the checkpoint, no instruction lost or repeated."""

import os
import signal
import subprocess
import sys
import time

import pytest

from editrl.jsonl import read_jsonl
from rl.checkpoint import latest_checkpoint, load_checkpoint
from rl.data import InstructionDataset
from tests.rl.helpers import REPO, TOY, write_toy_instructions

pytestmark = pytest.mark.slow


def _last_entry_per_step(path):
    lines = read_jsonl(path)
    return lines, {entry["step"]: entry for entry in lines}


def test_resume_after_kill_9(tmp_path):
    data = write_toy_instructions(tmp_path / "world", 8)
    out = tmp_path / "run"
    steps = 4
    args = [
        sys.executable, str(REPO / "launch" / "flow_grpo_jrm.py"), "--config", str(TOY), f"data.train_path={data}",
        f"output_dir={out}", f"grpo.num_steps={steps}", "checkpoint.every_n_steps=1", "checkpoint.keep_last=10",
        "logging.wandb=false", "logging.progress_bar=false",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline"}
    with open(tmp_path / "first.log", "w") as log:
        # own session: SIGKILL to the group takes the driver and the local cluster it started, like a lost node
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            ckpt = latest_checkpoint(out)
            if ckpt is not None and load_checkpoint(ckpt).state.step >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = load_checkpoint(latest_checkpoint(out)).state.step
    assert 2 <= killed_at < steps
    first_lines, _ = _last_entry_per_step(out / "rounds.jsonl")

    second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"at step {killed_at}" in second.stderr
    lines, by_step = _last_entry_per_step(out / "rounds.jsonl")
    resumed = lines[len(first_lines):]
    assert resumed[0]["step"] == killed_at
    assert [e["step"] for e in resumed] == list(range(killed_at, steps))
    assert sorted(by_step) == list(range(steps))
    per_step = 2  # toy preset: instructions_per_step
    trained = [rid for s in range(steps) for rid in by_step[s]["record_ids"]]
    expected = [r.record_id for r in InstructionDataset.from_jsonl(data, seed=0).take(steps * per_step)]
    assert trained == expected
    final = load_checkpoint(latest_checkpoint(out))
    assert final.state.step == steps and final.state.adapter_version == steps
