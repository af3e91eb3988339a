"""Where and how a run executes: device, precision, seeding and the distributed process group.

Distribution is detected from the environment: `torchrun`, or `fit` itself for
`TrainConfig.devices` (`medvit.training.launch`), sets RANK, WORLD_SIZE and LOCAL_RANK, so the
same code runs alone or as one of N processes (NCCL on CUDA, gloo on CPU) without changes.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from medvit.training.config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    """The resolved execution settings of one process."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = full fp32
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def select_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for, but CUDA is not available")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", _env_int("LOCAL_RANK", 0))


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA when asked or `auto`; CPU stays fp32 (bf16 matmuls are slow there)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def init_runtime(config: TrainConfig) -> Runtime:
    """Join the process group when launched by torchrun; a no-op for a single process."""
    device = select_device(config.device)
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Runtime(device, resolve_dtype(config.precision, device), rank, world_size)


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (all devices): augmentation and dropout draw from these."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """One seed per (run, epoch, rank), so an epoch replays identically after a resume."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def all_gather_objects(value: object, runtime: Runtime) -> list[object]:
    """Every rank's `value`, in rank order; `[value]` without a process group."""
    if not runtime.distributed:
        return [value]
    gathered: list[object] = [None] * runtime.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
