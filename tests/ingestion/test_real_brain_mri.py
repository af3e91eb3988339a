"""Real data: figshare tumour slices + Br35H no-tumour slices from ../shared/data, split by fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medvit.ingestion.config import ImageFolderSource, Preprocessing
from medvit.splits import HeldOutSplit, SplitParams, make_splits

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "brain_mri"

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real brain MRI data not found at {DATA}"),
]


def test_figshare_and_br35h_ingest_and_split_by_fold(ingest):
    sources = [
        ImageFolderSource(
            name="figshare",
            root=DATA / "figshare",
            mask_column="mask",
            group_column="fold",
            tumor_type_column="tumor_type",
        ),
        ImageFolderSource(name="br35h", root=DATA / "br35h_no_tumor", unit="image"),
    ]
    table, report, store = ingest(sources, image_size=128, workers=2)
    assert len(table) + len(report) == 2400 + 1100
    assert len(report) <= 0.01 * 3500, report.head(20)
    figshare = table[table.source == "figshare"]
    assert figshare.tumor.all() and figshare.boxes.map(len).ge(1).all()
    assert figshare.mask_ref.notna().all() and set(figshare.group) == {"1", "2", "3", "4"}
    assert table[table.source == "br35h"].tumor.eq(0).all()
    assert store.images.shape[1:] == (128, 128)

    units = table.groupby("patient_id", as_index=False).agg(
        tumor=("patient_tumor", "max"), group=("group", "first")
    )
    # the figshare folds are the patient-disjoint unit: one whole fold per held-out split
    natural = HeldOutSplit(ratio=None, fraction=0.25)
    splits = make_splits(units, SplitParams(test=natural, val=natural))
    fold_splits = splits[splits.tumor == 1]
    assert sorted(fold_splits.split.value_counts().tolist()) == [1, 1, 2]
    assert splits.patient_id.is_unique


def test_br35h_groups_of_mixed_sizes_are_kept_and_preprocessed(tmp_path, ingest):
    """Br35H near-copy groups mix image sizes; each image is its own one-slice series."""
    root = tmp_path / "br35h"
    root.mkdir()
    manifest = pd.read_csv(DATA / "br35h_tumor" / "manifest.csv")
    sizes = manifest.groupby("dup_group")[["width", "height"]].nunique().max(axis=1)
    groups = sizes[sizes > 1].index[:8]
    mixed = manifest[manifest["dup_group"].isin(groups)]
    mixed.to_csv(root / "manifest.csv", index=False)
    for folder in ("images", "labels"):
        (root / folder).symlink_to(DATA / "br35h_tumor" / folder)
    source = ImageFolderSource(name="br35h_tumor", root=root, group_column="dup_group")
    settings = Preprocessing(crop_foreground=True, intensity="zscore")
    table, report, store = ingest([source], image_size=128, preprocessing=settings)
    assert report.empty and len(table) == len(mixed) > len(groups) >= 2
    assert table["patient_id"].nunique() == len(groups) and table["series_id"].is_unique
    boxes = np.concatenate(table["boxes"].map(lambda b: np.asarray(list(b))).tolist())
    assert len(boxes) >= len(table) and (boxes >= 0).all() and (boxes <= 128).all()
    assert store.records["cropped_boxes"].sum() <= 1  # the crop keeps the tumours it frames
