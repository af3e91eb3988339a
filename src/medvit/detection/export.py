"""The split slices as a YOLO dataset folder, rewritten only where something changed.

Ultralytics trains from image and label files on disk, so the memory-mapped slice store has to be
written out once per split. That is the I/O-heavy step of detection, and most reruns change
nothing (a new epoch count, a new seed), so every file carries a digest of what it was made from
in `manifest.parquet`; a rerun rewrites only files whose content, split or on-disk state differs,
and drops files no longer in the plan. The new folder is built beside the old one, unchanged files
hard-linked from it, and swapped in whole, so a failed export never leaves a mix of the two.
Normal slices are background images: an empty label file, never a dummy box.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd
import yaml
from PIL.PngImagePlugin import PngImageFile

from medvit.atomic import replacing
from medvit.evaluation.ptp import SLICE_KEY
from medvit.identity import content_digest, table_digest
from medvit.splits import slices_in

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# What ultralytics trains on (train) and keeps the best epoch by (val); never test.
LEARNT_FROM = ("train", "val")
CLASS_NAMES = {0: "tumor"}
# Part of every digest: bump it when the file format changes and every file is rewritten once.
FORMAT_VERSION = "1"
MANIFEST = "manifest.parquet"
MANIFEST_COLUMNS = ["name", "split", "digest", "size", "mtime_ns"]


class DetectionInputError(ValueError):
    """The data cannot train or judge a detector; raised before any training starts."""


@dataclass(frozen=True)
class ExportPlan:
    """What the folder must hold: one row per slice (split, name, image_ref, boxes)."""

    images: np.ndarray
    items: pd.DataFrame


@dataclass(frozen=True)
class YoloDataset:
    """An exported folder: `data_yaml` is what ultralytics is given."""

    root: Path

    @property
    def data_yaml(self) -> Path:
        return self.root / "data.yaml"

    def image_dir(self, split: str) -> Path:
        return self.root / "images" / split

    def manifest(self) -> pd.DataFrame:
        path = self.root / MANIFEST
        if not path.is_file():
            return pd.DataFrame(columns=MANIFEST_COLUMNS)
        return pd.read_parquet(path)

    def digest(self, splits: tuple[str, ...] = LEARNT_FROM) -> str:
        """One digest of the content and split of the files in `splits`.

        By default the splits a training run learns from and selects its best epoch on: a
        detector's identity must not change when only its test split does (external validation
        adds test data to a trained model, it never retrains it).
        """
        manifest = self.manifest()
        manifest = manifest[manifest["split"].isin(splits)]
        return table_digest(
            manifest.sort_values(["split", "name"], ignore_index=True), ["split", "name", "digest"]
        )


def plan_export(slices: pd.DataFrame, splits: pd.DataFrame, images: np.ndarray) -> ExportPlan:
    """Every slice of a train, val or test patient, with a stable file name.

    Fails before anything is written when training could not start or could not be judged: an
    empty train split, or a split with no tumour slice (no box to learn from or to find).
    """
    items = slices_in(slices, splits, SPLITS)
    counts = items.groupby("split")["tumor"].agg(["size", "sum"]).reindex(SPLITS, fill_value=0)
    if counts.loc["train", "size"] == 0:
        raise DetectionInputError("The train split has no slices: there is nothing to train on.")
    no_tumour = [split for split in SPLITS if counts.loc[split, "sum"] == 0]
    if no_tumour:
        raise DetectionInputError(
            f"Split(s) {', '.join(no_tumour)} have no tumour slice, so a detector cannot be "
            "trained or judged there; check the splits parameters (tumor_patients) and the labels."
        )
    names = _file_names(items)
    table = pd.DataFrame(
        {
            "split": items["split"].to_numpy(),
            "name": names.to_numpy(),
            "image_ref": items["image_ref"].to_numpy(),
            "boxes": items["boxes"].to_numpy(),
        }
    )
    return ExportPlan(images=images, items=table.sort_values("name", ignore_index=True))


def _file_names(items: pd.DataFrame) -> pd.Series:
    """`<patient>_<study>_<series>_<slice>`: file names carry the whole slice key.

    A patient's T1 and T2 series (or two studies) number their slices alike, so any shorter name
    would let them overwrite each other. Pseudonyms keep the names free of identifiers.
    """
    names = (
        items["patient_id"]
        + "_"
        + items["study_id"]
        + "_"
        + items["series_id"]
        + "_"
        + items["slice_index"].map("{:04d}".format)
    )
    duplicated = names[names.duplicated()]
    if len(duplicated):
        raise DetectionInputError(
            f"{len(duplicated)} slice(s) repeat a ({', '.join(SLICE_KEY)}) of another slice, e.g. "
            f"{', '.join(duplicated.head(3))}; each slice must appear once in the slice table "
            "(rerun data_preparation)"
        )
    return names


def yolo_label(boxes: object, height: int, width: int) -> str:
    """`[x1, y1, x2, y2]` pixel boxes as YOLO lines: class, centre and size, normalised."""
    lines = []
    for x1, y1, x2, y2 in boxes if boxes is not None else []:
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"0 {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _digest(image: np.ndarray, label: str) -> str:
    return content_digest(FORMAT_VERSION, image, label)


@dataclass(frozen=True)
class ExportSummary:
    written: int
    unchanged: int
    removed: int
    seconds: float


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


class _Pending(NamedTuple):
    name: str
    split: str
    digest: str
    image: np.ndarray
    label: str


def _files(root: Path, split: str, name: str) -> tuple[Path, Path]:
    """An item's image and label file."""
    return root / "images" / split / f"{name}.png", root / "labels" / split / f"{name}.txt"


