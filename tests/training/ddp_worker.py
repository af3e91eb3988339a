"""One DDP rank for test_ddp.py, started by torchrun: `fit` sees only torchrun's environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from synthetic import datasets, tiny_cnn

from medvit.training import ClassificationTask, TrainConfig, fit


def main(folder: Path) -> None:
    torch.set_num_threads(1)
    train, val = datasets()
    logged: list[int] = []
    rank = int(os.environ["RANK"])
    result = fit(
        tiny_cnn(seed=rank),  # different initial weights: DDP must broadcast rank 0's
        ClassificationTask(),
        train,
        val,
        TrainConfig(epochs=2, batch_size=8, progress=False),
        on_epoch_end=lambda metrics, epoch: logged.append(epoch),
    )
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    initial = torch.cat([p.detach().flatten() for p in tiny_cnn(seed=0).parameters()])
    history = result.history
    torch.save(
        {"params": flat, "initial": initial, "logged": logged, "history": history},
        folder / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
