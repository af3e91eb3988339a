"""Image folder + manifest reader: YOLO labels, masks, grouping and bad rows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from medvit.ingestion.config import ImageFolderSource, IngestionParams
from medvit.ingestion.image_folder import patient_labels
from medvit.ingestion.table import ingestion_counts


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
    # x 105.6..122.4 of 120 (clipped, kept) and 132..156 (nothing inside: quarantined)
    for name, label in (("edge", "0 0.95 0.5 0.14 0.2\n"), ("outside", "0 1.2 0.5 0.2 0.2\n")):
        (root / f"labels/{name}.txt").write_text(label)
        cv2.imwrite(str(root / f"images/{name}.png"), np.zeros((80, 120), np.uint8))
        rows.append(
            {
                "image": f"images/{name}.png",
                "label": f"labels/{name}.txt",
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
    assert len(table) == 7
    tumour = table[table.tumor == 1].sort_values("image_ref").iloc[0]
    # 120x80 → scale 0.5 → 60x40, padded by 10 rows top and bottom
    assert [list(b) for b in tumour.boxes] == [[22.5, 20.0, 37.5, 40.0]]
    mask = store.masks[tumour.mask_ref]
    ys, xs = np.nonzero(mask)
    # nearest-neighbour resampling keeps the mask within a pixel of the box
    np.testing.assert_allclose(
        [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [22.5, 20, 37.5, 40], atol=1
    )
    assert store.images.shape == (7, 60, 60) and store.images.dtype == np.uint8
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


def test_without_groups_each_image_is_its_own_unit_only_when_asked(tmp_path, ingest, caplog):
    folder = _folder(tmp_path / "f")
    settings = folder.model_dump(exclude={"group_column", "unit"})
    with pytest.raises(ValidationError, match="neither a patient_column nor a group_column"):
        ImageFolderSource(**settings)
    source = ImageFolderSource(**settings, unit="image")
    table, _, _ = ingest([source], max_bad_fraction=1.0)
    assert table.patient_id.nunique() == len(table)
    assert "`unit: image`" in caplog.text and "not patient-disjoint" in caplog.text
    assert not IngestionParams(sources=[source]).patient_disjoint
    assert IngestionParams(sources=[folder]).patient_disjoint


def test_image_unit_with_a_group_column_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="drop one of the two"):
        ImageFolderSource(name="f", root=tmp_path, group_column="fold", unit="image")


def test_boxes_past_the_edge_are_clipped_and_counted(tmp_path, ingest):
    table, report, store = ingest([_folder(tmp_path / "f")], image_size=60, max_bad_fraction=1.0)
    edge = table.loc[table.image_ref == 6].iloc[0]  # the 7th usable row
    # 120x80 → scale 0.5, 10 rows of padding: x 105.6..120 → 52.8..60, y 32..48 → 26..34
    assert [list(b) for b in edge.boxes] == [[52.8, 26.0, 60.0, 34.0]]
    assert "images/outside.png" in set(report.path) and "images/edge.png" not in set(report.path)
    counts = ingestion_counts(table, report, store.records)
    assert counts["ingest/clipped_boxes"] == 1


def test_manifest_labels_count_patients_before_any_image_is_read(tmp_path):
    source = _folder(tmp_path / "f")
    for image in (tmp_path / "f/images").iterdir():
        image.unlink()  # nothing is decoded: only the manifest is read
    labels = patient_labels(source)
    assert labels.to_dict() == {"folder/fold=1": 1, "folder/fold=2": 1}
    image_labels = patient_labels(source.model_copy(update={"group_column": None, "unit": "image"}))
    assert (len(image_labels), int(image_labels.sum())) == (11, 7)  # every manifest row
