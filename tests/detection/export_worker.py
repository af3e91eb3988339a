"""An export over an existing one that test_export_atomic.py SIGKILLs after a few images.

Usage: export_worker.py ROOT PLAN_DIR READY. The worker exports the plan saved in PLAN_DIR
(`images.npy`, `items.parquet`) on one thread; before its image number FILES_BEFORE_KILL it
creates READY and sleeps, with the earlier images already written.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvit.detection.export import ExportPlan, write_export

FILES_BEFORE_KILL = 10


def main(root: Path, plan_dir: Path, ready: Path) -> None:
    encode, calls = cv2.imencode, itertools.count()

    def stalling(extension: str, image: np.ndarray) -> tuple[bool, np.ndarray]:
        if next(calls) == FILES_BEFORE_KILL:
            ready.touch()
            time.sleep(120)
        return encode(extension, image)

    cv2.imencode = stalling
    plan = ExportPlan(np.load(plan_dir / "images.npy"), pd.read_parquet(plan_dir / "items.parquet"))
    write_export(root, plan, workers=1)


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:]))
