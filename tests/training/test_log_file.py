"""A training run whose console goes to a file (CI, nohup, a scheduler) logs lines, not frames."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from synthetic import datasets, tiny_cnn
from medvit.training import ClassificationTask, TrainConfig, fit
train, val = datasets()
config = TrainConfig(epochs=2, batch_size=16, device="cpu", progress=True)
fit(tiny_cnn(), ClassificationTask(), train, val, config)
"""


def test_progress_off_a_terminal_is_one_line_per_epoch(tmp_path: Path):
    log = tmp_path / "train.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), sys.path[0]])}
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-c", SCRIPT],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            check=True,
            timeout=300,
        )
    text = log.read_text()
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if line.startswith("medvit.training.loop: epoch")]
    assert [line.split()[2] for line in epochs] == ["1/2", "2/2"]
    assert "train_loss=" in epochs[0]
