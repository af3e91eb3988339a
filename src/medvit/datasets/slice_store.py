"""Kedro dataset for the preprocessed pixel store written by ingestion."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from medvit.atomic import recover
from medvit.ingestion.store import SliceStore, open_store, write_store
from medvit.ingestion.units import UnitResult


class SliceStoreDataset(AbstractDataset[Iterable[UnitResult], SliceStore]):
    """A folder of memory-mappable `images.npy`/`masks.npy` plus per-slice records.

    Saving consumes a stream of unit results (as `PartitionedDataset` takes lazy callables), so
    the ingestion node can return a generator and pixels go straight from workers to disk. The
    folder is replaced whole once the stream is consumed; until then it holds the previous store.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> SliceStore:
        return open_store(self._path)

    def save(self, data: Iterable[UnitResult]) -> None:
        write_store(self._path, data)

    def _exists(self) -> bool:
        recover(self._path)
        return (self._path / "records.parquet").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
