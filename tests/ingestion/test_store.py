"""The pixel store is replaced whole: a killed or failed re-ingest leaves the previous store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingest_worker import UNITS_BEFORE_KILL, unit

from medvit.datasets import SliceStoreDataset
from medvit.ingestion.store import SliceStore, open_store, write_store
from sigkill import kill_when_ready

WORKER = Path(__file__).with_name("ingest_worker.py")


def _snapshot(store: SliceStore) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The store's content, copied out of its memory maps."""
    return np.array(store.images), np.array(store.masks), store.records, store.quarantine


def _assert_same(store: SliceStore, expected: tuple) -> None:
    images, masks, records, quarantine = expected
    np.testing.assert_array_equal(store.images, images)
    np.testing.assert_array_equal(store.masks, masks)
    pd.testing.assert_frame_equal(store.records, records)
    pd.testing.assert_frame_equal(store.quarantine, quarantine)


@pytest.fixture
def previous(tmp_path: Path) -> tuple[Path, tuple]:
    """A store of three slices, and its content."""
    folder = tmp_path / "store"
    write_store(folder, [unit(value) for value in (1, 2, 3)])
    return folder, _snapshot(open_store(folder))


def test_a_sigkilled_reingest_leaves_the_previous_store_intact(tmp_path, previous):
    folder, before = previous
    pid = kill_when_ready(WORKER, str(folder), ready=tmp_path / "ready")

    staging = folder.with_name(f"store.tmp-{pid}")
    assert (staging / "images.npy").is_file()  # killed while the new pixels were being written
    assert not (staging / "records.parquet").exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "images.npy",
        "masks.npy",
        "quarantine.parquet",
        "records.parquet",
    ]
    _assert_same(open_store(folder), before)

    write_store(folder, [unit(value) for value in range(100, 100 + UNITS_BEFORE_KILL)])
    assert not staging.exists()  # the dead writer's leftovers are cleaned by the next write
    assert open_store(folder).records["patient_id"].tolist() == [f"P{v}" for v in range(100, 105)]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ready", "store"]


def test_a_failing_stream_leaves_the_previous_store_and_no_staging(previous):
    folder, before = previous

    def failing():
        yield unit(7)
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        write_store(folder, failing())
    _assert_same(open_store(folder), before)
    assert [p.name for p in folder.parent.iterdir()] == ["store"]


def test_readers_keep_their_memory_map_across_a_rewrite(previous):
    folder, before = previous
    mapped = open_store(folder).images
    write_store(folder, [unit(50)])
    np.testing.assert_array_equal(mapped, before[0])  # the old file lives on while it is mapped
    assert open_store(folder).images.tolist() == [np.full((8, 8), 50).tolist()]


def test_a_writer_killed_between_its_renames_is_recovered_on_load(tmp_path, previous):
    folder, before = previous
    dead = 2**22 + 1  # above any process id Linux hands out (pid_max is at most 2**22)
    folder.rename(folder.with_name(f"store.old-{dead}"))
    folder.with_name(f"store.tmp-{dead}").mkdir()  # the new store that never got its name

    dataset = SliceStoreDataset(path=str(folder))
    assert dataset.exists()
    _assert_same(dataset.load(), before)
    dataset.save(iter([unit(9)]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert dataset.load().records["patient_id"].tolist() == ["P9"]
