"""MAE pretraining throughput: `medvit.training.fit` + `MAETask` against a plain loop, same run.

Both sides train the same `MaskedAutoencoderViT` (same seed, 90% masking) on the same synthetic
uint8 slices in a memory-mapped `.npy` (the slice store's format), with the same batch, AdamW
(timm's weight-decay groups, 0.05, betas (0.9, 0.95), lr = 1.5e-4 x batch / 256), per-step warmup
and cosine, and bf16 autocast on CUDA (fp32 on CPU). The plain side is written like
facebookresearch/mae's `engine_pretrain` fed by its `main_pretrain`: RandomResizedCrop(0.5-1)
+ flip + normalise per image in the DataLoader (torchvision v2 on tensors, faster than MAE's
PIL), the learning rate set by hand every step, `loss.item()` and `torch.cuda.synchronize()`
every step, torch's default (foreach) AdamW. medvit reads raw uint8 slices and augments the
whole batch on the device in one `grid_sample`, with fused AdamW, and reads the loss from the
device once per epoch (its sum stays there), so the next step is queued while one runs.

Also measured: the loader alone (medvit's, images/s delivered to the device) and the training
step alone (a fixed batch already on the device): loading keeps up when the first is several
times the second, and `fit`'s rate over the step's rate says how much of the step time the
model got. On CUDA, the GPU busy fraction is measured twice: NVML's utilisation (pynvml, else
`nvidia-smi`) sampled every 100 ms through medvit's timed epochs (all but the first), and the
step's GPU time (CUDA events around steps queued back to back) over `fit`'s wall time per step.

Run: `uv run python benchmarks/mae.py` (CPU: ViT-tiny/16 at 96 px, both sides alternating
`--repeats` times, medians compared), or on a GPU `python benchmarks/mae.py --gpu` (ViT-S/16
at 224 px both sides, then ViT-B/16 through medvit only; sized for about two minutes on one
H100 if ViT-S reaches ~5,000 images/s: lower `--slices` if not).
On a shared CPU, `--threads 1` keeps OpenMP threads from spinning while a neighbour holds the
other core (2 threads under load measured 5-10x slower and far noisier than 1).
Options: --encoder --image-size --store-size --batch-size --slices --epochs --repeats
--decoder-dim --decoder-depth --decoder-heads --workers --threads.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from timm.optim import param_groups_weight_decay
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from medvit.models import MAETask, MaskedAutoencoderViT
from medvit.training import EpochSampler, TrainConfig, fit, make_loader, unlabelled_slices
from medvit.training.data import PIXEL_MEAN, PIXEL_STD, resolve_workers
from medvit.training.optim import make_optimizer
from medvit.training.runtime import Runtime, resolve_dtype, select_device

BASE_LR, BETAS, WEIGHT_DECAY, MASK_RATIO = 1.5e-4, (0.9, 0.95), 0.05, 0.9


def write_store(folder: Path, slices: int, size: int) -> np.ndarray:
    """Smooth random blobs plus noise, uint8, written as the store's `images.npy`."""
    path = folder / "images.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(slices, size, size))
    rng = np.random.default_rng(0)
    rows, cols = np.ogrid[:size, :size]
    base = (96 + 64 * np.sin(rows / 9.0) * np.cos(cols / 13.0)).astype(np.uint8)
    for start in range(0, slices, 1024):
        stop = min(start + 1024, slices)
        images[start:stop] = base + rng.integers(0, 48, (stop - start, size, size), np.uint8)
    images.flush()
    del images
    return np.load(path, mmap_mode="r")


def build_mae(args: argparse.Namespace, encoder: str) -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return MaskedAutoencoderViT(
        encoder,
        img_size=args.image_size,
        in_chans=1,
        mask_ratio=MASK_RATIO,
        decoder_dim=args.decoder_dim,
        decoder_depth=args.decoder_depth,
        decoder_heads=args.decoder_heads,
    )


