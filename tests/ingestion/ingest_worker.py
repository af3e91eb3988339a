"""An ingest into an existing store that test_store.py SIGKILLs halfway through the stream.

Usage: ingest_worker.py STORE READY. After UNITS_BEFORE_KILL units the worker creates READY and
sleeps, with part of the new pixels already written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medvit.ingestion.store import write_store
from medvit.ingestion.units import UnitResult

UNITS_BEFORE_KILL = 5


def unit(value: int, size: int = 8) -> UnitResult:
    """One slice of constant pixels `value`, of patient `P<value>`, with a mask."""
    image = np.full((size, size), value, np.uint8)
    record = {"patient_id": f"P{value}", "tumor": value % 2, "boxes": [], "mask_slot": 0}
    return UnitResult(size=size, records=[record], images=[image], masks=[image // 2])


def _stalling(ready: Path) -> Iterator[UnitResult]:
    for value in range(100, 200):
        if value == 100 + UNITS_BEFORE_KILL:
            ready.touch()
            time.sleep(120)
        yield unit(value)


if __name__ == "__main__":
    store, ready = map(Path, sys.argv[1:])
    write_store(store, _stalling(ready))
