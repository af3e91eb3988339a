"""Student training throughput: `medvit.training.fit` against a plain PyTorch loop, same process.

Both sides train the same DeiT student (timm, 1 input channel) with DeiT's hard-distillation loss
from the same frozen ResNet teacher, on the same slices, augmentation, batch size and AdamW, in
fp32 on CPU. The plain loop is what one would write by hand: a shuffling DataLoader, the teacher
under `torch.no_grad()`, no clipping, no schedule, no checkpoints. Sides alternate `--repeats`
times and the median epoch of each is compared, because a shared machine's load moves between
runs. With CUDA, `--precision bf16` and channels_last (the loop's `auto` choices) are measured too.
Run: `uv run python benchmarks/distillation.py [--image-size 96] [--batch-size 32] [--slices 512]
[--epochs 3] [--repeats 3] [--teacher resnet18] [--student tiny]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from medvit.models import DistillationLoss, DistillationTask, create_student, create_teacher
from medvit.training import SliceDataset, TrainConfig, fit, select_device, slice_transform


def _data(args: argparse.Namespace) -> SliceDataset:
    """Noise slices with a bright disc in every third one: what matters is the shape, not labels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 120, size=(args.slices, 128, 128), dtype=np.uint8)
    labels = (np.arange(args.slices) % 3 == 0).astype(np.int64)
    rows, cols = np.ogrid[:128, :128]
    images[labels == 1] |= (((rows - 64) ** 2 + (cols - 50) ** 2) < 100).astype(np.uint8) * 250
    return SliceDataset(
        images, np.arange(args.slices), labels, slice_transform(args.image_size, "weak")
    )


def _models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    teacher = create_teacher(args.teacher, 2, args.image_size).eval()
    return teacher, create_student(args.student, 2, args.image_size)


def plain_epochs(args: argparse.Namespace, device: torch.device) -> list[float]:
    """Images/s per epoch of a hand-written loop."""
    teacher, student = _models(args)
    teacher, student = teacher.to(device), student.to(device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-4, weight_decay=0.05)
    loader = DataLoader(_data(args), batch_size=args.batch_size, shuffle=True, drop_last=True)
    rates = []
    for _ in range(args.epochs):
        started, seen = time.perf_counter(), 0
        for images, target in loader:
            images, target = images.to(device), target.to(device)
            with torch.no_grad():
                teacher_labels = teacher(images).argmax(dim=1)
            class_logits, distill_logits = student(images)
            loss = 0.5 * F.cross_entropy(class_logits, target) + 0.5 * F.cross_entropy(
                distill_logits, teacher_labels
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def medvit_epochs(args: argparse.Namespace, precision: str = "fp32") -> list[float]:
    """Images/s per epoch as `fit` reports them (training only, validation excluded)."""
    teacher, student = _models(args)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=5e-4,
        precision=precision,
        num_workers=0,
        progress=False,
    )
    task = DistillationTask(teacher, DistillationLoss("hard"))
    result = fit(student, task, _data(args), None, config)
    return [epoch["train_images_per_s"] for epoch in result.history]


def _median_after_warmup(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--slices", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--teacher", default="resnet18")
    parser.add_argument("--student", default="tiny")
    args = parser.parse_args()
    device = select_device()
    print(
        f"device={device} threads={torch.get_num_threads()} image_size={args.image_size}"
        f" batch={args.batch_size} slices={args.slices} teacher={args.teacher}"
        f" student=deit_{args.student}"
    )
    plain, ours = [], []
    for repeat in range(args.repeats):
        plain.append(_median_after_warmup(plain_epochs(args, device)))
        ours.append(_median_after_warmup(medvit_epochs(args)))
        print(f"repeat {repeat + 1}: plain {plain[-1]:.1f} img/s, medvit {ours[-1]:.1f} img/s")
    plain_rate, our_rate = statistics.median(plain), statistics.median(ours)
    print(f"plain fp32:  {plain_rate:.1f} images/s")
    print(f"medvit fp32: {our_rate:.1f} images/s")
    print(f"ratio medvit/plain: {our_rate / plain_rate:.2f}x")
    if device.type == "cuda":
        bf16 = statistics.median(
            _median_after_warmup(medvit_epochs(args, "bf16")) for _ in range(args.repeats)
        )
        print(
            f"medvit bf16 + channels_last teacher: {bf16:.1f} images/s ({bf16 / plain_rate:.2f}x)"
        )


if __name__ == "__main__":
    main()