def rate(value: float) -> str:
    """Images/s: whole numbers on a GPU, two decimals for the slow rates of a small CPU."""
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def median_after_first(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def gpu_uuid(device: torch.device) -> str | None:
    """The GPU's UUID as NVML and nvidia-smi name it: their indices ignore CUDA_VISIBLE_DEVICES."""
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is None:
        return None
    return str(uuid) if str(uuid).startswith("GPU-") else f"GPU-{uuid}"


def nvml_reader(device: torch.device) -> tuple[str, Callable[[], float]] | None:
    """This GPU's utilisation (percent of the last sample period a kernel ran) from NVML."""
    try:
        import pynvml  # nvidia-ml-py: optional, the benchmark falls back to nvidia-smi
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        uuid = gpu_uuid(device)
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        except (pynvml.NVMLError, TypeError, AttributeError):  # no UUID: by index
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        pynvml.nvmlDeviceGetUtilizationRates(handle)
    except pynvml.NVMLError:
        return None
    return "NVML", lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)


def smi_reader(device: torch.device) -> tuple[str, Callable[[], float]]:
    query = ["nvidia-smi", f"--id={gpu_uuid(device) or device.index or 0}",
             "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]  # fmt: skip

    def read() -> float:
        return float(subprocess.run(query, capture_output=True, text=True, timeout=5).stdout)

    return "nvidia-smi", read


class GpuSampler:
    """Utilisation samples of the training GPU every `period_s` in a background thread."""

    def __init__(self, device: torch.device, period_s: float = 0.1) -> None:
        self.period_s, self.samples = period_s, []
        self.source, self._read = nvml_reader(device) or smi_reader(device)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter(), self._read()))
            except Exception as error:  # a failed sample ends the sampling, not the run
                print(f"GPU sampling stopped ({self.source}): {error}", flush=True)
                return
            self._stop.wait(self.period_s)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mean_between(self, start: float, stop: float) -> tuple[float, int]:
        kept = [value for when, value in self.samples if start <= when <= stop]
        return (statistics.mean(kept) if kept else math.nan), len(kept)


def medvit_side(
    args: argparse.Namespace, images: np.ndarray, encoder: str, device: torch.device
) -> tuple[list[float], list[float], tuple[float, int, str]]:
    """Images/s per epoch as `fit` reports them (wall clock), images per CPU-second of this
    process per epoch, and the mean GPU busy % over the epochs after the first (with the number
    of samples and their source)."""
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        base_lr=BASE_LR,
        betas=BETAS,
        weight_decay=WEIGHT_DECAY,
        warmup_epochs=1,
        grad_clip_norm=None,  # MAE pretraining does not clip
        early_stopping=None,
        device=device.type,
        num_workers=args.workers,
        progress=False,
    )
    data = unlabelled_slices(images, np.arange(len(images)))
    per_epoch = len(data) // args.batch_size * args.batch_size
    ends: list[tuple[float, float]] = [(time.perf_counter(), time.process_time())]

    def mark(metrics: dict[str, float], epoch: int) -> None:
        ends.append((time.perf_counter(), time.process_time()))

    sampler = GpuSampler(device) if device.type == "cuda" else contextlib.nullcontext()
    with sampler:
        result = fit(build_mae(args, encoder), MAETask(), data, None, config, on_epoch_end=mark)
    cpu = [per_epoch / (b[1] - a[1]) for a, b in itertools.pairwise(ends)]
    timed = ends[1 if len(ends) > 2 else 0][0], ends[-1][0]  # as `median_after_first`
    busy = (math.nan, 0, "none")
    if isinstance(sampler, GpuSampler):
        busy = (*sampler.mean_between(*timed), sampler.source)
    return [e["train_images_per_s"] for e in result.history], cpu, busy


