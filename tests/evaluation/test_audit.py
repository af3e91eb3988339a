"""The shortcut audit finds a label that two synthetic "scanners" give away, and only then."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from medvit.evaluation.audit import (
    AUDIT_COLUMNS,
    AuditParams,
    audit_findings,
    audit_metric_names,
    shortcut_audit,
    trivial_features,
)
from medvit.ingestion.store import SliceStore
from medvit.pipelines.data_preparation.nodes import audit_shortcuts
from medvit.splits import with_fingerprint

SIZE = 32


def _scanners(tied: bool, n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Head-like discs of noise from scanner A (gain 1.0) and B (gain 0.6), half of each split
    from each. `tied`: every A slice is a tumour and every B slice normal; else labels are coin
    flips, independent of the scanner."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 2.5) ** 2
    rows, images = [], []
    for split, count in (("train", n), ("val", n), ("test", n // 4)):
        for index in range(count):
            scanner = "scanner_a" if index % 2 else "scanner_b"
            gain = 1.0 if scanner == "scanner_a" else 0.6
            tumor = int(scanner == "scanner_a") if tied else int(rng.random() < 0.5)
            pixels = rng.uniform(60, 200, (SIZE, SIZE)) * gain * disc
            images.append(pixels.clip(0, 255).astype(np.uint8))
            rows.append((split, scanner, tumor, len(images) - 1, 256, 256))
    columns = ["split", "source", "tumor", "image_ref", "rows", "cols"]
    return pd.DataFrame(rows, columns=columns), np.stack(images)


def _aurocs(audit: pd.DataFrame, source: str = "all") -> dict[str, float]:
    found = audit[(audit["metric"] == "auroc") & (audit["source"] == source)]
    return dict(zip(found["feature_group"], found["value"], strict=True))


def test_a_label_tied_to_the_scanner_is_found_and_named():
    audit = shortcut_audit(*_scanners(tied=True))
    aurocs = _aurocs(audit)
    assert aurocs["intensity"] > 0.95
    assert aurocs["source"] == pytest.approx(1.0)
    assert aurocs["all"] > 0.95
    assert aurocs["size"] == pytest.approx(0.5)  # both scanners store 256 x 256 images
    assert set(audit.loc[audit["metric"] == "auroc", "source"]) == {"all"}  # no source has both
    warnings, notes = audit_findings(audit)
    assert not notes
    assert any("'intensity'" in warning for warning in warnings)
    assert any("'source'" in warning for warning in warnings)
    assert any("every tumour slice of the train split comes from source 'scanner_a'" in warning
               for warning in warnings)  # fmt: skip
    names = audit_metric_names(audit)
    assert names["audit/val/auroc/intensity"] == aurocs["intensity"]
    assert names["audit/train/scanner_a/n_tumor"] == 120
    assert names["audit/test/scanner_b/n_normal"] == 30


def test_a_label_independent_of_the_scanner_raises_no_warning():
    audit = shortcut_audit(*_scanners(tied=False), model="logistic")
    for source in ("all", "scanner_a", "scanner_b"):  # both scanners hold both labels
        for group, auroc in _aurocs(audit, source).items():
            assert 0.3 < auroc < 0.7, (source, group)
    assert "audit/val/scanner_a/auroc/size" in audit_metric_names(audit)
    warnings, notes = audit_findings(audit)
    assert warnings == [] and notes == []


def test_validation_with_one_class_makes_the_auroc_not_applicable():
    rows, images = _scanners(tied=True)
    rows = rows[~((rows["split"] == "val") & (rows["tumor"] == 1))]
    audit = shortcut_audit(rows, images)
    auroc = audit[audit["metric"] == "auroc"]
    assert len(auroc) == 1 and np.isnan(auroc["value"].iloc[0])
    warnings, notes = audit_findings(audit)
    assert notes == ["Shortcut audit AUROC not applicable: validation holds only normal slices"]
    assert not any("AUROC" in warning for warning in warnings)


def test_letterbox_padding_and_size_are_measured():
    image = np.zeros((1, 8, 8), dtype=np.uint8)
    image[0, 2:6, :] = 9  # a wide image letterboxed: two zero rows above and below
    rows = pd.DataFrame({"image_ref": [0], "rows": [100], "cols": [200], "source": ["a"]})
    features = trivial_features(image, rows).iloc[0]
    assert features["padding/fraction"] == pytest.approx(0.5)
    assert features["size/aspect"] == pytest.approx(2.0)
    assert features["source/a"] == 1.0


def test_rows_without_the_source_size_are_refused_naming_the_column():
    rows, images = _scanners(tied=True)
    with pytest.raises(ValueError, match="cols, rows"):
        shortcut_audit(rows.drop(columns=["rows", "cols"]), images)


def test_the_data_preparation_node_reads_sizes_from_the_store_and_warns(caplog):
    rows, images = _scanners(tied=True, n=80)
    slices = rows.drop(columns=["split", "rows", "cols"]).assign(
        patient_id=[f"unit-{ref}" for ref in rows["image_ref"]],
        study_id="s",
        series_id="s",
        slice_index=0,
        boxes=[[] for _ in range(len(rows))],
        mask_ref=None,
    )
    splits = with_fingerprint(
        rows[["split", "tumor"]].assign(patient_id=slices["patient_id"]), slices
    )
    records = rows[["image_ref", "rows", "cols"]]
    store = SliceStore(images=images, masks=images[:0], records=records, quarantine=None)
    with caplog.at_level(logging.WARNING):
        audit, metrics = audit_shortcuts(slices, splits, store, AuditParams(model="logistic"))
    assert "Shortcut audit: trivial features 'intensity'" in caplog.text
    assert metrics["audit/val/auroc/source"]["value"] == pytest.approx(1.0)
    assert metrics["audit/val/scanner_a/n_tumor"] == {"value": 40.0, "step": 0}
    assert set(audit.columns) == set(AUDIT_COLUMNS)


def test_intensity_in_a_single_source_cohort_is_a_note_not_a_warning():
    rows, images = _scanners(tied=True)
    audit = shortcut_audit(rows.assign(source="scanner_a"), images)
    assert _aurocs(audit)["intensity"] > 0.95  # here brightness is the label itself
    warnings, notes = audit_findings(audit)
    assert warnings == []
    assert any("'intensity'" in note and "single source" in note for note in notes)
