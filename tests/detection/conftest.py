"""A tiny slice store in memory: bright discs with their boxes on noise, a few patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medvit.detection.export import ExportPlan, YoloDataset, plan_export, write_export
from medvit.splits import with_fingerprint

SIZE = 64


def _slice(rng: np.random.Generator, box: list[int] | None) -> np.ndarray:
    image = rng.normal(60, 10, (SIZE, SIZE)).clip(0, 255)
    if box is not None:
        x1, y1, x2, y2 = box
        yy, xx = np.mgrid[:SIZE, :SIZE]
        inside = ((xx - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 + (
            (yy - (y1 + y2) / 2) / ((y2 - y1) / 2)
        ) ** 2 <= 1
        image[inside] = 220
    return image.astype(np.uint8)


@pytest.fixture
def cohort() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Slices, splits and pixels: per split two tumour and two normal patients of 4 slices."""
    rng = np.random.default_rng(0)
    rows, images, patients = [], [], []
    for split in ("train", "val", "test"):
        for index in range(4):
            patient, tumour = f"P-{split}{index}", index < 2
            patients.append((patient, split, int(tumour)))
            for slice_index in range(4):
                box = [20, 18, 36, 34] if tumour and slice_index in (1, 2) else None
                rows.append(
                    {
                        "patient_id": patient,
                        "study_id": f"S-{patient}",
                        "series_id": f"R-{patient}",
                        "slice_index": slice_index,
                        "tumor": int(box is not None),
                        "boxes": [box] if box else [],
                        "image_ref": len(images),
                    }
                )
                images.append(_slice(rng, box))
    slices = pd.DataFrame(rows)
    splits = pd.DataFrame(patients, columns=["patient_id", "split", "tumor"])
    return slices, with_fingerprint(splits, slices), np.stack(images)


@pytest.fixture
def plan(cohort) -> ExportPlan:
    slices, splits, images = cohort
    return plan_export(slices, splits, images)


@pytest.fixture
def exported(tmp_path, plan) -> YoloDataset:
    write_export(tmp_path / "yolo", plan)
    return YoloDataset(tmp_path / "yolo")
