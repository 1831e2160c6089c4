"""Worker processes that stop when the process that started them dies.

A ``ProcessPoolExecutor`` worker busy with a long task outlives a parent stopped with ``kill PID`` or SIGKILL
(Ctrl-C reaches the whole process group; a signal to one PID does not) and goes on using the cores, and its
result has no reader. Passing :func:`exit_with_parent` as the pool's ``initializer`` (with the parent's PID in
``initargs``) makes each worker watch its parent and exit once it is gone:

    ProcessPoolExecutor(..., initializer=exit_with_parent, initargs=(os.getpid(),))
"""

from __future__ import annotations

import os
import sys
import threading
import time

PARENT_GONE_EXIT_CODE = 3


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """Start a daemon thread that ends this process (exit status :data:`PARENT_GONE_EXIT_CODE`) once its parent
    is no longer ``parent_pid``: a dead parent's children are adopted by another process, so ``os.getppid()``
    changes. Polls every ``poll_seconds``; a parent already gone ends the process at the first check."""
    if poll_seconds <= 0:
        raise ValueError(f"poll_seconds must be > 0, got {poll_seconds}")

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        print(f"[worker {os.getpid()}] parent process {parent_pid} is gone; stopping", file=sys.stderr, flush=True)
        os._exit(PARENT_GONE_EXIT_CODE)  # no cleanup handlers: they belong to work nobody will collect

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
