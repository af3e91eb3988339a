"""One archive shipped as several folders (Br35H: tumour and no-tumour apart) is one `source`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvit.ingestion.config import ImageFolderSource, IngestionParams


def _folder(root: Path, tumour: int, archive: str | None) -> ImageFolderSource:
    (root / "images").mkdir(parents=True)
    rows = []
    for index in range(2):
        name = f"images/{index}.png"
        cv2.imwrite(str(root / name), np.full((40, 40), 60 + 40 * tumour, np.uint8))
        rows.append({"image": name, "tumor": tumour, "group": f"g{tumour}{index}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return ImageFolderSource(
        name=root.name, root=root, label_column=None, group_column="group", archive=archive
    )


def test_folders_of_one_archive_are_reported_as_one_source(tmp_path, ingest):
    sources = [
        _folder(tmp_path / "yes", 1, "archive_b"),
        _folder(tmp_path / "no", 0, "archive_b"),
        _folder(tmp_path / "other", 0, None),
    ]
    table, _, _ = ingest(sources)
    assert table.groupby("source")["tumor"].agg(sorted).to_dict() == {
        "archive_b": [0, 0, 1, 1],
        "other": [0, 0],
    }
    assert table["patient_id"].nunique() == 6  # units stay per folder and group
    levels = IngestionParams(sources=sources).patient_level_sources
    assert levels == {"archive_b": False, "other": False}
