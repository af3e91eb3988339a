"""A training process killed with SIGKILL mid-epoch resumes, and ends bit-identical on CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from synthetic import datasets, tiny_cnn

from medvit.training import ClassificationTask, TrainConfig, fit
from medvit.training.checkpoint import LAST, load_state

WORKER = Path(__file__).with_name("kill_worker.py")
CONFIG = TrainConfig(
    epochs=3, batch_size=16, lr=3e-3, warmup_epochs=1, device="cpu", progress=False
)
IDENTITY = {"data": "synthetic", "task": "cross_entropy"}
EPOCH_KILLED = 1


def _kill_mid_epoch(folder: Path, ready: Path) -> int:
    """Start the worker, SIGKILL it once it stalls inside EPOCH_KILLED; its return code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parent), sys.path[0]])}
    threads = str(torch.get_num_threads())  # the same kernels as this process: same bits
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(folder), str(ready), threads],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        if worker.poll() is not None:
            raise AssertionError(f"the worker ended before the kill: {worker.stderr.read()}")
        if time.monotonic() > deadline:
            worker.kill()
            raise AssertionError("the worker never reached the middle of the epoch")
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    return worker.wait(timeout=30)


def test_sigkilled_run_resumes_and_ends_bit_identical(tmp_path):
    folder, ready = tmp_path / "checkpoints", tmp_path / "ready"
    assert _kill_mid_epoch(folder, ready) == -signal.SIGKILL
    assert load_state(folder / LAST)["epoch"] == EPOCH_KILLED - 1  # the last finished epoch

    train, val = datasets()
    config = CONFIG.model_copy(update={"checkpoint_dir": str(folder)})
    resumed = fit(tiny_cnn(), ClassificationTask(), train, val, config, identity=IDENTITY)
    uninterrupted = fit(tiny_cnn(), ClassificationTask(), train, val, CONFIG, identity=IDENTITY)

    assert resumed.resumed_at == EPOCH_KILLED
    expected, actual = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    losses = [(m["train_loss"], m["val_loss"]) for m in uninterrupted.history]
    assert [(m["train_loss"], m["val_loss"]) for m in resumed.history] == losses
