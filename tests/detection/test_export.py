"""The YOLO export: file format, incremental rewrites, and the checks before training."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from medvit.detection.export import (
    DetectionInputError,
    ExportPlan,
    YoloDataset,
    plan_export,
    verify_export,
    write_export,
    yolo_label,
)
from medvit.splits import with_fingerprint


def test_labels_are_normalised_centres_and_backgrounds_are_empty():
    assert yolo_label([[16, 8, 48, 24]], height=64, width=64) == (
        "0 0.500000 0.250000 0.500000 0.250000\n"
    )
    assert yolo_label([], 64, 64) == ""
    assert yolo_label(None, 64, 64) == ""


def test_export_layout(exported, plan):
    data = yaml.safe_load(exported.data_yaml.read_text())
    assert data["names"] == {0: "tumor"}
    assert (data["train"], data["val"], data["test"]) == (
        "images/train",
        "images/val",
        "images/test",
    )
    for split, group in plan.items.groupby("split"):
        assert len(list(exported.image_dir(split).glob("*.png"))) == len(group)
    labels = {p.stem: p.read_text() for p in (exported.root / "labels" / "train").glob("*.txt")}
    assert sum(text != "" for text in labels.values()) == 4  # 2 patients x 2 tumour slices
    assert sum(text == "" for text in labels.values()) == 12  # background: empty, no dummy box


def test_rerun_rewrites_only_what_changed(tmp_path, plan, cohort):
    root = tmp_path / "yolo"
    first = write_export(root, plan)
    assert (first.written, first.unchanged, first.removed) == (48, 0, 0)
    digest = YoloDataset(root).digest()

    again = write_export(root, plan)
    assert (again.written, again.unchanged, again.removed) == (0, 48, 0)
    assert YoloDataset(root).digest() == digest

    images = plan.images.copy()
    train_item = plan.items[plan.items["split"] == "train"].iloc[0]
    images[train_item["image_ref"]] ^= 1  # one training slice's pixels change
    changed = write_export(root, ExportPlan(images, plan.items))
    assert (changed.written, changed.unchanged) == (1, 47)
    assert YoloDataset(root).digest() != digest

    slices, splits, _ = cohort
    moved = splits.assign(split=splits["split"].where(splits.patient_id != "P-test3", "val"))
    summary = write_export(root, plan_export(slices, moved, images))
    assert (summary.written, summary.removed) == (4, 4)  # 4 slices moved from test to val
    assert not list((root / "images" / "test").glob("P-test3*"))


def test_a_damaged_file_is_rewritten_and_caught_before_training(tmp_path, plan, exported):
    victim = next(exported.image_dir("train").glob("*.png"))
    victim.write_bytes(victim.read_bytes()[:40])  # truncated on disk
    with pytest.raises(DetectionInputError, match=victim.name):
        verify_export(exported)
    summary = write_export(exported.root, plan)
    assert summary.written == 1
    verify_export(exported)


def test_plan_refuses_data_a_detector_cannot_learn_or_be_judged_on(cohort):
    slices, splits, images = cohort
    no_train = splits.assign(split=splits["split"].replace({"train": "unused"}))
    with pytest.raises(DetectionInputError, match="train split has no slices"):
        plan_export(slices, no_train, images)
    normal_val = slices.assign(
        tumor=slices["tumor"].where(~slices.patient_id.str.contains("val"), 0)
    )
    with pytest.raises(DetectionInputError, match="val have no tumour slice"):
        plan_export(normal_val, with_fingerprint(splits, normal_val), images)


def test_unused_patients_are_not_exported(cohort):
    slices, splits, images = cohort
    splits = splits.assign(split=splits["split"].where(splits.patient_id != "P-train3", "unused"))
    plan = plan_export(slices, splits, images)
    assert not plan.items["name"].str.startswith("P-train3").any()
    assert set(plan.items["split"]) == {"train", "val", "test"}


def test_file_names_carry_the_whole_slice_key(cohort):
    """A T2 series and a follow-up study number their slices like the T1 series: every slice
    still gets its own file, named by patient, study, series and slice index."""
    slices, splits, images = cohort
    first = slices[slices.patient_id == "P-train0"]
    t2 = first.assign(series_id="R-t2")
    follow_up = first.assign(study_id="S-later", series_id="R-later")
    more = pd.concat([slices, t2, follow_up], ignore_index=True)
    plan = plan_export(more, with_fingerprint(splits, more), images)
    names = plan.items.loc[plan.items.name.str.startswith("P-train0_"), "name"]
    assert len(names) == names.nunique() == 3 * 4
    assert "P-train0_S-P-train0_R-t2_0001" in set(names)
    assert "P-train0_S-later_R-later_0003" in set(names)

    twice = pd.concat([slices, first], ignore_index=True)
    with pytest.raises(DetectionInputError, match=r"4 slice\(s\) repeat a \(patient_id, study_id"):
        plan_export(twice, with_fingerprint(splits, twice), images)
