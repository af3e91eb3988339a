"""Segmentation slices: box prompts, jitter bounds and replay, bad input, lazy memmaps."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from medvit.models.dbsam import SegmentationTask, build_segmenter
from medvit.training import TrainConfig, fit
from medvit.training.segmentation_data import (
    REFERENCE_SIZE,
    SegmentationSliceDataset,
    jitter_boxes,
    mask_box,
)

SIDE = 32


def store(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise slices, each with a bright square tumour and its 0/255 mask (as ingestion writes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, size=(n, SIDE, SIDE), dtype=np.uint8)
    masks = np.zeros((n, SIDE, SIDE), dtype=np.uint8)
    for index in range(n):
        row, col = rng.integers(2, SIDE - 12, size=2)
        masks[index, row : row + 8, col : col + 10] = 255
        images[index][masks[index] > 0] += 150
    return images, masks


def test_jitter_moves_each_side_outward_within_bounds() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 64.0, 48.0], [60.0, 2.0, 62.0, 5.0]])
    for _ in range(50):
        moved = jitter_boxes(boxes, 5.0, (48, 64), generator)
        assert (moved[:, :2] <= boxes[:, :2]).all() and (moved[:, 2:] >= boxes[:, 2:]).all()
        assert ((moved - boxes).abs() <= 5.0 + 1e-5).all()
        assert (
            (moved >= 0).all() and (moved[:, [0, 2]] <= 64).all() and (moved[:, [1, 3]] <= 48).all()
        )
    assert torch.equal(jitter_boxes(boxes, 0.0, (48, 64)), boxes)
    spread = torch.stack([jitter_boxes(boxes[:1], 5.0, (48, 64), generator) for _ in range(200)])
    assert (boxes[0, 0] - spread[..., 0]).max() > 4.0  # the whole range is drawn


def test_items_are_image_mask_and_box_at_the_model_size() -> None:
    images, masks = store()
    data = SegmentationSliceDataset(images, masks, range(6), range(6), image_size=64)
    image, mask, box = data[0]
    assert image.shape == mask.shape == (1, 64, 64)
    assert image.dtype == mask.dtype == box.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    expected = torch.from_numpy(mask_box(masks[0] > 0)) * 2  # stored 32 px -> 64 px
    torch.testing.assert_close(box, expected)  # no jitter at jitter_px=0
    rows, cols = torch.nonzero(mask[0], as_tuple=True)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == tuple(
        expected.int().tolist()
    )


def test_training_jitter_is_scaled_from_1024_px_and_replays_under_a_seed() -> None:
    images, masks = store()
    data = SegmentationSliceDataset(images, masks, range(6), range(6), jitter_px=20, image_size=64)
    exact = torch.from_numpy(data.boxes[0]) * 2
    bound = 20 * 64 / REFERENCE_SIZE
    torch.manual_seed(3)
    first = [data[0][2] for _ in range(20)]
    for box in first:
        assert (box[:2] <= exact[:2]).all() and (box[2:] >= exact[2:]).all()
        assert ((box - exact).abs() <= bound + 1e-5).all()
    assert any(not torch.equal(box, exact) for box in first)
    torch.manual_seed(3)
    assert all(torch.equal(box, data[0][2]) for box in first)


def test_unusable_slices_are_skipped_with_their_reason() -> None:
    images, masks = store()
    masks[1] = 0
    masks[2] = 255
    data = SegmentationSliceDataset(images, masks, range(6), [0, 1, 2, None, 4, 5])
    assert data.positions.tolist() == [0, 4, 5]
    reasons = {item.position: item.reason for item in data.skipped}
    assert reasons[1].startswith("mask is empty")
    assert reasons[2].startswith("mask is all foreground")
    assert reasons[3].startswith("no mask")
    assert len(data) == 3


def test_given_boxes_are_checked_and_clipped() -> None:
    images, masks = store(4)
    boxes = [[2, 2, 2, 9], [40, 40, 50, 50], [-3, 1, 10, 12], [4.0, 5.0, 20.0, 22.0]]
    data = SegmentationSliceDataset(images, masks, range(4), range(4), boxes=boxes, image_size=SIDE)
    assert data.positions.tolist() == [2, 3]
    reasons = [item.reason for item in data.skipped]
    assert "zero area" in reasons[0] and "outside the 32x32 image" in reasons[1]
    assert data.clipped_boxes == 1
    torch.testing.assert_close(data[0][2], torch.tensor([0.0, 1.0, 10.0, 12.0]))
    torch.testing.assert_close(data[1][2], torch.tensor([4.0, 5.0, 20.0, 22.0]))


def test_whole_store_problems_raise() -> None:
    images, masks = store()
    with pytest.raises(ValueError, match="masks are 16x16 but images are 32x32"):
        SegmentationSliceDataset(images, masks[:, :16, :16], range(6), range(6))
    with pytest.raises(ValueError, match="no usable slice"):
        SegmentationSliceDataset(images, np.zeros_like(masks), range(6), range(6))
    with pytest.raises(ValueError, match="6 image refs but 5 mask refs"):
        SegmentationSliceDataset(images, masks, range(6), range(5))


def test_memmaps_are_reopened_lazily_after_pickling(tmp_path) -> None:
    images, masks = store()
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "masks.npy", masks)
    data = SegmentationSliceDataset(
        np.load(tmp_path / "images.npy", mmap_mode="r"),
        np.load(tmp_path / "masks.npy", mmap_mode="r"),
        range(6),
        range(6),
        image_size=SIDE,
    )
    state = pickle.dumps(data)
    assert len(state) < 20_000  # paths travel to workers, not pixels
    copy = pickle.loads(state)
    for left, right in zip(copy[2], data[2], strict=True):
        assert torch.equal(left, right)


def test_fit_trains_dbsam_on_the_dataset() -> None:
    """The real loop: batches of (image, mask, box), val_dice and val_loss per epoch."""
    images, masks = store(8)
    train = SegmentationSliceDataset(images, masks, range(6), range(6), jitter_px=20)
    val = SegmentationSliceDataset(images, masks, range(6, 8), range(6, 8))
    torch.manual_seed(0)
    model = build_segmenter("dbsam", {"encoder": "tiny"})
    config = TrainConfig(
        epochs=1, batch_size=3, lr=1e-4, weight_decay=0.01, num_workers=0, progress=False
    )
    result = fit(model, SegmentationTask(), train, val, config, identity=train.identity())
    metrics = result.history[0]
    assert {"train_loss", "val_dice", "val_loss"} <= set(metrics)
    assert 0 <= metrics["val_dice"] <= 1 and np.isfinite(metrics["val_loss"])


def test_a_loader_batch_holds_image_mask_and_box() -> None:
    """The base dataset reads whole batches (`__getitems__`); this one must keep its triples."""
    images = np.zeros((3, 32, 32), dtype=np.uint8)
    masks = np.zeros_like(images)
    masks[:, 8:20, 10:24] = 255
    refs = np.arange(3)
    data = SegmentationSliceDataset(images, masks, refs, refs, image_size=32)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    assert [tuple(part.shape) for part in batch] == [(3, 1, 32, 32), (3, 1, 32, 32), (3, 4)]
