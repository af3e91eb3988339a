"""A run that test_kill_resume.py SIGKILLs mid-epoch: it announces the moment, then waits.

Usage: kill_worker.py CHECKPOINT_DIR READY_FILE THREADS. In epoch 2, after two steps, the worker
writes READY_FILE and sleeps; the test kills it there, with epoch 1's checkpoint on disk.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from synthetic import datasets, tiny_cnn
from test_kill_resume import CONFIG, EPOCH_KILLED, IDENTITY

from medvit.training import ClassificationTask, fit


class _StallingTask(ClassificationTask):
    def __init__(self, ready: Path) -> None:
        super().__init__()
        self.ready, self.epoch, self.steps = ready, 0, 0

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch, self.steps = epoch, 0

    def training_step(self, model, batch):
        self.steps += 1
        if self.epoch == EPOCH_KILLED and self.steps == 3:
            self.ready.write_text("mid-epoch")
            time.sleep(120)
        return super().training_step(model, batch)


def main(folder: str, ready: str, threads: str) -> None:
    torch.set_num_threads(int(threads))
    train, val = datasets()
    config = CONFIG.model_copy(update={"checkpoint_dir": folder})
    fit(tiny_cnn(), _StallingTask(Path(ready)), train, val, config, identity=IDENTITY)


if __name__ == "__main__":
    main(*sys.argv[1:])
