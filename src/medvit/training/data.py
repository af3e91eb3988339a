"""Slices from the memory-mapped store as a torch Dataset, augmentation, sampling and loaders.

The store's `images.npy` is opened lazily in each process that reads it: a memmap pickled into
DataLoader workers would be copied whole, whereas a path costs nothing and every worker then
touches only the pages of the slices it reads. Augmentation is torchvision's `transforms.v2` on
tensors, which draws from torch's RNG, so seeding an epoch replays it exactly; MONAI's intensity
transforms, which keep a numpy RandomState of their own, are reseeded from torch's RNG per image
(`TorchSeeded`) so they replay too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from monai import transforms as mt
from monai.data import get_track_meta, set_track_meta
from monai.utils import convert_to_tensor
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from medvit.training.runtime import Runtime, epoch_seed

Augmentation = Literal["none", "weak", "strong"]

# uint8 slices scaled to [0, 1] and centred: the store is windowed, so one fixed affine suffices.
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


class SliceDataset(Dataset):
    """`(image, label)` pairs: a 1 x size x size float tensor and an int64 class index.

    `images` is the store's memmap (or any array, e.g. in tests); rows are picked by `refs`.
    """

    def __init__(
        self,
        images: np.ndarray,
        refs: Sequence[int],
        labels: Sequence[int],
        transform: v2.Transform | nn.Module,
    ) -> None:
        if len(refs) != len(labels):
            raise ValueError(f"{len(refs)} image refs but {len(labels)} labels")
        self._path = getattr(images, "filename", None)
        self._images: np.ndarray | None = images
        self.refs = np.asarray(refs, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    @property
    def draws_random(self) -> bool:
        """Whether reading a sample draws random numbers (a random transform)."""
        return not isinstance(self.transform, nn.Identity)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state["_path"] is not None:
            state["_images"] = None  # reopened from the path in the worker
        return state

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(Path(os.fspath(self._path)), mmap_mode="r")
        return self._images

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(np.array(self.images[self.refs[index]], dtype=np.uint8))
        return self.transform(pixels[None]), torch.tensor(self.labels[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A loader's batch read from the memmap in one fancy index, not one slice at a time:
        per slice, numpy's and torch's call overhead outweighs copying its bytes, and the first
        batch of every epoch waits for one worker to read a whole batch. Samples are transformed
        in batch order, so a random transform draws exactly as `__getitem__` would. A subclass
        with samples of its own shape (`__getitem__` overridden) is read one sample at a time."""
        if type(self).__getitem__ is not SliceDataset.__getitem__:
            return [self[index] for index in indices]
        pixels = torch.from_numpy(np.asarray(self.images[self.refs[indices]], dtype=np.uint8))
        labels = torch.from_numpy(self.labels[indices])
        return [
            (self.transform(image[None]), label)
            for image, label in zip(pixels, labels, strict=True)
        ]


def unlabelled_slices(images: np.ndarray, refs: Sequence[int]) -> SliceDataset:
    """Slices as stored (uint8, 1 x H x W) with a dummy label 0, for self-supervised tasks.

    Nothing is resized or augmented here: the task does that on the whole batch on its device
    (`medvit.training.batch_augment`), so a loader worker only copies bytes out of the memmap.
    """
    return SliceDataset(images, refs, np.zeros(len(refs), dtype=np.int64), nn.Identity())


class TorchSeeded:
    """MONAI transforms applied in turn, their random draws coming from torch's RNG.

    MONAI transforms draw from a RandomState of their own, which neither `torch.manual_seed`
    nor DataLoader worker seeding touches: an epoch replayed after a resume would see other
    draws. Here they share one RandomState, reseeded from torch's generator for every image, so
    their draws are a function of the loop's epoch seed, like every torchvision transform's.
    Metadata tracking is off while they run: plain tensors in and out, without MetaTensor's cost.
    """

    def __init__(self, *transforms: mt.Transform) -> None:
        self.transforms = transforms
        self._state = np.random.RandomState()
        for transform in transforms:
            if isinstance(transform, mt.Randomizable):
                transform.set_random_state(state=self._state)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        self._state.seed(int(torch.randint(2**31 - 1, ()).item()))
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            for transform in self.transforms:
                image = transform(image)
        finally:
            set_track_meta(tracking)
        return convert_to_tensor(image, track_meta=False)