def _write(root: Path, item: _Pending) -> tuple[str, str, str, int, int]:
    """Write one image and its label; return its manifest row."""
    ok, png = cv2.imencode(".png", item.image)
    if not ok:
        raise DetectionInputError(f"Slice {item.name} could not be encoded as PNG for the export.")
    image_path, label_path = _files(root, item.split, item.name)
    image_path.write_bytes(png.tobytes())
    label_path.write_text(item.label)
    return (item.name, item.split, item.digest, *_file_state(image_path))


def _link_unchanged(old_root: Path, new_root: Path, split: str, name: str, old: pd.Series) -> bool:
    """Hard-link an item's files from the previous export if they are still what it wrote."""
    old_image, old_label = _files(old_root, split, name)
    if _file_state(old_image) != (old["size"], old["mtime_ns"]) or not old_label.is_file():
        return False
    for source, target in zip((old_image, old_label), _files(new_root, split, name), strict=True):
        os.link(source, target)
    return True


def _count_stale(root: Path, keep: set[tuple[str, str]]) -> int:
    """Images of the previous export that the plan no longer holds."""
    return sum(
        (path.parent.name, path.stem) not in keep for path in (root / "images").glob("*/*.png")
    )


def write_export(root: Path, plan: ExportPlan, workers: int | None = None) -> ExportSummary:
    """Build the export beside `root` and swap it in (`medvit.atomic.replacing`).

    Unchanged files are hard links into the previous export, so a rerun that changes nothing
    writes no image, and a killed or failed export leaves the previous folder as it was. PNG
    encoding runs on threads (OpenCV drops the GIL).
    """
    start = time.perf_counter()
    height, width = plan.images.shape[1:3]
    with replacing(root) as staging:  # recovers a previous export whose swap was interrupted
        previous = YoloDataset(root).manifest().set_index(["split", "name"])
        for kind in ("images", "labels"):
            for split in SPLITS:
                (staging / kind / split).mkdir(parents=True)
        rows, pending = [], []
        for item in plan.items.itertuples(index=False):
            image = plan.images[item.image_ref]
            label = yolo_label(item.boxes, height, width)
            digest = _digest(image, label)
            key = (item.split, item.name)
            old = previous.loc[key] if key in previous.index else None
            if (
                old is not None
                and old["digest"] == digest
                and _link_unchanged(root, staging, item.split, item.name, old)
            ):
                rows.append((item.name, item.split, digest, old["size"], old["mtime_ns"]))
            else:
                pending.append(_Pending(item.name, item.split, digest, image, label))
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            rows.extend(pool.map(lambda item: _write(staging, item), pending))
        removed = _count_stale(root, set(zip(plan.items["split"], plan.items["name"], strict=True)))
        if not pending and not removed:  # ultralytics' label caches still describe this set
            for cache in (root / "labels").glob("*.cache"):
                os.link(cache, staging / "labels" / cache.name)
        data = {"path": str(root.resolve()), "names": CLASS_NAMES}
        data.update({split: f"images/{split}" for split in SPLITS})
        (staging / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_parquet(staging / MANIFEST, index=False)
    summary = ExportSummary(
        len(pending), len(rows) - len(pending), removed, time.perf_counter() - start
    )
    logger.info(
        "YOLO export %s: %d written, %d unchanged, %d removed in %.1f s",
        root,
        summary.written,
        summary.unchanged,
        summary.removed,
        summary.seconds,
    )
    return summary


def verify_export(dataset: YoloDataset) -> None:
    """Fail on a missing or corrupt exported image, which ultralytics would drop with a warning.

    PIL's `verify` checks the PNG structure and checksums without decoding the pixels. The PNG
    reader is used directly: ultralytics replaces `PIL.Image.open` with a version that tries to
    install a HEIF plugin when a file is unreadable.
    """
    problems = []
    for item in dataset.manifest().itertuples(index=False):
        path = dataset.image_dir(item.split) / f"{item.name}.png"
        try:
            with PngImageFile(path) as image:
                image.verify()
        except (OSError, SyntaxError) as error:
            problems.append(f"{path}: {error}")
    if problems:
        listed = "\n  ".join(problems[:10])
        raise DetectionInputError(
            f"{len(problems)} image(s) of the YOLO export are missing or corrupt; run the export "
            f"node again (it rewrites them) before training:\n  {listed}"
        )