class ReferenceSlices(Dataset):
    """What `main_pretrain`'s dataset does: each image augmented on its own in a worker."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self._images = path, None
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([PIXEL_MEAN], [PIXEL_STD]),
            ]
        )

    def __len__(self) -> int:
        return len(np.load(self.path, mmap_mode="r"))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        pixels = torch.from_numpy(np.array(self._images[index]))[None]
        return self.transform(pixels), 0


def reference_side(
    args: argparse.Namespace, images: np.ndarray, encoder: str, device: torch.device
) -> tuple[list[float], list[float]]:
    """Images/s (wall clock) and images per CPU-second per epoch of a loop written like MAE's
    `engine_pretrain.train_one_epoch`."""
    model = build_mae(args, encoder).to(device).train()
    groups = param_groups_weight_decay(model, WEIGHT_DECAY, model.no_weight_decay())
    lr = BASE_LR * args.batch_size / 256
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=BETAS)
    workers = resolve_workers(args.workers, Runtime(device, None))
    loader = DataLoader(
        ReferenceSlices(str(images.filename), args.image_size),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    dtype = resolve_dtype("auto", device)
    rates, cpu_rates = [], []
    for epoch in range(args.epochs):
        started, cpu_started, seen = time.perf_counter(), time.process_time(), 0
        for step, (samples, _) in enumerate(loader):
            # MAE's lr_sched.adjust_learning_rate: per-step warmup (1 epoch), then half cosine
            progress = epoch + step / len(loader)
            factor = (
                progress
                if progress < 1
                else 0.5 * (1 + math.cos(math.pi * (progress - 1) / max(args.epochs - 1, 1)))
            )
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            samples = samples.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = model(samples).loss
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise SystemExit(f"Loss is {loss_value}, stopping training")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seen += len(samples)
        rates.append(seen / (time.perf_counter() - started))
        cpu_rates.append(seen / (time.process_time() - cpu_started))
    return rates, cpu_rates


def loader_alone(args: argparse.Namespace, images: np.ndarray, device: torch.device) -> float:
    """Images/s medvit's loader delivers onto the device with no model to feed."""
    runtime = Runtime(device, None)
    data = unlabelled_slices(images, np.arange(len(images)))
    loader = make_loader(
        data, args.batch_size, EpochSampler(len(data)), runtime, args.workers, drop_last=True
    )
    started, seen = time.perf_counter(), 0
    for batch, _ in loader:
        batch = batch.to(device, non_blocking=True)
        seen += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def step_alone(
    args: argparse.Namespace, images: np.ndarray, encoder: str, device: torch.device
) -> tuple[float, float]:
    """Images/s of medvit's training step (augmentation included) on a batch already there,
    steps queued back to back as `fit` queues them; and the GPU seconds per step between CUDA
    events (NaN on CPU)."""
    model = build_mae(args, encoder).to(device).train()
    config = TrainConfig(batch_size=args.batch_size, base_lr=BASE_LR, betas=BETAS)
    optimizer = make_optimizer(model, config)
    task, dtype = MAETask(), resolve_dtype("auto", device)
    batch = (torch.from_numpy(np.array(images[: args.batch_size]))[:, None].to(device),)

    def steps(count: int) -> None:
        for _ in range(count):
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss, _ = task.training_step(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loss.item()  # the device has finished: the wall clock covers the steps

    steps(3)  # warm-up: kernels chosen, memory allocated
    count, cuda = args.step_repeats, device.type == "cuda"
    if cuda:
        events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        events[0].record()
    started = time.perf_counter()
    steps(count)
    seconds = time.perf_counter() - started
    gpu_step = math.nan
    if cuda:
        events[1].record()
        events[1].synchronize()
        gpu_step = events[0].elapsed_time(events[1]) / 1000 / count
    return count * args.batch_size / seconds, gpu_step


def measure(args: argparse.Namespace, images: np.ndarray, encoder: str, compare: bool) -> None:
    device = select_device()
    name = f"{encoder} {args.image_size}px batch {args.batch_size}"
    loader_rate = loader_alone(args, images, device)
    step_rate, gpu_step = step_alone(args, images, encoder, device)
    print(f"[{name}] loader alone: {rate(loader_rate)} images/s; training step alone:"
          f" {rate(step_rate)} images/s; loader/step = {loader_rate / step_rate:.1f}x")  # fmt: skip
    plain, ours, plain_cpu, ours_cpu, busy = [], [], [], [], []
    for repeat in range(args.repeats if compare else 1):
        if compare:
            wall, cpu = reference_side(args, images, encoder, device)
            plain.append(median_after_first(wall))
            plain_cpu.append(median_after_first(cpu))
        wall, cpu, gpu_busy = medvit_side(args, images, encoder, device)
        ours.append(median_after_first(wall))
        ours_cpu.append(median_after_first(cpu))
        busy.append(gpu_busy)
        line = f"[{name}] repeat {repeat + 1}: medvit {rate(ours[-1])} images/s"
        if compare:
            line += f", plain {rate(plain[-1])} images/s"
        print(line, flush=True)
    our_rate = statistics.median(ours)
    print(f"[{name}] medvit fit: {rate(our_rate)} images/s"
          f" ({our_rate / step_rate:.0%} of the step-alone rate: loading"
          f" {'kept up' if our_rate >= 0.9 * step_rate else 'did NOT keep up'})")  # fmt: skip
    if device.type == "cuda":
        sampled = statistics.median(value for value, _, _ in busy)
        samples = sum(count for _, count, _ in busy)
        wall_step = args.batch_size / our_rate
        print(f"[{name}] GPU busy over medvit's timed epochs: {sampled:.0f}% ({samples}"
              f" {busy[0][2]} samples); step GPU time (CUDA events) {gpu_step * 1e3:.1f} ms"
              f" / fit wall time per step {wall_step * 1e3:.1f} ms ="
              f" {gpu_step / wall_step:.0%}", flush=True)  # fmt: skip
    if compare:
        plain_rate = statistics.median(plain)
        print(f"[{name}] plain (engine_pretrain-like): {rate(plain_rate)} images/s")
        print(f"[{name}] ratio medvit/plain: {our_rate / plain_rate:.2f}x (wall clock)")
        # on a shared machine the wall clock measures the neighbours too; this process's CPU
        # time measures the work each side does (both train in this process on CPU)
        cpu_ratio = statistics.median(ours_cpu) / statistics.median(plain_cpu)
        print(
            f"[{name}] ratio medvit/plain: {cpu_ratio:.2f}x (images per CPU-second of this"
            " process: the fair one under contention, when loading is in-process)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU suite (ViT-S, then ViT-B)")
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--store-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--step-repeats", type=int, default=None)
    parser.add_argument("--decoder-dim", type=int, default=None)
    parser.add_argument("--decoder-depth", type=int, default=None)
    parser.add_argument("--decoder-heads", type=int, default=None)
    parser.add_argument("--workers", default="auto", type=lambda v: v if v == "auto" else int(v))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    gpu = {"encoder": "vit_small_patch16_224", "image_size": 224, "store_size": 256,
           "batch_size": 512, "slices": 16384, "repeats": 1, "step_repeats": 20,
           "decoder_dim": 512, "decoder_depth": 2, "decoder_heads": 16}  # fmt: skip
    cpu = {"encoder": "vit_tiny_patch16_224", "image_size": 96, "store_size": 128,
           "batch_size": 32, "slices": 256, "repeats": 3, "step_repeats": 5,
           "decoder_dim": 128, "decoder_depth": 1, "decoder_heads": 4}  # fmt: skip
    for key, value in (gpu if args.gpu else cpu).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = select_device()
    if args.gpu and device.type != "cuda":
        raise SystemExit("--gpu needs CUDA; run without it for the CPU comparison")
    print(f"device={device}"
          f" ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'})"
          f" threads={torch.get_num_threads()} workers={args.workers} slices={args.slices}"
          f" of {args.store_size}px epochs={args.epochs} mask_ratio={MASK_RATIO}"
          f" decoder={args.decoder_dim}x{args.decoder_depth}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        images = write_store(Path(folder), args.slices, args.store_size)
        measure(args, images, args.encoder, compare=True)
        if args.gpu:  # ViT-B/16 through medvit only: the figure a ViT-B user plans with
            measure(args, images, "vit_base_patch16_224", compare=False)


if __name__ == "__main__":
    main()
