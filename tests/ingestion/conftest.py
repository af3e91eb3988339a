"""Fixtures that run the real ingestion (in-process) on small files written into tmp dirs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medvit.ingestion.config import IngestionParams
from medvit.ingestion.store import SliceStore, open_store, write_store
from medvit.ingestion.stream import stream_units
from medvit.ingestion.table import build_slice_table, name_files

Ingest = Callable[..., tuple[pd.DataFrame, pd.DataFrame, SliceStore]]


@pytest.fixture
def ingest(tmp_path: Path) -> Ingest:
    def run(sources: list, **settings) -> tuple[pd.DataFrame, pd.DataFrame, SliceStore]:
        params = IngestionParams(sources=sources, **{"workers": 1, "image_size": 32, **settings})
        store_dir = tmp_path / "store"
        stream = stream_units(sources, params, "test-key")
        write_store(store_dir, stream)
        store = open_store(store_dir)
        table, report = build_slice_table(
            store.records, store.quarantine, params.views, params.min_image_size
        )
        return table, name_files(report, stream.lookup()), store

    return run


@pytest.fixture
def mr_small() -> pydicom.Dataset:
    """pydicom's bundled 64x64 MR slice (real scanner data, uncompressed)."""
    return pydicom.dcmread(get_testdata_file("MR_small.dcm"))


@pytest.fixture
def testdata(tmp_path: Path) -> Callable[[str], Path]:
    """Copy one of pydicom's bundled files into tmp (a fixture: `conftest` is not importable
    by name once several test folders have one)."""

    def copy(name: str) -> Path:
        return Path(shutil.copy(get_testdata_file(name), tmp_path / name))

    return copy
