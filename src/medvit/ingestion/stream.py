"""Parallel, streaming ingestion: units go to worker processes, results come back in order.

Decoding (pydicom, JPEG, resampling) is CPU-bound, so it runs in processes, one per core by
default. `map` keeps the input order, which makes the pixel store byte-identical run to run,
and hands each result to the caller as soon as it is ready, so the parent never holds more than
a few units: memory stays flat however large the cohort.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
from tqdm.auto import tqdm

from medvit.ingestion import dicom_tree, image_folder, nifti
from medvit.ingestion.config import DicomSource, ImageFolderSource, IngestionParams, NiftiSource
from medvit.ingestion.pseudonym import Pseudonymiser
from medvit.ingestion.units import UnitResult

ConcreteSource = DicomSource | ImageFolderSource | NiftiSource


@dataclass(frozen=True)
class _Reader:
    units: Callable[[Any, int], list[Any]]
    process: Callable[[Any, Any, Any, Pseudonymiser, int], UnitResult]


_READERS = {
    "dicom": _Reader(dicom_tree.units, dicom_tree.process),
    "image_folder": _Reader(image_folder.units, image_folder.process),
    "nifti": _Reader(nifti.units, nifti.process),
}

# Set once per worker by the pool initializer: ground truth can be large, so it travels once per
# process instead of once per task.
_WORKER: dict[str, Any] = {}


def _init_worker(sources: list[ConcreteSource], truths: list[Any], key: str, size: int) -> None:
    cv2.setNumThreads(1)  # one process per core already: OpenCV's own threads would oversubscribe
    _WORKER.update(sources=sources, truths=truths, pseudo=Pseudonymiser(key), size=size)


def _run_unit(task: tuple[int, Any]) -> UnitResult:
    index, unit = task
    source = _WORKER["sources"][index]
    return _READERS[source.type].process(
        source, _WORKER["truths"][index], unit, _WORKER["pseudo"], _WORKER["size"]
    )


def _context() -> multiprocessing.context.BaseContext:
    """fork where it exists: workers start in milliseconds with every module already imported.

    forkserver/spawn re-import pydicom, OpenCV and pandas in each worker (about a second each),
    which on a 2-core laptop costs more than a small cohort's whole decode (measured in
    benchmarks/ingestion.py). Workers only decode files and touch no lock of the parent's
    threads; OpenCV's pool is reset to one thread in each worker.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def stream_units(
    sources: list[ConcreteSource], params: IngestionParams, key: str
) -> Iterator[UnitResult]:
    """Yield every unit's result, then one last result listing ground truth that matched nothing."""
    truths = [dicom_tree.load_truth(s) if isinstance(s, DicomSource) else None for s in sources]
    tasks = [
        (index, unit)
        for index, source in enumerate(sources)
        for unit in _READERS[source.type].units(source, params.chunk_size)
    ]
    init_args = (sources, truths, key, params.image_size)
    workers = min(params.worker_count(), max(len(tasks), 1))
    seen: set[str] = set()
    progress = tqdm(total=len(tasks), desc="ingest", unit="unit", mininterval=1.0)
    if workers <= 1:
        _init_worker(*init_args)
        results: Iterator[UnitResult] = map(_run_unit, tasks)
        yield from _tracked(results, seen, progress)
    else:
        # An executor, not a Pool: a worker that dies raises BrokenProcessPool instead of being
        # respawned forever.
        with ProcessPoolExecutor(workers, _context(), _init_worker, init_args) as pool:
            yield from _tracked(pool.map(_run_unit, tasks), seen, progress)
    progress.close()
    tail = UnitResult(params.image_size)
    for source, truth in zip(sources, truths, strict=True):
        if isinstance(source, DicomSource):
            tail.quarantine.extend(dicom_tree.orphans(source, truth, seen))
    yield tail


def _tracked(results: Iterator[UnitResult], seen: set[str], progress: tqdm) -> Iterator[UnitResult]:
    for result in results:
        seen |= result.seen
        result.seen = set()
        progress.update()
        yield result
