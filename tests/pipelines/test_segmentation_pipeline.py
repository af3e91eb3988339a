"""The segmentation pipeline on the tiny demo cohort, prompted by true boxes and by detector boxes.

The detector's predictions are written here (true boxes, a spurious box, a missed slice) rather
than trained: the pipeline's contract with detection is the `detector.*_predictions` tables, and
a one-epoch YOLO finds nothing worth prompting on a 64 px cohort.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from medvit.evaluation.segmentation import unpack_mask
from medvit.splits import slices_in

ONE_EPOCH = {
    "segmentation": {
        "training": {"epochs": 1, "batch_size": 8, "progress": False},
        "evaluation": {"n_bootstrap": 20, "figure_slices": 2},
    }
}


def _detector_predictions(project) -> dict[str, int]:
    """Per val/test slice: its true boxes (confidence 0.9) except on the first tumour slice of
    each split (missed), and one spurious box (0.95, so that the threshold chosen on val keeps
    it) on the first slice without tumour."""
    slices = pd.read_parquet(project / "data/03_primary/slices.parquet")
    splits = pd.read_parquet(project / "data/05_model_input/splits.parquet")
    table = slices_in(slices, splits, ("val", "test"))
    expected = {}
    for split, rows in table.groupby("split"):
        rows = rows.reset_index(drop=True)
        missed = rows.index[rows["mask_ref"].notna()][0]
        spurious = rows.index[rows["mask_ref"].isna()][0]
        boxes = [[[*map(float, box), 0.9] for box in b] for b in rows["boxes"]]
        boxes[missed] = []
        boxes[spurious] = [[2.0, 2.0, 12.0, 12.0, 0.95]]
        expected[split] = int(rows["mask_ref"].notna().sum())
        rows.assign(score=[max([b[4] for b in bs], default=0.0) for bs in boxes], boxes=boxes)[
            ["patient_id", "study_id", "series_id", "slice_index", "tumor", "score", "boxes"]
        ].to_parquet(project / f"data/07_model_output/detector_{split}_predictions.parquet")
    return expected


@pytest.mark.slow
def test_both_models_are_trained_prompted_scored_and_reported(project, run_kedro, latest_run):
    run_kedro("data_preparation")
    (project / "data/07_model_output").mkdir(parents=True, exist_ok=True)
    tumour_slices = _detector_predictions(project)
    run_kedro("segmentation", ONE_EPOCH)

    run = latest_run()
    metrics, params = run.data.metrics, run.data.params
    for model in ("dbsam", "sam_decoder"):
        for split in ("val", "test"):
            for prompt in ("oracle", "detector"):
                name = f"seg/{model}/{split}/{prompt}"
                assert 0.0 <= metrics[f"{name}_dice"] <= 1.0
                assert metrics[f"{name}_n_slices"] == tumour_slices[split]
            assert metrics[f"seg/{model}/{split}/oracle_missed_slices"] == 0
            assert metrics[f"seg/{model}/{split}/oracle_spurious_boxes"] == 0
            assert metrics[f"seg/{model}/{split}/detector_missed_slices"] == 1
            assert metrics[f"seg/{model}/{split}/detector_spurious_boxes"] == 1
        counts = {k: int(params[f"seg/{model}/parameters_{k}"]) for k in ("trainable", "frozen")}
        assert counts["trainable"] > 0 and counts["frozen"] > 0
        history = MlflowClient().get_metric_history(run.info.run_id, f"fit/{model}/val_dice")
        assert [point.step for point in history] == [1]

    output = project / "data/07_model_output/segmentation"
    (masks_file,) = (output / "dbsam_predicted_masks.parquet").glob("*/*.parquet")  # versioned
    masks = pd.read_parquet(masks_file)
    assert set(masks["prompt"]) == {"oracle", "detector"}
    size = np.load(project / "data/04_feature/slice_store/masks.npy", mmap_mode="r").shape[-1]
    assert unpack_mask(masks["mask"].iloc[0], (size, size)).shape == (size, size)

    volumes = sorted((output / "dbsam_label_volumes").rglob("*.nii.gz"))
    test_series = masks.loc[masks["split"] == "test", "series_id"].nunique()
    assert len(volumes) >= test_series > 0
    volume = nib.load(volumes[0])
    assert volume.shape[:2] == (size, size) and volume.header.get_xyzt_units()[0] == "mm"

    report = (project / "data/08_reporting/segmentation_report.md").read_text()
    assert "detector boxes" in report and "segmentation/dbsam_contours.png" in report
    assert (project / "data/08_reporting/segmentation/sam_decoder_contours.png").is_file()
    assert (project / "data/08_reporting/segmentation_report.html").is_file()
