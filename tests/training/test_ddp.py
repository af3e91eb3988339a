"""Two CPU processes under torchrun (DDP, gloo): the loop needs no code change to run there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_agree_on_parameters_after_training(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parent), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            str(WORKER),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(rank0["params"], rank1["params"])  # one model, trained in two processes
    assert not torch.equal(rank0["params"], rank0["initial"])  # ... and it did train
    assert rank0["logged"] == [0, 1] and rank1["logged"] == []  # only rank 0 reports
    # metrics are reduced over ranks, so both ranks hold the same history
    assert rank0["history"][-1]["train_loss"] == rank1["history"][-1]["train_loss"]
