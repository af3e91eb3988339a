"""DB-SAM and the decoder-only SAM baseline on real tumour masks: figshare folds 1-3 train, fold 4
is held out.

The figshare brain-tumour set (`../shared/data/brain_mri/figshare`, 2,400 T1 post-contrast slices
with the authors' tumour masks; folds are patient-disjoint) is what the demo's synthetic blobs
cannot tell us. Two steps, so that the training can run where a GPU is while the images stay
where they are:

- `prepare`: letterbox every slice and its mask to the stored size exactly as ingestion does
  (`medvit.imaging.intensity.Letterbox`, 8-bit), into one compressed `.npz` (kept outside the
  repository: the set may not be redistributed);
- `train`: both models through `medvit.training.fit` with the same budget, a fixed number of
  epochs and no early stopping (so nothing is chosen on fold 4), boxes from the true masks jittered
  by 0-20 px (1024-px scale) at training; then oracle-box predictions on fold 4, scored with
  `medvit.evaluation.segmentation.mask_scores` (Dice, HD95 in stored pixels: the redistribution
  carries no pixel spacing, so no millimetres are claimed).

Fold 4 has no patient identifiers, so its intervals resample slices and are too narrow: read them
as a floor on the uncertainty.

Run: `uv run python benchmarks/segmentation_real_data.py prepare --out /tmp/figshare128.npz`, then
`uv run python benchmarks/segmentation_real_data.py train --data /tmp/figshare128.npz` (add
`--epochs`, `--batch-size`, `--encoder vit_b` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from medvit.evaluation.segmentation import mask_scores
from medvit.imaging.intensity import Letterbox
from medvit.models.dbsam import SegmentationTask, build_segmenter, parameter_counts
from medvit.training import TrainConfig, fit, predict
from medvit.training.segmentation_data import SegmentationSliceDataset

FIGSHARE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "brain_mri" / "figshare"
TRAIN_FOLDS, HELD_OUT_FOLD = (1, 2, 3), 4


def prepare(root: Path, out: Path, size: int) -> None:
    manifest = pd.read_csv(root / "manifest.csv")
    images, masks, folds = [], [], []
    for row in manifest.itertuples():
        image = cv2.imread(str(root / row.image), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(root / row.mask), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None or image.shape != mask.shape:
            raise SystemExit(f"{row.image}: unreadable image or mask, or sizes differ")
        box = Letterbox(*image.shape, size)
        images.append(box.image(image))
        masks.append(box.image((mask > 0).astype(np.uint8) * 255, nearest=True))
        folds.append(row.fold)
    np.savez_compressed(out, images=np.stack(images), masks=np.stack(masks), folds=np.array(folds))
    print(f"{len(images)} slices of {size} px from {root} -> {out}")


def _dataset(data: dict, folds: tuple[int, ...], jitter_px: float) -> SegmentationSliceDataset:
    refs = np.flatnonzero(np.isin(data["folds"], folds))
    side = data["images"].shape[-1]
    return SegmentationSliceDataset(
        data["images"], data["masks"], refs, refs, jitter_px=jitter_px, image_size=side
    )


def train(args: argparse.Namespace) -> dict:
    loaded = np.load(args.data)
    data = {key: loaded[key] for key in ("images", "masks", "folds")}
    train_set = _dataset(data, TRAIN_FOLDS, jitter_px=20.0)
    held_out = _dataset(data, (HELD_OUT_FOLD,), jitter_px=0.0)
    truth = np.stack([data["masks"][ref] > 0 for ref in held_out.refs])
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=0.01,
        warmup_epochs=1,
        early_stopping=None,
        seed=0,
    )
    print(
        f"train folds {TRAIN_FOLDS}: {len(train_set)} slices ({len(train_set.skipped)} skipped);"
        f" held-out fold {HELD_OUT_FOLD}: {len(held_out)} slices; device"
        f" {'cuda' if torch.cuda.is_available() else 'cpu'}; {args.encoder}, {args.epochs} epochs,"
        f" batch {args.batch_size}, lr {args.lr}",
        flush=True,
    )
    results = {}
    for kind in ("dbsam", "sam_decoder"):
        torch.manual_seed(0)
        model = build_segmenter(kind, {"encoder": args.encoder})
        start = time.perf_counter()
        fitted = fit(model, SegmentationTask(), train_set, None, config).model
        seconds = time.perf_counter() - start
        outputs = predict(fitted, SegmentationTask(return_masks=True), held_out, config)
        pred = outputs["mask"][:, 0] > 0
        scores = mask_scores(pred, truth, [None] * len(truth), tolerance_mm=2.0)
        rng = np.random.default_rng(0)
        draws = rng.integers(0, len(scores), size=(1000, len(scores)))
        dice = scores["dice"].to_numpy()
        low, high = np.percentile(dice[draws].mean(axis=1), [2.5, 97.5])
        results[kind] = {
            **parameter_counts(fitted),
            "train_seconds": round(seconds, 1),
            "train_images_per_s": round(len(train_set) * args.epochs / seconds, 1),
            "dice_mean": round(float(dice.mean()), 4),
            "dice_ci_slices": [round(float(low), 4), round(float(high), 4)],
            "dice_median": round(float(np.median(dice)), 4),
            "hd95_px_mean": round(float(scores["hd95_px"].mean()), 2),
            "hd95_px_median": round(float(scores["hd95_px"].median()), 2),
            "empty_predictions": int((scores["pred_px"] == 0).sum()),
        }
        print(kind, json.dumps(results[kind]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    prep = steps.add_parser("prepare")
    prep.add_argument("--root", type=Path, default=FIGSHARE)
    prep.add_argument("--out", type=Path, required=True)
    prep.add_argument("--size", type=int, default=128, help="the stored size (ingestion default)")
    run = steps.add_parser("train")
    run.add_argument("--data", type=Path, required=True)
    run.add_argument("--encoder", choices=("tiny", "vit_b"), default="tiny")
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--lr", type=float, default=1e-3)
    run.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.root, args.out, args.size)
        return
    results = train(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
