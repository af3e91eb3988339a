"""Ingestion throughput against a plain sequential pydicom loop, and peak memory at two sizes.

Both sides do the same work per file: read, rescale, window from tags, 8-bit, letterbox-resize to
the stored size, and the run checks that they produce the same pixels. Each measurement runs in a
fresh child process so peak RSS is its own; pairs run back to back `--repeats` times and the
median pair is reported, because a shared machine's load moves between runs. CPU seconds per
1,000 slices (workers included) separate per-file cost from parallel speed-up.
Run: `uv run python benchmarks/ingestion.py [--patients 81] [--slices 32] [--native 256]
[--size 128] [--workers auto] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Side = Callable[[str, int, str, Path], "list[np.ndarray] | np.ndarray"]


@dataclass(frozen=True)
class Run:
    slices: int
    seconds: float
    cpu_seconds: float  # own plus children's user+system time
    peak_mib: float  # this process only (VmHWM, not inherited from the launcher)
    worker_peak_mib: float  # largest child; forked workers count the pages they share
    pixels: str  # digest of the multiset of stored slices


def _digest(images: list[np.ndarray] | np.ndarray) -> str:
    rows = sorted(hashlib.blake2b(np.ascontiguousarray(row).tobytes()).digest() for row in images)
    return hashlib.blake2b(b"".join(rows)).hexdigest()


def _sequential() -> Side:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from medvit.imaging.intensity import Letterbox, to_uint8, window_linear

    def run(dicom_dir: str, size: int, _: str, __: Path) -> list[np.ndarray]:
        out = []
        for path in sorted(Path(dicom_dir).rglob("*.dcm")):
            ds = pydicom.dcmread(path)
            values = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
            image = to_uint8(window_linear(values, float(ds.WindowCenter), float(ds.WindowWidth)))
            out.append(Letterbox(int(ds.Rows), int(ds.Columns), size).image(image))
        return out

    return run


def _ours() -> Side:
    from medvit.ingestion.config import DicomSource, IngestionParams
    from medvit.ingestion.store import open_store, write_store
    from medvit.ingestion.stream import stream_units

    def run(dicom_dir: str, size: int, workers: str, store: Path) -> np.ndarray:
        source = DicomSource(name="bench", root=Path(dicom_dir), window="tags")
        count = workers if workers == "auto" else int(workers)
        params = IngestionParams(sources=[source], image_size=size, workers=count)
        write_store(store, stream_units([source], params, "bench-key"))
        return open_store(store).images

    return run


def _peak_mib() -> float:
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _child(
    name: str, dicom_dir: str, size: int, workers: str, queue: multiprocessing.Queue
) -> None:
    run = {"sequential": _sequential, "medvit": _ours}[name]()  # imports stay out of the timing
    with tempfile.TemporaryDirectory() as work:
        cpu_before = os.times()
        start = time.perf_counter()
        images = run(dicom_dir, size, workers, Path(work))
        seconds = time.perf_counter() - start
        cpu = os.times()
        peak = _peak_mib()
        workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        cpu_seconds = sum(cpu[:4]) - sum(cpu_before[:4])
        queue.put(Run(len(images), seconds, cpu_seconds, peak, workers_peak, _digest(images)))


def measure(name: str, dicom_dir: Path, size: int, workers: str) -> Run:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, str(dicom_dir), size, workers, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _report(sequential: Run, ours: Run, load: float) -> str:
    per_k = 1000 / sequential.slices
    return (
        f"{sequential.slices:6d} slices | sequential {sequential.slices / sequential.seconds:6.0f}"
        f" slices/s, {sequential.cpu_seconds * per_k:4.2f} CPU s/1k, peak "
        f"{sequential.peak_mib:4.0f} MiB | medvit {ours.slices / ours.seconds:6.0f} slices/s, "
        f"{ours.cpu_seconds * per_k:4.2f} CPU s/1k, peak parent {ours.peak_mib:4.0f} MiB, "
        f"worker {ours.worker_peak_mib:4.0f} MiB | "
        f"speed-up {sequential.seconds / ours.seconds:.2f}x | load {load:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=81)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--native", type=int, default=256, help="DICOM rows/columns")
    parser.add_argument("--size", type=int, default=128, help="stored size (project default)")
    parser.add_argument("--workers", default="auto", help="ingestion workers ('auto' = cores)")
    parser.add_argument("--repeats", type=int, default=3, help="back-to-back pairs per size")
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
            pairs = []
            for _ in range(args.repeats):
                load = os.getloadavg()[0]  # 1-minute load average before the pair
                seq = measure("sequential", cohort.dicom_dir, args.size, args.workers)
                ours = measure("medvit", cohort.dicom_dir, args.size, args.workers)
                assert (seq.slices, seq.pixels) == (ours.slices, ours.pixels), "outputs differ"
                print("  " + _report(seq, ours, load), flush=True)
                pairs.append((seq, ours, load))
            pairs.sort(key=lambda pair: pair[0].seconds / pair[1].seconds)
            speed_ups = ", ".join(f"{seq.seconds / ours.seconds:.2f}x" for seq, ours, _ in pairs)
            print(f"median of {speed_ups}: {_report(*pairs[len(pairs) // 2])}")


if __name__ == "__main__":
    main()
