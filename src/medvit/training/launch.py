"""Several DDP processes started from inside a running Python process (a Kedro node).

`torchrun` wraps a whole program; a Kedro node is one function call inside a larger run, so the
loop starts its own workers instead, with torch's elastic launcher in-process (the launcher
`torchrun` itself uses; ultralytics does the same for its DDP workers). Each worker receives
the pickled model, task and datasets, joins the process group from the environment the launcher
sets (RANK, WORLD_SIZE, LOCAL_RANK) and runs the ordinary loop. Messages a worker sends (rank
0's per-epoch metrics) are delivered to a callback in the caller's main thread while training
runs, so the caller's MLflow run sees them live; rank 0's return value comes back at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import torch
from torch.distributed.elastic.multiprocessing.errors import record
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from medvit.training.config import TrainConfig

Send = Callable[[Any], None]


def launched() -> bool:
    """True inside a process started by torchrun or by `run_processes`."""
    return "LOCAL_RANK" in os.environ


def process_plan(config: TrainConfig) -> tuple[int, list[int] | None] | None:
    """(processes, CUDA device indices or None on CPU) that `config.devices` asks this call to
    start; None when this call trains in its own process."""
    if config.devices is None or launched():
        return None
    cuda = config.device != "cpu" and torch.cuda.is_available()
    if config.devices == "auto":
        count = torch.cuda.device_count() if cuda else 0
        return (count, list(range(count))) if count > 1 else None
    if config.device == "cpu":
        return len(config.devices), None
    if not cuda:
        raise ValueError(
            f"devices {config.devices} names CUDA devices, but CUDA is not available; set"
            f" device: cpu to train in {len(config.devices)} CPU processes (gloo), or devices:"
            " null for one process"
        )
    count = torch.cuda.device_count()
    unknown = [index for index in config.devices if index >= count]
    if unknown:
        raise ValueError(
            f"devices {config.devices}: no CUDA device {unknown} (this machine has {count}:"
            f" {list(range(count))})"
        )
    return len(config.devices), list(config.devices)


@record  # a worker's exception and traceback reach the caller's ChildFailedError
def _bootstrap(
    entry: Callable[..., Any],
    args: tuple,
    cuda_devices: list[int] | None,
    processes: int,
    messages: multiprocessing.Queue,
) -> Any:
    if cuda_devices is not None:  # before CUDA starts: local rank r then runs on cuda:r
        if torch.cuda.is_initialized():
            raise RuntimeError(
                "CUDA started in a DDP worker before it chose its device: something passed to"
                " fit holds CUDA tensors; pass the model, task and data on the CPU"
            )
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, cuda_devices))
    else:  # CPU processes share the cores rather than each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    try:
        return entry(*args, messages.put)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_processes(
    entry: Callable[..., Any],
    args: tuple,
    processes: int,
    cuda_devices: list[int] | None,
    on_message: Callable[[Any], None],
) -> Any:
    """`entry(*args, send)` in `processes` DDP processes; rank 0's return value.

    `entry` must be a module-level function and `args` picklable (workers are spawned).
    `send(message)` in a worker calls `on_message(message)` here, in this thread, in order.
    A failing worker stops all of them and raises torch's `ChildFailedError` with its traceback.
    """
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=f"medvit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        start_method="spawn",
    )
    messages = multiprocessing.get_context("spawn").Queue()
    outcome: dict[str, Any] = {}

    def launch_and_wait() -> None:
        try:
            returned = elastic_launch(launch, _bootstrap)(
                entry, args, cuda_devices, processes, messages
            )
            outcome["value"] = returned[0]
        except BaseException as error:
            outcome["error"] = error
        finally:
            messages.put(None)  # workers never send None: it marks the end

    # the launcher waits in a thread so that callbacks run here (MLflow's active run is
    # thread-local); the launcher's signal handlers are then not installed, as they need the
    # main thread, and an interrupt reaches the workers through the terminal's process group
    waiter = threading.Thread(target=launch_and_wait, name="medvit-ddp-launcher", daemon=True)
    waiter.start()
    while (message := messages.get()) is not None:
        on_message(message)
    waiter.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
