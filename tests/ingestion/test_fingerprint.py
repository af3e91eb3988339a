"""The slice table's fingerprint is a canonical content hash: stable across parquet, and cheap."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvit.ingestion.config import ImageFolderSource
from medvit.splits import slice_table_fingerprint


def _folder(root: Path) -> ImageFolderSource:
    """Four images of two patients, two of them with a YOLO box."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        cv2.imwrite(str(root / f"images/{i}.png"), rng.integers(0, 255, (40, 60), np.uint8))
        (root / f"labels/{i}.txt").write_text("0 0.5 0.5 0.25 0.5\n" if i % 2 else "")
        rows.append(
            {"image": f"images/{i}.png", "label": f"labels/{i}.txt", "patient": f"p{i // 2}"}
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return ImageFolderSource(name="folder", root=root, patient_column="patient", tumor_column=None)


def test_fingerprint_survives_a_parquet_round_trip_and_sees_every_change(tmp_path, ingest):
    table, _, _ = ingest([_folder(tmp_path / "f")])
    boxed = int(table.index[table["boxes"].map(len) > 0][0])
    with_lists = table.assign(boxes=[[list(map(float, b)) for b in boxes] for boxes in table.boxes])
    table.to_parquet(tmp_path / "slices.parquet")
    loaded = pd.read_parquet(tmp_path / "slices.parquet")
    assert isinstance(loaded.loc[boxed, "boxes"], np.ndarray)
    assert isinstance(with_lists.loc[boxed, "boxes"], list)

    fingerprint = slice_table_fingerprint(table)
    assert slice_table_fingerprint(loaded) == fingerprint
    assert slice_table_fingerprint(with_lists) == fingerprint
    loaded.to_parquet(tmp_path / "again.parquet")
    assert slice_table_fingerprint(pd.read_parquet(tmp_path / "again.parquet")) == fingerprint

    moved = with_lists.copy()
    moved.at[boxed, "boxes"] = [[b + 1 for b in moved.at[boxed, "boxes"][0]]]
    assert slice_table_fingerprint(moved) != fingerprint
    assert slice_table_fingerprint(table.iloc[::-1]) != fingerprint
    assert slice_table_fingerprint(table.assign(tumor_type="glioma")) != fingerprint


def test_fingerprinting_a_100k_row_slice_table_takes_about_a_second(tmp_path):
    n = 100_000
    rng = np.random.default_rng(0)
    ids = [f"{value:064x}" for value in rng.integers(0, 2**62, n)]
    table = pd.DataFrame(
        {
            "patient_id": ids,
            "series_id": ids,
            "slice_index": np.arange(n) % 100,
            "tumor": np.arange(n) % 3 == 0,
            "boxes": [[[1.5, 2.0, 30.0, 40.0]] if i % 3 == 0 else [] for i in range(n)],
            "mask_ref": pd.array(np.where(np.arange(n) % 3 == 0, np.arange(n), -1)).astype("Int64"),
            "source": "demo",
            "tumor_type": None,
        }
    )
    table.to_parquet(tmp_path / "slices.parquet")
    loaded = pd.read_parquet(tmp_path / "slices.parquet")
    start = time.process_time()
    slice_table_fingerprint(loaded)
    seconds = time.process_time() - start
    assert seconds < 3, f"{seconds:.1f} s of CPU for 100k rows"
