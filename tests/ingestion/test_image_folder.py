"""Image folder + manifest reader: YOLO labels, masks, grouping and bad rows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvit.ingestion.config import ImageFolderSource


def _folder(root: Path) -> ImageFolderSource:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        image = rng.integers(0, 255, (80, 120), dtype=np.uint8)  # landscape: letterboxed
        name = f"images/{i}.png" if i % 2 else f"images/{i}.jpg"
        cv2.imwrite(str(root / name), image if i != 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        tumor = int(i < 3)
        label = "0 0.5 0.5 0.25 0.5\n" if tumor else ""
        (root / f"labels/{i}.txt").write_text(label)
        mask = np.zeros((80, 120), np.uint8)
        if tumor:
            mask[20:60, 45:75] = 255
        cv2.imwrite(str(root / f"masks/{i}.png"), mask)
        rows.append(
            {
                "image": name,
                "label": f"labels/{i}.txt",
                "mask": f"masks/{i}.png",
                "tumor": tumor,
                "fold": 1 + i % 2,
            }
        )
    rows.append(
        {"image": "images/ghost.png", "label": "labels/0.txt", "mask": None, "tumor": 1, "fold": 1}
    )
    (root / "images/corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    rows.append({"image": "images/corrupt.jpg", "label": None, "mask": None, "tumor": 0, "fold": 2})
    (root / "labels/outside.txt").write_text("0 0.95 0.5 0.3 0.2\n")
    cv2.imwrite(str(root / "images/outside.png"), np.zeros((80, 120), np.uint8))
    rows.append(
        {
            "image": "images/outside.png",
            "label": "labels/outside.txt",
            "mask": None,
            "tumor": 1,
            "fold": 2,
        }
    )
    (root / "labels/bad.txt").write_text("tumour somewhere\n")
    cv2.imwrite(str(root / "images/bad.png"), np.zeros((80, 120), np.uint8))
    rows.append(
        {"image": "images/bad.png", "label": "labels/bad.txt", "mask": None, "tumor": 1, "fold": 2}
    )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return ImageFolderSource(name="folder", root=root, mask_column="mask", group_column="fold")


def test_yolo_boxes_and_masks_follow_the_letterbox(tmp_path, ingest):
    table, _, store = ingest([_folder(tmp_path / "f")], image_size=60, max_bad_fraction=1.0)
    assert len(table) == 6
    tumour = table[table.tumor == 1].iloc[0]
    # 120x80 → scale 0.5 → 60x40, padded by 10 rows top and bottom
    assert [list(b) for b in tumour.boxes] == [[22.5, 20.0, 37.5, 40.0]]
    mask = store.masks[tumour.mask_ref]
    ys, xs = np.nonzero(mask)
    # nearest-neighbour resampling keeps the mask within a pixel of the box
    np.testing.assert_allclose(
        [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [22.5, 20, 37.5, 40], atol=1
    )
    assert store.images.shape == (6, 60, 60) and store.images.dtype == np.uint8
    assert (np.asarray(store.images[table.image_ref.iloc[0]])[:10] == 0).all()  # letterbox pad


def test_fold_groups_become_patients(tmp_path, ingest):
    table, _, _ = ingest([_folder(tmp_path / "f")], max_bad_fraction=1.0)
    assert table.patient_id.nunique() == 2
    assert set(table.group) == {"1", "2"}
    assert table.groupby("patient_id").patient_tumor.first().tolist() == [1, 1]


def test_bad_rows_are_quarantined(tmp_path, ingest):
    _, report, _ = ingest([_folder(tmp_path / "f")], max_bad_fraction=1.0)
    kinds = dict(zip(report.path, report.kind, strict=True))
    assert kinds == {
        "images/ghost.png": "missing_image",
        "images/corrupt.jpg": "corrupt_image",
        "images/outside.png": "bad_annotation",
        "images/bad.png": "bad_label",
    }


def test_without_groups_each_image_is_its_own_unit(tmp_path, ingest):
    source = _folder(tmp_path / "f").model_copy(update={"group_column": None})
    table, _, _ = ingest([source], max_bad_fraction=1.0)
    assert table.patient_id.nunique() == len(table)
