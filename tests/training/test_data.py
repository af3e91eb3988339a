"""Slice dataset, augmentation and the epoch sampler."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from medvit.training import EpochSampler, SliceDataset, class_weights, slice_transform


def test_memmap_dataset_pickles_a_path_and_reopens_lazily(tmp_path, make_images):
    images, labels = make_images(64)
    np.save(tmp_path / "images.npy", images)
    store = np.load(tmp_path / "images.npy", mmap_mode="r")
    dataset = SliceDataset(store, [3, 5], labels[[3, 5]], slice_transform(32))
    blob = pickle.dumps(dataset)
    assert len(blob) < images.nbytes / 4  # the pixels do not travel to workers
    copy = pickle.loads(blob)
    image, label = copy[1]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert label.item() == labels[5]
    assert torch.equal(image, dataset[1][0])


def test_augmentation_is_reproducible_under_a_seed(make_images):
    images, labels = make_images(4)
    dataset = SliceDataset(images, range(4), labels, slice_transform(16, "strong"))
    torch.manual_seed(7)
    first = dataset[0][0]
    torch.manual_seed(7)
    assert torch.equal(first, dataset[0][0])
    assert not torch.equal(first, dataset[0][0])


def test_sampler_shards_one_permutation_per_epoch_across_ranks():
    ranks = [EpochSampler(10, seed=1, rank=r, world_size=2) for r in range(2)]
    epoch0 = [list(s) for s in ranks]
    assert len(epoch0[0]) == len(epoch0[1]) == 5
    assert sorted(epoch0[0] + epoch0[1]) == list(range(10))
    for sampler in ranks:
        sampler.set_epoch(1)
    assert [list(s) for s in ranks] != epoch0
    again = EpochSampler(10, seed=1, rank=0, world_size=2)
    assert list(again) == epoch0[0]


def test_unpadded_evaluation_shards_cover_every_sample_once():
    shards = [list(EpochSampler(7, shuffle=False, rank=r, world_size=2, pad=False)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(7))


def test_class_weights_balance_the_classes():
    weights = class_weights([0, 0, 0, 1], 2)
    assert torch.allclose(weights * torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0]))


def test_a_batch_read_at_once_equals_samples_read_one_by_one(make_images):
    images, labels = make_images(8)
    dataset = SliceDataset(images, [5, 1, 6, 1], labels[[5, 1, 6, 1]], slice_transform(16, "weak"))
    torch.manual_seed(3)
    one_by_one = [dataset[i] for i in range(4)]
    torch.manual_seed(3)
    batch = dataset.__getitems__([0, 1, 2, 3])
    for (image, label), (expected_image, expected_label) in zip(batch, one_by_one, strict=True):
        assert torch.equal(image, expected_image) and torch.equal(label, expected_label)
