"""The preprocessed pixel store: `.npy` files that training memory-maps, written as a stream.

The number of slices is unknown until every file has been decoded, so the writer reserves a
fixed-size `.npy` header, appends rows as they arrive and rewrites the header with the final
shape at the end. Readers get a plain `np.load(..., mmap_mode="r")` array: no pickle, no copy,
and a DataLoader worker touches only the pages of the slices it reads.

A store is rewritten whole (`medvit.atomic.replacing`): records index the pixels of their own
write, so an interrupted re-ingest leaves the previous store exactly as it was.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medvit.atomic import recover, replacing
from medvit.ingestion.findings import PREFIX
from medvit.ingestion.units import UnitResult

_HEADER_BYTES = 128  # a multiple of 64, as the .npy format asks, and room for any 3-D shape


class NpyAppender:
    """Append uint8 (size x size) rows to an `.npy` file without knowing the final count."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size, self.rows = path, size, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("wb")
        self._file.write(self._header())

    def _header(self) -> bytes:
        text = repr(
            {"descr": "|u1", "fortran_order": False, "shape": (self.rows, self.size, self.size)}
        )
        body = text.ljust(_HEADER_BYTES - 10 - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def append(self, rows: list[np.ndarray]) -> int:
        """Write rows, returning the index of the first one."""
        first = self.rows
        for row in rows:
            self._file.write(np.ascontiguousarray(row, dtype=np.uint8))  # the buffer, no copy
        self.rows += len(rows)
        return first

    def close(self) -> None:
        self._file.seek(0)
        self._file.write(self._header())
        self._file.close()


@dataclass
class SliceStore:
    """Everything ingestion produced: pixels (memory-mapped), per-slice records, quarantine."""

    images: np.ndarray
    masks: np.ndarray
    records: pd.DataFrame
    quarantine: pd.DataFrame


def open_store(folder: Path) -> SliceStore:
    recover(folder)
    return SliceStore(
        images=np.load(folder / "images.npy", mmap_mode="r"),
        masks=np.load(folder / "masks.npy", mmap_mode="r"),
        records=pd.read_parquet(folder / "records.parquet"),
        quarantine=pd.read_parquet(folder / "quarantine.parquet"),
    )


RECORD_COLUMNS = [
    "source",
    "file_id",  # the input file's opaque key; its path is in the local lookup only
    "patient_id",
    "study_id",
    "series_id",
    "instance_id",
    "instance_number",
    "frame",
    "position",
    "rows",
    "cols",
    "tumor",
    "boxes",
    "clipped_boxes",  # boxes of this slice that ran past the image edge and were clipped
    "cropped_boxes",  # boxes the foreground crop cut into or removed (preprocessing)
    "patient_tumor",
    "group",
    "tumor_type",
    "pixel_spacing_mm",  # [row, column] mm of a stored pixel, or null where the source has none
    "slice_thickness_mm",  # the source's spacing between slices (or thickness), or null
    "view",  # radiographs: PA, AP, LL...; null for slices of volumes
    "image_ref",
    "mask_ref",
]  # then one `finding_<name>` column per configured finding, where a source has findings


def write_store(folder: Path, results: Iterable[UnitResult]) -> None:
    """Consume a result stream into a new store that replaces `folder` once complete."""
    with replacing(folder) as staging:
        _write_files(staging, results)


def _write_files(folder: Path, results: Iterable[UnitResult]) -> None:
    """Stream pixels to disk; only records and quarantine rows stay in memory."""
    images = masks = None
    records: list[dict] = []
    quarantine: list[dict] = []
    try:
        for result in results:
            if images is None:
                images = NpyAppender(folder / "images.npy", result.size)
                masks = NpyAppender(folder / "masks.npy", result.size)
            image_row = images.append(result.images)
            mask_row = masks.append(result.masks)
            for offset, record in enumerate(result.records):
                slot = record.pop("mask_slot")
                records.append(
                    {
                        **record,
                        "image_ref": image_row + offset,
                        "mask_ref": None if slot is None else mask_row + slot,
                    }
                )
            quarantine.extend(asdict(item) for item in result.quarantine)
    finally:
        for appender in (images, masks):
            if appender is not None:
                appender.close()
    findings = list(
        dict.fromkeys(key for record in records for key in record if key.startswith(PREFIX))
    )
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS + findings)
    frame[findings] = frame[findings].astype("Int8")  # missing where a source has no findings
    frame["mask_ref"] = frame["mask_ref"].astype("Int64")
    for column in ("patient_tumor", "instance_number"):
        frame[column] = frame[column].astype("Int64")
    frame["slice_thickness_mm"] = frame["slice_thickness_mm"].astype(float)
    frame.to_parquet(folder / "records.parquet", index=False)
    pd.DataFrame(quarantine, columns=["file_id", "kind", "reason"]).to_parquet(
        folder / "quarantine.parquet", index=False
    )
