"""Intensity augmentation (MONAI, replayed under the loop's seeding) and source x label sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader

from medvit.pipelines.distillation.nodes import DistillationDataParams, _imbalance
from medvit.training.data import (
    EpochSampler,
    SliceDataset,
    balanced_weights,
    intensity_augmentation,
    slice_transform,
)
from medvit.training.runtime import epoch_seed, seed_everything


def _epoch(dataset: SliceDataset, epoch: int, workers: int = 0) -> list[torch.Tensor]:
    """One epoch's batches as the loop draws them: seeded by (seed, epoch) first."""
    seed_everything(epoch_seed(0, epoch))
    loader = DataLoader(dataset, batch_size=4, num_workers=workers)
    return [images for images, _ in loader]


def test_intensity_augmentation_changes_contrast_and_stays_in_range():
    image = torch.linspace(0, 1, 32 * 32).reshape(1, 32, 32)
    augment = intensity_augmentation()
    torch.manual_seed(0)
    views = [augment(image) for _ in range(40)]
    assert all(type(view) is torch.Tensor and view.shape == image.shape for view in views)
    assert all(view.min() >= 0.0 and view.max() <= 1.0 for view in views)
    changed = [not torch.allclose(view, image) for view in views]
    assert 10 < sum(changed) < 40  # each transform fires with probability 0.3
    assert np.std([view.mean().item() for view in views]) > 0.01


def test_an_epoch_replays_exactly_whatever_ran_before(make_images):
    """A resumed run starts at epoch e with fresh transforms; MONAI's own RandomState would carry
    draws over from earlier epochs, so the replay is only exact because torch seeds it."""
    images, labels = make_images(12)

    def dataset() -> SliceDataset:
        return SliceDataset(images, range(12), labels, slice_transform(16, "weak", intensity=True))

    def same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
        return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))

    straight = dataset()
    _epoch(straight, 0)
    uninterrupted = _epoch(straight, 1)
    assert same(uninterrupted, _epoch(dataset(), 1))
    assert not same(uninterrupted, _epoch(dataset(), 2))
    assert same(_epoch(dataset(), 1, workers=1), _epoch(dataset(), 1, workers=1))


def test_source_label_balance_draws_every_cell_alike():
    # 3 sources x 2 labels, cells of 400, 40, 30, 300, 5 and 100 slices
    sizes = {("a", 0): 400, ("a", 1): 40, ("b", 0): 30, ("b", 1): 300, ("c", 0): 5, ("c", 1): 100}
    sources = np.repeat([s for s, _ in sizes], list(sizes.values()))
    labels = np.repeat([label for _, label in sizes], list(sizes.values()))
    weights = balanced_weights(sources, labels)
    sampler = EpochSampler(len(weights), weights=weights, seed=0)
    counts = {}
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for index in sampler:
            cell = (sources[index], labels[index])
            counts[cell] = counts.get(cell, 0) + 1
    shares = np.array([counts[cell] for cell in sizes]) / sum(counts.values())
    np.testing.assert_allclose(shares, 1 / 6, atol=0.02)
    label_only = balanced_weights(labels)
    assert np.isclose(label_only[labels == 0].sum(), label_only[labels == 1].sum())


def test_distillation_samples_source_by_label_when_asked():
    table = pd.DataFrame(
        {
            "split": ["train"] * 6 + ["val"],
            "source": ["figshare", "figshare", "figshare", "br35h", "br35h", "br35h", "br35h"],
            "label": [1, 1, 1, 1, 0, 0, 0],
        }
    )
    by_label, _ = _imbalance(table, 2, DistillationDataParams())
    by_cell, _ = _imbalance(table, 2, DistillationDataParams(balance="source_label"))
    np.testing.assert_allclose(by_label, [1 / 4] * 4 + [1 / 2] * 2)
    np.testing.assert_allclose(by_cell, [1 / 3] * 3 + [1, 1 / 2, 1 / 2])
    with pytest.raises(ValidationError, match="needs imbalance: sampler"):
        DistillationDataParams(balance="source_label", imbalance="loss_weights")
