"""Parallel, streaming ingestion: units go to worker processes, results come back in order.

Decoding (pydicom, JPEG, resampling) is CPU-bound, so it runs in processes, one per core by
default. `map` keeps the input order, which makes the pixel store byte-identical run to run,
and hands each result to the caller as soon as it is ready, so the parent never holds more than
a few units: memory stays flat however large the cohort.

Every unit is listed before any is decoded, so the lookup from opaque file keys back to the
source files exists (and can be written) even when decoding fails later. Results leave a worker
with file keys only: exports often name folders and files after patients.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import pandas as pd

from medvit.console import Progress, progress
from medvit.ingestion import dicom_tree, image_folder, nifti
from medvit.ingestion.config import DicomSource, ImageFolderSource, IngestionParams, NiftiSource
from medvit.ingestion.pseudonym import Pseudonymiser
from medvit.ingestion.units import UnitResult

ConcreteSource = DicomSource | ImageFolderSource | NiftiSource


@dataclass(frozen=True)
class _Reader:
    units: Callable[[Any, int], list[Any]]
    paths: Callable[[Any, Any], list[str]]  # a unit's input paths, as `process` names them
    process: Callable[[Any, Any, Any, Pseudonymiser, UnitResult], UnitResult]


_READERS = {
    "dicom": _Reader(dicom_tree.units, dicom_tree.paths, dicom_tree.process),
    "image_folder": _Reader(image_folder.units, image_folder.paths, image_folder.process),
    "nifti": _Reader(nifti.units, nifti.paths, nifti.process),
}

# Set once per worker by the pool initializer: ground truth can be large, so it travels once per
# process instead of once per task.
_WORKER: dict[str, Any] = {}


def _init_worker(
    sources: list[ConcreteSource], truths: list[Any], key: str, params: IngestionParams
) -> None:
    cv2.setNumThreads(1)  # one process per core already: OpenCV's own threads would oversubscribe
    _WORKER.update(sources=sources, truths=truths, pseudo=Pseudonymiser(key), params=params)


def _keyed(result: UnitResult, source: ConcreteSource, pseudo: Pseudonymiser) -> UnitResult:
    result.key_files(partial(pseudo.file, source.name), source.root)
    return result


def _run_unit(task: tuple[int, Any]) -> UnitResult:
    index, unit = task
    source = _WORKER["sources"][index]
    pseudo, params = _WORKER["pseudo"], _WORKER["params"]
    result = _READERS[source.type].process(
        source,
        _WORKER["truths"][index],
        unit,
        pseudo,
        UnitResult(params.image_size, params.preprocessing),
    )
    return _keyed(result, source, pseudo)


def _context() -> multiprocessing.context.BaseContext:
    """fork where it exists: workers start in milliseconds with every module already imported.

    forkserver/spawn re-import pydicom, OpenCV and pandas in each worker (about a second each),
    which on a 2-core laptop costs more than a small cohort's whole decode (measured in
    benchmarks/ingestion.py). Workers only decode files and touch no lock of the parent's
    threads; OpenCV's pool is reset to one thread in each worker.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _truth(source: ConcreteSource, params: IngestionParams) -> Any:
    """Ground truth read once in the parent: a bad label file fails before any decoding."""
    if isinstance(source, DicomSource):
        return dicom_tree.load_truth(source, params.vocabulary())
    if isinstance(source, ImageFolderSource):
        return image_folder.load_truth(source, params.vocabulary())
    return None


class IngestionStream:
    """Every source's units, listed now; iterating decodes them and yields each unit's result,
    then one last result listing ground truth that matched nothing."""

    def __init__(self, sources: list[ConcreteSource], params: IngestionParams, key: str) -> None:
        self.sources, self.params, self._key = sources, params, key
        self.truths = [_truth(source, params) for source in sources]
        self.tasks = [
            (index, unit)
            for index, source in enumerate(sources)
            for unit in _READERS[source.type].units(source, params.chunk_size)
        ]

    def lookup(self) -> pd.DataFrame:
        """`file_id, source, path` for every input file: identifying, so it stays local."""
        named = [
            (self.sources[index].name, path)
            for index, unit in self.tasks
            for path in _READERS[self.sources[index].type].paths(self.sources[index], unit)
        ]
        named += [
            (source.name, path)
            for source in self.sources
            if isinstance(source, DicomSource)
            for path in dicom_tree.truth_files(source)
        ]
        pseudo = Pseudonymiser(self._key)
        frame = pd.DataFrame(named, columns=["source", "path"]).drop_duplicates(ignore_index=True)
        keys = [pseudo.file(*row) for row in frame.itertuples(index=False)]
        frame.insert(0, "file_id", keys)
        return frame

    def __iter__(self) -> Iterator[UnitResult]:
        init_args = (self.sources, self.truths, self._key, self.params)
        workers = min(self.params.worker_count(), max(len(self.tasks), 1))
        seen: set[str] = set()
        bar = progress(total=len(self.tasks), desc="ingest", unit="unit", mininterval=1.0)
        if workers <= 1:
            _init_worker(*init_args)
            results: Iterator[UnitResult] = map(_run_unit, self.tasks)
            yield from _tracked(results, seen, bar)
        else:
            # An executor, not a Pool: a worker that dies raises BrokenProcessPool instead of
            # being respawned forever.
            with ProcessPoolExecutor(workers, _context(), _init_worker, init_args) as pool:
                yield from _tracked(pool.map(_run_unit, self.tasks), seen, bar)
        bar.close()
        tail = UnitResult(self.params.image_size)
        pseudo = Pseudonymiser(self._key)
        for source, truth in zip(self.sources, self.truths, strict=True):
            if isinstance(source, DicomSource):
                orphans = UnitResult(self.params.image_size)
                orphans.quarantine = dicom_tree.orphans(source, truth, seen)
                tail.quarantine += _keyed(orphans, source, pseudo).quarantine
        yield tail


def stream_units(
    sources: list[ConcreteSource], params: IngestionParams, key: str
) -> IngestionStream:
    """List every unit now (a missing folder or CSV fails here); decode them when iterated."""
    return IngestionStream(sources, params, key)


def _tracked(results: Iterator[UnitResult], seen: set[str], bar: Progress) -> Iterator[UnitResult]:
    for result in results:
        seen |= result.seen
        result.seen = set()
        bar.update()
        yield result
