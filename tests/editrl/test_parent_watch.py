"""Pool workers started with exit_with_parent stop when their parent is killed; without it they outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from editrl.parent_watch import exit_with_parent

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")

PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from editrl.parent_watch import exit_with_parent

def work(pid_file):
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(120)

if __name__ == "__main__":
    pid_file, watch = sys.argv[1], sys.argv[2] == "watch"
    extra = dict(initializer=exit_with_parent, initargs=(os.getpid(), 0.1)) if watch else {}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), **extra) as pool:
        pool.submit(work, pid_file).result()
"""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited child its adopter has not reaped yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def _start_parent(tmp_path: Path, watch: bool) -> tuple[subprocess.Popen, int]:
    script, pid_file = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file), "watch" if watch else "plain"],
                              cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert parent.poll() is None, f"the parent exited early with status {parent.returncode}"
        assert time.monotonic() < deadline, "the worker never started its task"
        time.sleep(0.05)
    return parent, int(pid_file.read_text())


def _wait_until_stopped(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("watch", [True, False], ids=["exit_with_parent", "plain pool"])
def test_a_killed_parents_busy_worker_stops_only_when_it_watches_the_parent(tmp_path, watch):
    parent, worker = _start_parent(tmp_path, watch)
    try:
        assert _running(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        stopped = _wait_until_stopped(worker, 20 if watch else 2)
        assert stopped is watch
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def test_the_poll_interval_must_be_positive():
    with pytest.raises(ValueError, match="poll_seconds"):
        exit_with_parent(os.getppid(), poll_seconds=0)
