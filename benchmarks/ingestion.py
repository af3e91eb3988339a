"""Ingestion throughput against a plain sequential pydicom loop, and peak memory at two sizes.

Both sides do the same work per file: read, rescale, window from tags, 8-bit, letterbox-resize to
the stored size. Each measurement runs in a fresh child process so peak RSS is its own.
Run: `uv run python benchmarks/ingestion.py [--patients 81] [--slices 32] [--native 256]
[--size 128]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path


def _sequential(dicom_dir: str, size: int) -> tuple[int, float]:
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from medvit.imaging.intensity import Letterbox, to_uint8, window_linear

    start, count, out = time.perf_counter(), 0, []
    for path in sorted(Path(dicom_dir).rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        values = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        image = to_uint8(window_linear(values, float(ds.WindowCenter), float(ds.WindowWidth)))
        out.append(Letterbox(int(ds.Rows), int(ds.Columns), size).image(image))
        count += 1
    return count, time.perf_counter() - start


def _ours(dicom_dir: str, size: int) -> tuple[int, float]:
    from medvit.ingestion.config import DicomSource, IngestionParams
    from medvit.ingestion.store import write_store
    from medvit.ingestion.stream import stream_units

    source = DicomSource(name="bench", root=Path(dicom_dir), window="tags")
    params = IngestionParams(sources=[source], image_size=size)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        write_store(Path(store), stream_units([source], params, "bench-key"))
        count = int(__import__("numpy").load(Path(store) / "images.npy", mmap_mode="r").shape[0])
    return count, time.perf_counter() - start


def _child(name: str, dicom_dir: str, size: int, queue: multiprocessing.Queue) -> None:
    count, seconds = {"sequential": _sequential, "medvit": _ours}[name](dicom_dir, size)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    queue.put((count, seconds, own / 1024, children / 1024))


def measure(name: str, dicom_dir: Path, size: int) -> tuple[int, float, float, float]:
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(
        target=_child, args=(name, str(dicom_dir), size, queue)
    )
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=81)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--native", type=int, default=256, help="DICOM rows/columns")
    parser.add_argument("--size", type=int, default=128, help="stored size (project default)")
    args = parser.parse_args()
    from medvit.imaging.demo import DemoCohortSpec, write_demo_cohort

    print(f"cpus={os.cpu_count()}  native {args.native} px -> stored {args.size} px")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 2):  # peak memory must not grow with the cohort
            n_patients = args.patients * scale
            n_tumor = round(n_patients * 30 / 81)
            spec = DemoCohortSpec(
                n_tumor=n_tumor, n_normal=n_patients - n_tumor, slices=args.slices, size=args.native
            )
            cohort = write_demo_cohort(Path(tmp) / f"c{scale}", spec)
            seq = measure("sequential", cohort.dicom_dir, args.size)
            ours = measure("medvit", cohort.dicom_dir, args.size)
            assert seq[0] == ours[0], (seq, ours)
            print(
                f"{seq[0]:6d} slices | sequential {seq[0] / seq[1]:7.1f} slices/s "
                f"peak {seq[2]:6.0f} MiB | medvit {ours[0] / ours[1]:7.1f} slices/s "
                f"peak parent {ours[2]:6.0f} MiB, worker {ours[3]:6.0f} MiB | "
                f"speed-up {seq[1] / ours[1]:.2f}x"
            )


if __name__ == "__main__":
    main()
