"""Real data: figshare tumour slices + Br35H no-tumour slices from ../shared/data, split by fold."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvit.ingestion.config import ImageFolderSource
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
