"""`ray job submit --working-dir .` against a Ray head this test starts: the run joins that cluster and finishes.

The launcher does not edit ``sys.path``: the job finds the project because Ray puts the uploaded working
directory first on the job's ``PYTHONPATH`` (the head gets no ``PYTHONPATH`` of ours).

Everything talks to the head through the ``ray`` CLI, as a user would. The head runs with token
authentication on (Ray's default for ``ray start``) using a token this test generates in its own temp dir,
so neither ``~/.ray`` nor any other Ray instance on the machine is read or touched.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rl.checkpoint import latest_checkpoint
from tests.rl.helpers import REPO, write_toy_instructions

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
EXCLUDES = [".venv", "runs", ".git", "**/__pycache__", ".pytest_cache", ".ruff_cache", "wandb", "*.egg-info"]
ACTOR_CLASSES = {"PolicySampler", "RewardActor", "LearnerWorker"}


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now on 127.0.0.1 (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _processes_under(temp_dir: str) -> list[int]:
    """Pids whose command line names ``temp_dir`` (every process of the head started with it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if temp_dir in cmdline:
                pids.append(int(entry.name))
    return pids


def _stop_head(head: subprocess.Popen, temp_dir: str) -> None:
    """Stop exactly the head this test started: its process group, then any stray process of its temp dir."""
    for sig, grace in ((signal.SIGTERM, 40.0), (signal.SIGKILL, 10.0)):
        if head.poll() is None:
            os.killpg(head.pid, sig)
            try:
                head.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
    deadline = time.monotonic() + 15
    while _processes_under(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _processes_under(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ray(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head with the dashboard / job server on free 127.0.0.1 ports, its own temp dir and auth token.

    Yields (dashboard address, GCS port, environment for ``ray`` CLI calls against it).
    """
    temp_dir = tempfile.mkdtemp(prefix="rayjob_", dir="/tmp")  # short: Ray's socket paths have a length limit
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    gcs, dashboard, client, agent_http, agent_grpc, metrics, runtime_env = _free_ports(7)
    dropped = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    args = [
        str(BIN / "ray"), "start", "--head", "--block", "--port", str(gcs), "--num-cpus", "2",
        "--include-dashboard=true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent_http),
        "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
        "--runtime-env-agent-port", str(runtime_env), "--temp-dir", temp_dir, "--disable-usage-stats",
    ]
    address = f"http://127.0.0.1:{dashboard}"
    log_path = tmp_path / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while _ray(env, "job", "list", "--address", address).returncode != 0:
                assert head.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "job server did not come up:\n" + log_path.read_text()[-3000:]
                time.sleep(1.0)
            yield address, gcs, env
        finally:
            _stop_head(head, temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)
    assert not _processes_under(temp_dir)


def test_ray_job_submit_runs_on_the_submitted_cluster(tmp_path, ray_head):
    address, gcs_port, env = ray_head
    data = write_toy_instructions(tmp_path / "world", 4)
    out = tmp_path / "run"
    submission_id = f"editrl-test-{secrets.token_hex(4)}"
    runtime_env = {
        "excludes": EXCLUDES,
        "env_vars": {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    }
    submit = _ray(
        env, "job", "submit", "--address", address, "--submission-id", submission_id, "--working-dir", ".",
        "--runtime-env-json", json.dumps(runtime_env), "--",
        sys.executable, "launch/flow_grpo_jrm.py", "--config", "configs/toy.yaml", f"data.train_path={data}",
        f"output_dir={out}", "grpo.num_steps=1", "logging.wandb=false", "logging.progress_bar=false",
        timeout=300,
    )
    logs = _ray(env, "job", "logs", "--address", address, submission_id).stdout
    jobs = json.loads(_ray(env, "list", "jobs", "--address", address, "--format", "json", "--detail").stdout)
    job = next(j for j in jobs if j["submission_id"] == submission_id)
    assert job["status"] == "SUCCEEDED", submit.stdout[-3000:] + submit.stderr[-3000:] + logs[-3000:]
    assert submit.returncode == 0

    # outputs: the checkpoint of the one round, its log line, and the launcher's summary in the job's logs
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.name == "step_00000001"
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rounds] == [0]
    assert json.loads(logs[logs.index('{\n  "output_dir"'):logs.rindex("}") + 1])["steps_completed"] == 1

    # the driver joined this cluster: its actors ran here under the job's id, and no second node appeared
    assert re.search(rf"Connecting to existing Ray cluster at address: [0-9.]+:{gcs_port}\b", logs), logs[-3000:]
    assert "Started a local Ray instance" not in logs
    actors = json.loads(_ray(
        env, "list", "actors", "--address", address, "--format", "json", "--limit", "1000",
        "--filter", f"job_id={job['job_id']}",
    ).stdout)
    assert ACTOR_CLASSES <= {a["class_name"] for a in actors}
    nodes = json.loads(_ray(env, "list", "nodes", "--address", address, "--format", "json").stdout)
    assert len(nodes) == 1

    # the job imported the submitted copy of the project (Ray's working_dir), not this checkout
    probe_id = f"editrl-probe-{secrets.token_hex(4)}"
    probe = _ray(
        env, "job", "submit", "--address", address, "--submission-id", probe_id, "--working-dir", ".",
        "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--",
        sys.executable, "-c", "import launch.flow_grpo_jrm as m; print('LAUNCHER', m.__file__)", timeout=120,
    )
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    probe_logs = _ray(env, "job", "logs", "--address", address, probe_id).stdout
    launcher = re.search(r"LAUNCHER (\S+)", probe_logs)
    assert launcher is not None, probe_logs[-3000:]
    assert "_ray_pkg_" in launcher.group(1) and not launcher.group(1).startswith(str(REPO)), launcher.group(1)