def intensity_augmentation() -> TorchSeeded:
    """What another scanner does to an image: a smooth bias field, another gain, contrast
    (gamma) and histogram, and noise. On a float image in [0, 1]; clamped back to it."""
    return TorchSeeded(
        mt.RandBiasField(degree=3, coeff_range=(0.0, 0.2), prob=0.3),
        mt.RandScaleIntensity(factors=0.2, prob=0.3),
        mt.RandAdjustContrast(gamma=(0.6, 1.6), prob=0.3),
        mt.RandHistogramShift(num_control_points=(5, 10), prob=0.3),
        mt.RandGaussianNoise(std=0.03, prob=0.3),
        mt.ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
    )


def slice_transform(
    image_size: int, augmentation: Augmentation = "none", intensity: bool = False
) -> v2.Transform:
    """Resize, then (weak) a small affine and a left-right flip, (strong) plus RandAugment and
    random erasing: the out-of-distribution views DeiT-LT distils through. `intensity` adds
    MONAI's scanner-like intensity changes (`intensity_augmentation`), for training views only."""
    steps: list[v2.Transform] = [v2.Resize((image_size, image_size), antialias=True)]
    if augmentation != "none":
        steps += [
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
            v2.RandomHorizontalFlip(),
        ]
    if augmentation == "strong":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if intensity:
        steps.append(intensity_augmentation())
    steps.append(v2.Normalize([PIXEL_MEAN], [PIXEL_STD]))
    if augmentation == "strong":
        steps.append(v2.RandomErasing(p=0.25, value=0))
    return v2.Compose(steps)


def class_counts(labels: Sequence[int], n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)


def class_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Inverse class frequency, mean 1 over classes: a loss weight that balances the classes."""
    counts = class_counts(labels, n_classes)
    weights = counts.sum() / (n_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def balanced_weights(*keys: Sequence) -> np.ndarray:
    """Per-sample weights under which every cell of the keys (e.g. source x label) is drawn
    equally often: 1 / the cell's size.

    Balancing labels alone lets a cohort whose tumours come from one archive and normals from
    another keep its shortcut; balancing source x label makes each source's tumours and
    normals equally frequent, so only what differs within a source separates the classes.
    """
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([np.asarray(key) for key in keys]))
    return 1.0 / np.bincount(codes)[codes]


class EpochSampler(Sampler[int]):
    """Shuffled or class-balanced draws, reproducible per epoch and sharded across ranks.

    One sampler covers the single-process and DDP cases: indices are drawn from a generator seeded
    by (seed, epoch), so every rank draws the same permutation and takes its own stride of it.
    `weights` (one per sample) draws with replacement, as `WeightedRandomSampler` does.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        weights: Sequence[float] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.pad = pad  # training pads so that all ranks take the same number of steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=generator)
        if self.shuffle:
            return torch.randperm(self.n, generator=generator)
        return torch.arange(self.n)

    def _indices(self) -> torch.Tensor:
        order = self._order()
        if self.pad and self.n % self.world_size:
            order = torch.cat([order, order[: self.world_size - self.n % self.world_size]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return len(self._indices())


def resolve_workers(num_workers: int | str, runtime: Runtime) -> int:
    """`auto`: a few workers per GPU process; none on CPU, where they would compete with compute."""
    if num_workers != "auto":
        return int(num_workers)
    if runtime.device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // runtime.world_size - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: EpochSampler,
    runtime: Runtime,
    num_workers: int | str = "auto",
    drop_last: bool = False,
) -> DataLoader:
    """Pinned memory on CUDA. Workers that augment are not persistent: they are re-seeded from
    torch's RNG at the start of every epoch, which the loop seeds, so a resumed epoch augments
    identically. Workers that only copy bytes (augmentation on the device) persist, sparing
    every epoch the start-up of its workers, which at thousands of images per second is
    a visible stall."""
    workers = resolve_workers(num_workers, runtime)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0 and not getattr(dataset, "draws_random", True),
    )
