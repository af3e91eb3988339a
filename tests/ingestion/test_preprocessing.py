"""Preprocessing at ingestion: the foreground crop with its boxes and masks, standardisation,
image-folder groups of mixed sizes, and what a change of settings does to the store."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvit.identity import rows_digest, table_digest
from medvit.ingestion.config import DicomSource, ImageFolderSource, Preprocessing
from medvit.ingestion.units import UnitResult

CROP = Preprocessing(crop_foreground=True, crop_margin=0.0)


def _scan(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A 60-pixel round head with a bright 10-pixel lesion, centred in a noisy image."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 12, (rows, cols)).astype(np.uint8)
    y, x = np.mgrid[:rows, :cols]
    cy, cx = rows // 2, cols // 2
    image[(y - cy) ** 2 + (x - cx) ** 2 <= 30**2] = 120
    image[cy - 5 : cy + 5, cx + 5 : cx + 15] = 250
    return image


def _stored(image: np.ndarray, preprocessing: Preprocessing, boxes=(), mask=None) -> UnitResult:
    result = UnitResult(64, preprocessing)
    result.add_slice({"tumor": int(bool(boxes))}, image, [list(b) for b in boxes], mask)
    return result


def _extent(stored: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(stored > 60)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_crop_gives_square_and_letterboxed_scans_the_same_head():
    square, wide = _scan(80, 80), _scan(80, 200)  # the wide one has 60 columns of bars each side
    assert _extent(_stored(square, Preprocessing()).images[0]) != _extent(
        _stored(wide, Preprocessing()).images[0]
    )
    cropped = [_extent(_stored(image, CROP).images[0]) for image in (square, wide)]
    np.testing.assert_allclose(cropped[0], cropped[1], atol=1)
    assert cropped[0][0] <= 1 and cropped[0][1] >= 62  # the head fills the stored square


def test_boxes_and_masks_follow_the_crop():
    image = _scan(80, 200)
    lesion = [105.0, 35.0, 115.0, 45.0]  # x1, y1, x2, y2 of the bright square
    mask = np.zeros(image.shape, np.uint8)
    mask[35:45, 105:115] = 255
    result = _stored(image, CROP, [lesion, [0.0, 0.0, 20.0, 20.0]], mask)
    record, stored = result.records[0], result.images[0]
    (box,) = record["boxes"]  # the second box lay in the background: cut away and counted
    assert record["cropped_boxes"] == 1 and record["clipped_boxes"] == 0
    x1, y1, x2, y2 = (round(v) for v in box)
    assert stored[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].min() > 200  # it still frames the lesion
    ys, xs = np.nonzero(result.masks[0])
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1)


def test_intensity_standardisation_at_ingestion_uses_the_full_range():
    dim = (_scan(80, 80) * 0.3).astype(np.uint8)
    stored = _stored(dim, Preprocessing(intensity="percentile")).images[0]
    assert stored.max() == 255 and stored.min() == 0
    assert np.array_equal(_stored(dim, Preprocessing()).images[0].max(), dim.max())


def _folder(root: Path, sizes: list[tuple[int, int]], gain: float = 1.0) -> ImageFolderSource:
    (root / "images").mkdir(parents=True)
    rows = []
    for index, (height, width) in enumerate(sizes):
        image = np.clip(_scan(height, width, index) * gain, 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / f"images/{index}.png"), image)
        rows.append({"image": f"images/{index}.png", "tumor": index % 2, "dup_group": index // 2})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return ImageFolderSource(name="br35h", root=root, label_column=None, group_column="dup_group")


def test_a_group_of_differently_sized_images_is_not_a_series(tmp_path, ingest):
    source = _folder(tmp_path / "f", [(80, 80), (90, 120), (100, 70), (100, 70)])
    table, report, _ = ingest([source])
    assert report.empty and len(table) == 4
    assert table.groupby("patient_id").size().tolist() == [2, 2]  # a group is still one unit
    assert table.series_id.nunique() == 4 and (table.slice_index == 0).all()


def test_a_change_of_preprocessing_changes_the_pixels_models_are_keyed_on(tmp_path, ingest):
    source = _folder(tmp_path / "f", [(80, 200), (80, 80)])
    keyed = {}
    for name, preprocessing in (
        ("window", Preprocessing()),
        ("percentile", Preprocessing(intensity="percentile")),
        ("crop", CROP),
    ):
        table, _, store = ingest([source], preprocessing=preprocessing)
        keyed[name] = (
            table_digest(table.drop(columns="image_ref")),
            rows_digest(store.images, table["image_ref"].to_numpy()),
        )
    # Without boxes the slice table stays the same; the pixels, which the teacher's and student's
    # identity (`pixels`) and every YOLO export file digest, differ: the models retrain.
    assert len({table for table, _ in keyed.values()}) == 1
    assert len({pixels for _, pixels in keyed.values()}) == 3


def test_worker_processes_apply_the_preprocessing_to_dicom_too(tmp_path, ingest, testdata):
    (tmp_path / "dicom").mkdir()
    for name in ("a", "b"):
        testdata("MR_small.dcm").rename(tmp_path / "dicom" / f"{name}.dcm")
    source = DicomSource(name="mr", root=tmp_path / "dicom")
    zscore = Preprocessing(crop_foreground=True, intensity="zscore")
    table, report, store = ingest([source], workers=2, chunk_size=1, preprocessing=zscore)
    images = np.asarray(store.images)
    assert report.empty and len(table) == 2 and np.array_equal(images[0], images[1])
    in_process = np.asarray(ingest([source], workers=1, preprocessing=zscore)[2].images)
    plain = np.asarray(ingest([source], workers=1)[2].images)
    assert np.array_equal(images, in_process) and not np.array_equal(images, plain)
