"""`fit`: the one training loop every model in medvit goes through.

Per epoch: seed (run, epoch, rank), train with AdamW under warmup+cosine and gradient clipping,
validate, report metrics to a callback, checkpoint, and decide on early stopping. The same code
runs on CPU (fp32), CUDA (bf16 autocast, channels_last CNNs, pinned workers) and in DDP under
torchrun or in the processes `fit` starts for `TrainConfig.devices` (only rank 0 reports and
writes). Library code: no Kedro, no MLflow; the caller's `on_epoch_end` decides where metrics go.

A rerun never returns a stale model: it continues only an interrupted run of the same identity
(config, initial weights, samples and the caller's parts: data, task, teacher, ...). A finished
run of the same identity is taken instead of retrained only under `reuse_finished`; anything else
trains from scratch and logs which part of the identity changed.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from medvit.console import progress
from medvit.identity import Identity, describe_change
from medvit.training.checkpoint import (
    BEST,
    LAST,
    load_state,
    remove_states,
    run_identity,
    save_atomic,
)
from medvit.training.config import TrainConfig
from medvit.training.data import EpochSampler, make_loader
from medvit.training.launch import process_plan, run_processes
from medvit.training.optim import make_optimizer, warmup_cosine
from medvit.training.runtime import (
    Runtime,
    all_gather_objects,
    barrier,
    epoch_seed,
    init_runtime,
    resolve_dtype,
    seed_everything,
    select_device,
)
from medvit.training.tasks import Batch, Task

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float], int], None]


@dataclass
class FitResult:
    """The trained model (best epoch's weights when early stopping monitors a metric).

    `reused` marks a finished earlier run taken as it was (`reuse_finished`): nothing was trained
    and `reused_from` is the tracking run it was recorded in. `unreported` is the history this
    call did not pass to `on_epoch_end` (epochs before a resume, or all of a reused run), for a
    caller that wants its own record complete.
    """

    model: nn.Module
    identity: Identity
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    resumed_at: int | None = None  # first epoch run in this call after a resume
    stopped_early: bool = False
    reused: bool = False
    reused_from: str | None = None

    @property
    def unreported(self) -> list[dict[str, float]]:
        return self.history if self.reused else self.history[: self.resumed_at or 0]


def is_cnn(model: nn.Module) -> bool:
    """More than a patch-embedding convolution: what benefits from channels_last."""
    return sum(isinstance(module, nn.Conv2d) for module in model.modules()) > 2


def uses_channels_last(model: nn.Module, config: TrainConfig) -> bool:
    return is_cnn(model) if config.channels_last == "auto" else bool(config.channels_last)


def to_device(batch: Batch, runtime: Runtime, channels_last: bool) -> Batch:
    """Tensors to the device; 4-D image batches in channels_last when the model uses it."""
    moved = []
    for tensor in batch:
        tensor = tensor.to(runtime.device, non_blocking=True)
        if channels_last and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        moved.append(tensor)
    return tuple(moved)


def prepare_model(model: nn.Module, config: TrainConfig, runtime: Runtime) -> nn.Module:
    model = model.to(runtime.device)
    if uses_channels_last(model, config):
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.inference_mode()
def run_outputs(
    model: nn.Module,
    task: Task,
    loader: DataLoader,
    runtime: Runtime,
    channels_last: bool,
) -> dict[str, np.ndarray]:
    """`task.validation_step` over a loader in eval mode, concatenated over batches and ranks."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        with runtime.autocast():
            outputs = task.validation_step(model, to_device(batch, runtime, channels_last))
        for name, value in outputs.items():
            value = value.float() if value.is_floating_point() else value
            parts.setdefault(name, []).append(value.cpu().numpy())
    model.train(was_training)
    gathered = all_gather_objects(parts, runtime)
    return {
        name: np.concatenate([chunk for rank_parts in gathered for chunk in rank_parts[name]])
        for name in parts
    }


class _EarlyStopping:
    """Best score so far and epochs without improvement; NaN never counts as an improvement."""

    def __init__(self, config: TrainConfig) -> None:
        self.rule = config.early_stopping
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def update(self, metrics: dict[str, float], epoch: int) -> bool:
        """Record the epoch; True when it is the best one so far."""
        if self.rule is None:
            self.best_epoch = epoch
            return True
        value = metrics.get(self.rule.monitor, math.nan)
        sign = 1.0 if self.rule.mode == "max" else -1.0
        improved = not math.isnan(value) and (
            self.best is None or sign * (value - self.best) > self.rule.min_delta
        )
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.rule is not None and self.bad_epochs >= self.rule.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = (
            state["best"],
            state["best_epoch"],
            state["bad_epochs"],
        )


def _mean_over_ranks(sums: dict[str, float], count: int, runtime: Runtime) -> dict[str, float]:
    gathered = all_gather_objects((sums, count), runtime)
    total = sum(n for _, n in gathered)
    return {name: sum(part[name] for part, _ in gathered) / max(total, 1) for name in sums}


# Steps between the loss shown on a progress bar: showing it reads it, a device sync.
_POSTFIX_EVERY = 25


def _as_double(value: torch.Tensor | float) -> torch.Tensor | float:
    """A step's scalar in float64, on its device when a tensor: summed in the same precision as
    Python floats, so the epoch's means do not depend on where the sum was taken."""
    return value.detach().double() if isinstance(value, torch.Tensor) else float(value)


def _format(metrics: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.4g}" for name, value in metrics.items())


class _Trainer:
    """State of one `fit` call; `fit` below is the public entry point."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_data: Dataset,
        val_data: Dataset | None,
        config: TrainConfig,
        sample_weights: np.ndarray | None,
        identity_parts: Mapping[str, Any],
        tracking_run_id: str | None,
    ) -> None:
        self.config, self.task, self.tracking_run_id = config, task, tracking_run_id
        self.runtime = init_runtime(config)
        seed_everything(config.seed)
        self.channels_last = uses_channels_last(model, config)
        self.model = prepare_model(model, config, self.runtime)
        self.module = self.model  # unwrapped: what is saved, validated and returned
        if self.runtime.distributed:
            device_ids = [self.runtime.device] if self.runtime.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=device_ids)
        # after DDP has broadcast rank 0's weights: every rank computes the same identity
        self.identity = run_identity(
            self.module,
            config,
            len(train_data),
            0 if val_data is None else len(val_data),
            sample_weights,
            identity_parts,
        )
        rank, world = self.runtime.rank, self.runtime.world_size
        self.sampler = EpochSampler(
            len(train_data), weights=sample_weights, seed=config.seed, rank=rank, world_size=world
        )
        self.train_loader = make_loader(
            train_data, config.batch_size, self.sampler, self.runtime, config.num_workers, True
        )
        if len(self.train_loader) == 0:
            raise ValueError(
                f"{len(train_data)} training samples make no full batch of {config.batch_size}"
                f" per process ({world} processes)"
            )
        self.val_loader = None
        if val_data is not None:
            val_sampler = EpochSampler(
                len(val_data), shuffle=False, rank=rank, world_size=world, pad=False
            )
            self.val_loader = make_loader(
                val_data, config.batch_size, val_sampler, self.runtime, config.num_workers
            )
        self.optimizer = make_optimizer(self.module, config, self.runtime.world_size)
        self.scheduler = warmup_cosine(self.optimizer, config, len(self.train_loader))
        self.stopping = _EarlyStopping(config)
        self.history: list[dict[str, float]] = []
        self.best_weights: dict | None = None
        self.stopped = False
        self.reused_from: str | None = None
        self.folder = Path(config.checkpoint_dir) if config.checkpoint_dir else None

    def _why_not_continue(self, state: dict | None) -> str | None:
        """None when `state` may be continued (or, finished, reused); else the reason not to."""
        if not self.config.resume:
            return "resume: false"
        if state is None:
            return "no earlier run"
        if "identity" not in state:
            return "the checkpoint records no run identity"
        change = describe_change(state["identity"], self.identity)
        if change != "unchanged":
            return f"identity {change}"
        if self._finished(state) and not self.config.reuse_finished:
            return "a finished run of the same identity exists and reuse_finished is false"
        return None

    def _finished(self, state: dict) -> bool:
        return state["stopped"] or state["epoch"] + 1 >= self.config.epochs

    def restore(self) -> int:
        """Continue `last.pt` when this run may; the first epoch still to train."""
        if self.folder is None:
            return 0
        state = load_state(self.folder / LAST) if self.config.resume else None
        reason = self._why_not_continue(state)
        barrier(self.runtime)  # every rank has decided before rank 0 removes what it read
        if reason is not None:
            logger.info("Training %s from scratch: %s", self.folder, reason)
            if self.runtime.is_main:
                remove_states(self.folder)
            return 0
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stopping.load(state["stopping"])
        self.history = state["history"]
        best = load_state(self.folder / BEST)
        same = best is not None and best.get("identity") == self.identity
        self.best_weights = best["model"] if same else None
        self.stopped = state["stopped"]
        if self._finished(state):
            self.reused_from = state.get("tracking_run_id") or "unknown"
            logger.info(
                "Reusing the finished run in %s (tracking run %s): reuse_finished is true",
                self.folder,
                self.reused_from,
            )
            return self.config.epochs
        logger.info("Resuming %s after epoch %d", self.folder, state["epoch"] + 1)
        return state["epoch"] + 1

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.sampler.set_epoch(epoch)
        sums: dict[str, torch.Tensor | float] = {}
        count, started = 0, time.perf_counter()
        batches = progress(
            self.train_loader,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            unit="batch",
            enabled=self.config.progress and self.runtime.is_main,
            every=None,  # off a terminal, `run`'s line per epoch is the progress
            leave=False,
        )
        shown = not getattr(batches, "disable", True)
        for step, batch in enumerate(batches):
            batch = to_device(batch, self.runtime, self.channels_last)
            with self.runtime.autocast():
                loss, extra = self.task.training_step(self.model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
            self.optimizer.step()
            self.scheduler.step()
            size = len(batch[0])
            count += size
            # summed where they are: reading a CUDA value waits for its step, and a loop that
            # waits every step cannot queue the next one while the GPU runs this one
            for name, value in {"loss": loss.detach(), **extra}.items():
                sums[name] = sums.get(name, 0.0) + _as_double(value) * size
            if shown and step % _POSTFIX_EVERY == 0:
                batches.set_postfix(loss=f"{loss.item():.4f}")
        totals = {name: float(value) for name, value in sums.items()}  # the epoch's one sync
        seconds = time.perf_counter() - started
        metrics = {
            f"train_{k}": v for k, v in _mean_over_ranks(totals, count, self.runtime).items()
        }
        metrics["train_images_per_s"] = count * self.runtime.world_size / seconds
        metrics["lr"] = max(self.scheduler.get_last_lr())  # the top block's under layer decay
        return metrics

    def validate(self) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        outputs = run_outputs(
            self.module, self.task, self.val_loader, self.runtime, self.channels_last
        )
        return {f"val_{k}": v for k, v in self.task.validation_metrics(outputs).items()}

    def checkpoint(self, epoch: int, improved: bool) -> None:
        weights = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        if improved:
            self.best_weights = weights
        if self.folder is None or not self.runtime.is_main:
            return
        if improved:  # before last.pt: a kill in between replays this epoch, never loses its best
            save_atomic({"identity": self.identity, "model": weights}, self.folder / BEST)
        save_atomic(
            {
                "identity": self.identity,
                "tracking_run_id": self.tracking_run_id,
                "epoch": epoch,
                "stopped": self.stopped,
                "model": weights,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "stopping": self.stopping.state(),
                "history": self.history,
            },
            self.folder / LAST,
        )

    def run(self, on_epoch_end: EpochCallback | None) -> FitResult:
        start = self.restore()
        for epoch in range(start, self.config.epochs):
            seed_everything(epoch_seed(self.config.seed, epoch, self.runtime.rank))
            self.task.on_epoch_start(epoch)
            metrics = {**self.train_epoch(epoch), **self.validate()}
            improved = self.stopping.update(metrics, epoch)
            self.stopped = self.stopping.should_stop
            self.history.append(metrics)
            self.checkpoint(epoch, improved)
            barrier(self.runtime)
            if self.runtime.is_main:
                logger.info("epoch %d/%d %s", epoch + 1, self.config.epochs, _format(metrics))
                if on_epoch_end is not None:
                    on_epoch_end(metrics, epoch)
            if self.stopped:
                logger.info("Early stopping after epoch %d", epoch + 1)
                break
        if self.best_weights is not None:
            self.module.load_state_dict(self.best_weights)
        reused = self.reused_from is not None
        return FitResult(
            model=self.module,
            identity=self.identity,
            history=self.history,
            best_epoch=self.stopping.best_epoch,
            resumed_at=start if start > 0 and not reused else None,
            stopped_early=self.stopped,
            reused=reused,
            reused_from=self.reused_from,
        )


def fit(
    model: nn.Module,
    task: Task,
    train_data: Dataset,
    val_data: Dataset | None,
    config: TrainConfig,
    *,
    sample_weights: np.ndarray | None = None,
    on_epoch_end: EpochCallback | None = None,
    identity: Mapping[str, Any] | None = None,
    tracking_run_id: str | None = None,
) -> FitResult:
    """Train `model` on `task`; continue from `config.checkpoint_dir` when it holds this run.

    `sample_weights` (one per training sample) switches to class-balanced sampling with
    replacement. `identity` names what the loop cannot see but the result depends on: a digest of
    the data, the task and loss settings, augmentation, the teacher's weights... (each value any
    canonicalisable object; see `medvit.identity`). The loop adds the config, the initial weights
    and the samples. `tracking_run_id` (e.g. the MLflow run) is stored with the checkpoint, so
    that a later reuse can name the run that trained it. `on_epoch_end(metrics, epoch)` runs on
    rank 0 after each epoch's checkpoint, so what it logs is never ahead of what a resume restores.

    With `config.devices` asking for several processes, `fit` starts them itself (DDP through
    torch's elastic launcher; `medvit.training.launch`): the arguments must then be picklable,
    `on_epoch_end` still runs here, in the caller's process, with rank 0's metrics as each epoch
    ends, and the trained weights are loaded into `model` when training is over (so a callback
    that looks at `model` sees the initial weights until then).
    """
    plan = process_plan(config)
    if plan is not None:
        model.cpu()  # workers pick their own device; CUDA tensors would start CUDA too early
        args = (model, task, train_data, val_data, config, sample_weights, identity)

        def report(message: tuple[dict[str, float], int]) -> None:
            if on_epoch_end is not None:
                on_epoch_end(*message)

        rank0 = run_processes(_fit_in_worker, (*args, tracking_run_id), *plan, report)
        state = torch.load(io.BytesIO(rank0.pop("state")), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return FitResult(model=model, **rank0)
    trainer = _Trainer(
        model, task, train_data, val_data, config, sample_weights, identity or {}, tracking_run_id
    )
    return trainer.run(on_epoch_end)


def _fit_in_worker(
    model: nn.Module,
    task: Task,
    train_data: Dataset,
    val_data: Dataset | None,
    config: TrainConfig,
    sample_weights: np.ndarray | None,
    identity: Mapping[str, Any] | None,
    tracking_run_id: str | None,
    send: Callable[[Any], None],
) -> dict[str, Any] | None:
    """One process started by `fit` for `config.devices`: rank 0 sends each epoch's metrics to
    the caller and returns its result, weights on CPU, for `fit` to put into the caller's model.
    """
    result = fit(
        model,
        task,
        train_data,
        val_data,
        config,
        sample_weights=sample_weights,
        on_epoch_end=lambda metrics, epoch: send((metrics, epoch)),
        identity=identity,
        tracking_run_id=tracking_run_id,
    )
    if int(os.environ["RANK"]) != 0:
        return None
    fields = {name: getattr(result, name) for name in FitResult.__dataclass_fields__}
    weights = io.BytesIO()  # plain bytes: tensors would travel through /dev/shm, often small
    torch.save(fields.pop("model").state_dict(), weights)
    return {"state": weights.getvalue(), **fields}


def predict(
    model: nn.Module, task: Task, data: Dataset, config: TrainConfig
) -> dict[str, np.ndarray]:
    """`task.validation_step` outputs over a dataset, in dataset order, in this process only."""
    device = select_device(config.device)
    runtime = Runtime(device, resolve_dtype(config.precision, device))
    channels_last = uses_channels_last(model, config)
    model = prepare_model(model, config, runtime)
    loader = make_loader(
        data, config.batch_size, EpochSampler(len(data), shuffle=False), runtime, config.num_workers
    )
    return run_outputs(model, task, loader, runtime, channels_last)
