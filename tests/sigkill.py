"""Kill a worker process with SIGKILL in the middle of a write: what an OOM kill or a crash does.

The worker announces the moment by creating the file named by its last argument, then waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def kill_when_ready(worker: Path, *args: str, ready: Path, timeout_s: float = 120) -> int:
    """Run `worker ARGS READY`, SIGKILL it once READY exists; its process id (it is dead then)."""
    process = subprocess.Popen(
        [sys.executable, str(worker), *args, str(ready)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(f"{worker.name} ended before the kill: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{worker.name} never reached the point where it is killed")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    return process.pid
