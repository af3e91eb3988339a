"""A detector's identity is what it learns from (train) and is selected on (val), never its test
split: an external test set added later must not make a trained detector look stale."""

from __future__ import annotations

from medvit.detection.export import ExportPlan, YoloDataset, plan_export, write_export
from medvit.detection.yolo import run_identity
from medvit.splits import with_fingerprint

SETTINGS = {"epochs": 2, "imgsz": 64, "batch": 8, "seed": 0}


def _identity(root) -> dict[str, str]:
    return run_identity(YoloDataset(root), "yolov8n.yaml", SETTINGS)


def _edited(plan: ExportPlan, split: str) -> ExportPlan:
    """The plan with the pixels of one slice of `split` changed."""
    images = plan.images.copy()
    images[plan.items.loc[plan.items["split"] == split, "image_ref"].iloc[0]] ^= 1
    return ExportPlan(images, plan.items)


def test_changing_only_the_test_split_keeps_the_identity(tmp_path, plan, cohort):
    root = tmp_path / "yolo"
    write_export(root, plan)
    before = _identity(root)

    write_export(root, _edited(plan, "test"))  # other test pixels
    assert _identity(root) == before
    slices, splits, images = cohort
    kept = slices[slices["patient_id"] != "P-test3"]  # a test patient fewer
    fewer = with_fingerprint(splits[splits["patient_id"] != "P-test3"], kept)
    write_export(root, plan_export(kept, fewer, images))
    assert _identity(root) == before


def test_changing_train_or_val_changes_the_identity(tmp_path, plan):
    for split in ("train", "val"):
        root = tmp_path / split
        write_export(root, plan)
        before = _identity(root)
        write_export(root, _edited(plan, split))
        assert _identity(root)["data"] != before["data"], split
