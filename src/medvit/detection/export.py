"""The split slices as a YOLO dataset folder, rewritten only where something changed.

Ultralytics trains from image and label files on disk, so the memory-mapped slice store has to be
written out once per split. That is the I/O-heavy step of detection, and most reruns change
nothing (a new epoch count, a new seed), so every file carries a digest of what it was made from
in `manifest.parquet`; a rerun rewrites only files whose content, split or on-disk state differs,
and deletes files no longer in the plan. Normal slices are background images: an empty label file,
never a dummy box.
"""

from __future__ import annotations

import hashlib
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

from medvit.splits import slices_in

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
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

    def digest(self) -> str:
        """One digest of every file's content and split: what a training run was trained on."""
        manifest = self.manifest().sort_values("name")
        text = "\n".join(manifest["split"] + "/" + manifest["name"] + ":" + manifest["digest"])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    names = (
        items["patient_id"].str[:16]
        + "_"
        + items["series_id"].str[:8]
        + "_"
        + items["slice_index"].map("{:04d}".format)
    )
    table = pd.DataFrame(
        {
            "split": items["split"].to_numpy(),
            "name": names.to_numpy(),
            "image_ref": items["image_ref"].to_numpy(),
            "boxes": items["boxes"].to_numpy(),
        }
    )
    return ExportPlan(images=images, items=table.sort_values("name", ignore_index=True))


def yolo_label(boxes: object, height: int, width: int) -> str:
    """`[x1, y1, x2, y2]` pixel boxes as YOLO lines: class, centre and size, normalised."""
    lines = []
    for x1, y1, x2, y2 in boxes if boxes is not None else []:
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"0 {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _digest(image: np.ndarray, label: str) -> str:
    content = hashlib.blake2b(digest_size=16)
    content.update(FORMAT_VERSION.encode())
    content.update(np.ascontiguousarray(image).tobytes())
    content.update(label.encode())
    return content.hexdigest()


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


def _write(root: Path, item: _Pending) -> tuple[str, str, str, int, int]:
    """Write one image and its label; return its manifest row."""
    ok, png = cv2.imencode(".png", item.image)
    if not ok:
        raise DetectionInputError(f"Slice {item.name} could not be encoded as PNG for the export.")
    image_path = root / "images" / item.split / f"{item.name}.png"
    image_path.write_bytes(png.tobytes())
    (root / "labels" / item.split / f"{item.name}.txt").write_text(item.label)
    return (item.name, item.split, item.digest, *_file_state(image_path))


def _remove_stale(root: Path, keep: set[tuple[str, str]]) -> int:
    removed = 0
    for kind, suffix in (("images", ".png"), ("labels", ".txt")):
        for path in (root / kind).glob(f"*/*{suffix}"):
            if (path.parent.name, path.stem) not in keep:
                path.unlink()
                removed += kind == "images"
    return removed


def write_export(root: Path, plan: ExportPlan, workers: int | None = None) -> ExportSummary:
    """Bring `root` in line with the plan; PNG encoding runs on threads (OpenCV drops the GIL)."""
    start = time.perf_counter()
    for kind in ("images", "labels"):
        for split in SPLITS:
            (root / kind / split).mkdir(parents=True, exist_ok=True)
    previous = YoloDataset(root).manifest().set_index(["split", "name"])
    height, width = plan.images.shape[1:3]
    rows, pending = [], []
    for item in plan.items.itertuples(index=False):
        image = plan.images[item.image_ref]
        label = yolo_label(item.boxes, height, width)
        digest = _digest(image, label)
        image_path = root / "images" / item.split / f"{item.name}.png"
        label_path = root / "labels" / item.split / f"{item.name}.txt"
        key = (item.split, item.name)
        old = previous.loc[key] if key in previous.index else None
        current = (
            old is not None
            and old["digest"] == digest
            and _file_state(image_path) == (old["size"], old["mtime_ns"])
            and label_path.is_file()
        )
        if current:
            rows.append((item.name, item.split, digest, old["size"], old["mtime_ns"]))
        else:
            pending.append(_Pending(item.name, item.split, digest, image, label))
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        rows.extend(pool.map(lambda item: _write(root, item), pending))
    removed = _remove_stale(root, set(zip(plan.items["split"], plan.items["name"], strict=True)))
    if pending or removed:
        for cache in (root / "labels").glob("*.cache"):  # ultralytics' label cache of the old set
            cache.unlink()
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_parquet(root / MANIFEST, index=False)
    data = {"path": str(root.resolve()), "names": CLASS_NAMES}
    data.update({split: f"images/{split}" for split in SPLITS})
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
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
