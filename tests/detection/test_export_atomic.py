"""The YOLO export is swapped in whole: a killed or failed export leaves the previous one."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from export_worker import FILES_BEFORE_KILL

from medvit.datasets import YoloDatasetFolder
from medvit.detection.export import DetectionInputError, ExportPlan, write_export
from sigkill import kill_when_ready

WORKER = Path(__file__).with_name("export_worker.py")


def _contents(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.*")}


def test_a_sigkilled_export_leaves_the_previous_export(tmp_path, plan, exported):
    before = _contents(exported.root)
    saved = tmp_path / "plan"
    saved.mkdir()
    np.save(saved / "images.npy", plan.images ^ 1)  # every image changes: all are rewritten
    plan.items.to_parquet(saved / "items.parquet")

    pid = kill_when_ready(WORKER, str(exported.root), str(saved), ready=tmp_path / "ready")
    staging = exported.root.with_name(f"yolo.tmp-{pid}")
    assert len(list(staging.glob("images/*/*.png"))) == FILES_BEFORE_KILL
    assert _contents(exported.root) == before

    summary = write_export(exported.root, plan)
    assert (summary.written, summary.unchanged) == (0, len(plan.items))
    assert not staging.exists()


def test_a_failed_export_leaves_the_previous_export(tmp_path, plan, exported, monkeypatch):
    before = _contents(exported.root)
    encode, calls = cv2.imencode, itertools.count()
    monkeypatch.setattr(
        cv2,
        "imencode",
        lambda ext, image: (False, None) if next(calls) == 5 else encode(ext, image),
    )
    with pytest.raises(DetectionInputError, match="could not be encoded as PNG"):
        write_export(exported.root, ExportPlan(plan.images ^ 1, plan.items), workers=1)
    assert _contents(exported.root) == before
    assert [path.name for path in tmp_path.iterdir()] == ["yolo"]


def test_an_unchanged_export_links_every_file_and_keeps_the_label_cache(plan, exported):
    image = next(exported.image_dir("train").glob("*.png"))
    inode = image.stat().st_ino
    cache = exported.root / "labels" / "train.cache"
    cache.write_bytes(b"ultralytics' label cache")

    summary = write_export(exported.root, plan)
    assert (summary.written, summary.unchanged, summary.removed) == (0, len(plan.items), 0)
    assert (image.stat().st_ino, image.stat().st_nlink) == (inode, 1)  # the same file, moved
    assert cache.read_bytes() == b"ultralytics' label cache"

    images = plan.images.copy()
    images[plan.items.loc[0, "image_ref"]] ^= 1
    assert write_export(exported.root, ExportPlan(images, plan.items)).written == 1
    assert not cache.exists()  # the cache described the previous set of files


def test_an_export_killed_between_its_renames_is_recovered(tmp_path, plan, exported):
    digest = exported.digest()
    exported.root.rename(exported.root.with_name(f"yolo.old-{2**22 + 1}"))  # no such process

    dataset = YoloDatasetFolder(path=str(exported.root))
    assert dataset.exists()
    assert dataset.load().digest() == digest
    dataset.save(plan)
    assert [path.name for path in tmp_path.iterdir()] == ["yolo"]
