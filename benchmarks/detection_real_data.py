"""YOLOv8 on the real brain MRI of ../shared/data: figshare folds 1-3 + Br35H train, fold 4 tests.

The split is the one the detection issue asks for. Figshare has no patient ids, only the authors'
patient-disjoint folds, so fold 4 is the held-out unit; 25% of the Br35H no-tumour images (one
unit each) join it as normal test slices. There is no validation split: ultralytics validates only
after the last epoch (`val: false`), on the test images, so nothing is selected on them, and the
slice decision uses ultralytics' default confidence 0.25 instead of a threshold tuned on test.
PTP metrics are not applicable (no patients). Beware the source confound: every tumour slice is
figshare and every normal slice Br35H (other scanners), so a detector may find the source.
Run: `uv run python benchmarks/detection_real_data.py [--epochs 10] [--imgsz 128]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medvit.detection.export import YoloDataset, plan_export, write_export
from medvit.detection.yolo import predict_slices, resolve_device, train_detector, validate_detector
from medvit.evaluation.ptp import SLICE_KEY
from medvit.evaluation.slice_metrics import slice_metrics
from medvit.ingestion.config import ImageFolderSource, IngestionParams
from medvit.ingestion.store import open_store, write_store
from medvit.ingestion.stream import stream_units
from medvit.ingestion.table import build_slice_table
from medvit.pipelines.data_preparation.nodes import patient_units
from medvit.splits import with_fingerprint

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_mri"
DECISION_CONF = 0.25  # ultralytics' default predict confidence: a threshold not tuned on test


def ingest(folder: Path, size: int) -> tuple[pd.DataFrame, np.ndarray]:
    sources = [
        ImageFolderSource(
            name="figshare",
            root=DATA / "figshare",
            group_column="fold",
            mask_column="mask",
            tumor_type_column="tumor_type",
        ),
        ImageFolderSource(name="br35h", root=DATA / "br35h_no_tumor", unit="image"),
    ]
    params = IngestionParams(sources=sources, image_size=size)
    write_store(folder, stream_units(sources, params, "real-data-benchmark"))
    store = open_store(folder)
    table, _ = build_slice_table(store.records, store.quarantine)
    return table, store.images


def split_units(table: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fold 4 and a quarter of Br35H test; the rest trains; val mirrors test (see above).

    The mirror gets its own unit ids, so the export plan sees three disjoint splits.
    """
    units = patient_units(table)
    rng = np.random.default_rng(seed)
    normal = units.index[units.tumor == 0].to_numpy()  # the Br35H images, one unit each
    test_normal = set(rng.permutation(normal)[: len(normal) // 4])
    held_out = (units.group.astype(str) == "4") | units.index.isin(test_normal)
    units["split"] = np.where(held_out, "test", "train")
    mirror = units[held_out].assign(patient_id=lambda u: u.patient_id + "~val", split="val")
    mirrored = table[table.patient_id.isin(mirror.patient_id.str[:-4])]
    mirrored = mirrored.assign(patient_id=mirrored.patient_id + "~val")
    exported = pd.concat([table, mirrored])
    return exported, with_fingerprint(pd.concat([units, mirror], ignore_index=True), exported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"real brain MRI data not found at {DATA}")
    device = resolve_device("auto")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        table, images = ingest(Path(tmp) / "store", args.imgsz)
        exported, units = split_units(table, args.seed)
        plan = plan_export(exported, units, images)
        test_items = plan.items[plan.items.split == "test"]
        write_export(Path(tmp) / "yolo", plan)
        dataset = YoloDataset(Path(tmp) / "yolo")
        print(
            f"cpus={os.cpu_count()} device={device}; ingest + export "
            f"{time.perf_counter() - start:.0f} s; {len(table)} slices, "
            f"train {(plan.items.split == 'train').sum()}, "
            f"test {len(test_items)} ({test_items.boxes.map(len).gt(0).sum()} tumour)"
        )

        settings = {
            "epochs": args.epochs,
            "imgsz": args.imgsz,
            "batch": args.batch,
            "device": device,
            "workers": 2,
            "seed": args.seed,
            "val": False,
            "plots": False,
            "close_mosaic": max(1, args.epochs // 4),
        }
        trained = train_detector(dataset, "yolov8n.yaml", settings, Path(tmp) / "run")
        history = trained.history()
        per_epoch = history["time"].diff().fillna(history["time"]).median()
        box = validate_detector(
            trained.best,
            dataset,
            "test",
            {"imgsz": args.imgsz, "batch": 32, "device": device},
            Path(tmp),
        )

        test_ids = set(units.loc[units.split == "test", "patient_id"])
        rows = table[table.patient_id.isin(test_ids)].reset_index(drop=True)
        scored = predict_slices(
            trained.best,
            images,
            rows.image_ref.tolist(),
            32,
            {"imgsz": args.imgsz, "conf": 0.001, "device": device},
        )
        # figshare slices share a fold as their "patient": number them so each is one slice
        rows = rows.assign(score=[score for score, _ in scored], slice_index=range(len(rows)))
        slices = slice_metrics(rows[[*SLICE_KEY, "score", "tumor"]], DECISION_CONF, n_bootstrap=200)
        value = slices.set_index("metric")["value"]
        print(
            f"settings: yolov8n from scratch, imgsz {args.imgsz}, batch {args.batch}, "
            f"{args.epochs} epochs, seed {args.seed}"
        )
        print(f"time per epoch {per_epoch:.0f} s ({len(history)} epochs)")
        print("test (fold 4 + 25% Br35H): " + ", ".join(f"{k} {v:.3f}" for k, v in box.items()))
        print(
            f"slice level at conf >= {DECISION_CONF}: sensitivity {value['sensitivity']:.3f}, "
            f"specificity {value['specificity']:.3f}, AUROC {value['auroc']:.3f}"
        )


if __name__ == "__main__":
    main()
