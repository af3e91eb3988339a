"""DB-SAM training throughput: `medvit.training.fit` against a plain PyTorch loop, same process.

Both sides train the same DB-SAM (random init) with MONAI's Dice + cross-entropy loss on the same
synthetic slices (noise with a bright ellipse, its mask, and the mask's box jittered by 0-20 px at
1024-px scale), the same batch size and AdamW (lr 1e-4, weight decay 0.01). The plain loop is what
one would write by hand: a shuffling DataLoader, AdamW over the trainable parameters, no clipping,
no schedule, no checkpoints. Sides alternate `--repeats` times and the median epoch of each is
compared, because a shared machine's load moves between runs. Then the inference latency of one
slice (batch 1, eval mode) at the encoder's input size, for DB-SAM and the decoder-only baseline.

CPU (default): the tiny encoder at 256 px, fp32. `--gpu`: SAM ViT-B at 1024 px in bf16 autocast
(the loop's `auto` on CUDA), plus the peak GPU memory of each side and of the baseline; it needs
only torch, timm, ultralytics, monai and pydantic beside medvit, and takes about a minute.
Run: `uv run python benchmarks/segmentation.py [--slices 24] [--batch-size 4] [--epochs 3]
[--repeats 3]`; on a GPU machine `PYTHONPATH=src python3 benchmarks/segmentation.py --gpu`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch import nn
from torch.utils.data import DataLoader

from medvit.models import latency_ms
from medvit.models.dbsam import (
    ENCODER_SIZES,
    SegmentationTask,
    SegmenterConfig,
    build_segmenter,
    parameter_counts,
)
from medvit.training import TrainConfig, fit, select_device
from medvit.training.segmentation_data import SegmentationSliceDataset


def _data(args: argparse.Namespace) -> SegmentationSliceDataset:
    """Slices stored at the encoder's size, so that resizing is not what is measured."""
    side = ENCODER_SIZES[args.encoder].image_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 100, size=(args.slices, side, side), dtype=np.uint8)
    masks = np.zeros_like(images)
    rows, cols = np.ogrid[:side, :side]
    for index in range(args.slices):
        row, col = rng.uniform(0.3, 0.7, size=2) * side
        radius = rng.uniform(0.05, 0.15) * side
        blob = ((rows - row) ** 2 + ((cols - col) * 1.2) ** 2) < radius**2
        masks[index][blob] = 255
        images[index][blob] += 120
    refs = np.arange(args.slices)
    return SegmentationSliceDataset(images, masks, refs, refs, jitter_px=20, image_size=side)


def _model(args: argparse.Namespace, kind: str = "dbsam") -> nn.Module:
    torch.manual_seed(0)
    return build_segmenter(kind, SegmenterConfig(encoder=args.encoder, checkpoint=args.checkpoint))


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def plain_epochs(args: argparse.Namespace, device: torch.device) -> list[float]:
    """Images/s per epoch of a hand-written loop."""
    model = _model(args).to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    loss_fn = DiceCELoss(sigmoid=True, squared_pred=True)
    loader = DataLoader(_data(args), batch_size=args.batch_size, shuffle=True, drop_last=True)
    rates = []
    for _ in range(args.epochs):
        started, seen = time.perf_counter(), 0
        for images, masks, boxes in loader:
            images, masks, boxes = images.to(device), masks.to(device), boxes.to(device)
            with _autocast(device, args.precision):
                loss = loss_fn(model(images, boxes).float(), masks)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def medvit_epochs(args: argparse.Namespace, kind: str = "dbsam") -> list[float]:
    """Images/s per epoch as `fit` reports them (training only, no validation)."""
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-4,
        weight_decay=0.01,
        precision=args.precision,
        num_workers=0,
        progress=False,
    )
    result = fit(_model(args, kind), SegmentationTask(), _data(args), None, config)
    return [epoch["train_images_per_s"] for epoch in result.history]


def _median_after_warmup(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


class _Boxed(nn.Module):
    """A segmenter with a fixed box prompt, so `latency_ms` can time it like any model."""

    def __init__(self, model: nn.Module, side: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("box", torch.tensor([[0.3, 0.3, 0.6, 0.7]]) * side)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, self.box.expand(len(images), 4))


def latency(args: argparse.Namespace, device: torch.device, kind: str) -> float:
    side = ENCODER_SIZES[args.encoder].image_size
    model = _Boxed(_model(args, kind), side).to(device)
    with _autocast(device, args.precision):
        return latency_ms(model, side, in_chans=1, repeats=args.latency_repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="ViT-B at 1024 px in bf16 on CUDA")
    parser.add_argument("--encoder", choices=sorted(ENCODER_SIZES), default=None)
    parser.add_argument("--checkpoint", default=None, help="a sam_b.pt (random init if absent)")
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--latency-repeats", type=int, default=20)
    args = parser.parse_args()
    args.encoder = args.encoder or ("vit_b" if args.gpu else "tiny")
    args.slices = args.slices or (32 if args.gpu else 24)
    args.repeats = args.repeats or (1 if args.gpu else 3)
    device = select_device("cuda" if args.gpu else "auto")
    args.precision = "bf16" if device.type == "cuda" else "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} threads={torch.get_num_threads()} encoder={args.encoder}"
        f" image_size={ENCODER_SIZES[args.encoder].image_size} batch={args.batch_size}"
        f" slices={args.slices} epochs={args.epochs} precision={args.precision}"
    )
    for kind in ("dbsam", "sam_decoder"):
        counts = parameter_counts(_model(args, kind))
        print(f"{kind}: {counts['trainable']:,} trainable, {counts['frozen']:,} frozen parameters")
    plain, ours, peaks = [], [], {}
    for repeat in range(args.repeats):
        _reset_peak(device)
        plain.append(_median_after_warmup(plain_epochs(args, device)))
        peaks["plain"] = _peak_gib(device)
        _reset_peak(device)
        ours.append(_median_after_warmup(medvit_epochs(args)))
        peaks["medvit"] = _peak_gib(device)
        print(f"repeat {repeat + 1}: plain {plain[-1]:.2f} img/s, medvit {ours[-1]:.2f} img/s")
    plain_rate, our_rate = statistics.median(plain), statistics.median(ours)
    print(f"plain {args.precision}:  {plain_rate:.2f} images/s")
    print(f"medvit {args.precision}: {our_rate:.2f} images/s")
    print(f"ratio medvit/plain: {our_rate / plain_rate:.2f}x")
    if device.type == "cuda":
        _reset_peak(device)
        baseline = _median_after_warmup(medvit_epochs(args, "sam_decoder"))
        peaks["sam_decoder"] = _peak_gib(device)
        print(f"sam_decoder (baseline) through medvit: {baseline:.2f} images/s")
        print("peak GPU memory (GiB): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    for kind in ("dbsam", "sam_decoder"):
        print(f"{kind} inference latency per slice: {latency(args, device, kind):.1f} ms")


if __name__ == "__main__":
    main()
