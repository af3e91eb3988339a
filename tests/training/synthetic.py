"""Tiny learnable slices and a tiny CNN, so the real loop runs in seconds on CPU.

A plain module (not only fixtures) because the torchrun worker script imports it too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medvit.training import SliceDataset, slice_transform

SIZE = 16


def bright_square_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise slices; label 1 carries a bright 4 x 4 square somewhere."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, size=(n, SIZE, SIZE), dtype=np.uint8)
    labels = (np.arange(n) % 3 == 0).astype(np.int64)  # 1 : 2 imbalance
    for index in np.flatnonzero(labels):
        row, col = rng.integers(0, SIZE - 4, size=2)
        images[index, row : row + 4, col : col + 4] = 250
    return images, labels


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def datasets(n_train: int = 96, n_val: int = 48, augmentation: str = "weak"):
    images, labels = bright_square_images(n_train + n_val)
    refs = np.arange(n_train + n_val)
    train = SliceDataset(
        images, refs[:n_train], labels[:n_train], slice_transform(SIZE, augmentation)
    )
    val = SliceDataset(images, refs[n_train:], labels[n_train:], slice_transform(SIZE))
    return train, val
