"""kedro-viz's dataset panel: the slice table's preview serialises, boxes included."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro_datasets.pandas import ParquetDataset
from pydantic_core import PydanticSerializationError, to_json

from medvit.datasets import SliceTableDataset

TABLE = pd.DataFrame(
    {
        "patient_id": ["p1", "p2"],
        "tumor": [1, 0],
        "boxes": [[[10.0, 12.0, 30.0, 34.5]], []],
        "mask_ref": [3.0, None],
    }
)


def test_preview_gives_boxes_as_lists_and_keeps_them_when_loaded(tmp_path: Path):
    dataset = SliceTableDataset(filepath=str(tmp_path / "slices.parquet"))
    dataset.save(TABLE)
    preview = dataset.preview(nrows=5)
    to_json(preview)  # what kedro-viz's API does with it
    json.dumps(preview, allow_nan=False)  # and what a browser can parse: NaN is null
    assert preview["columns"] == list(TABLE.columns)
    assert preview["data"] == [["p1", 1, [[10.0, 12.0, 30.0, 34.5]], 3.0], ["p2", 0, [], None]]
    loaded = dataset.load()
    assert loaded["boxes"].map(len).tolist() == [1, 0]
    assert loaded["boxes"][0][0].tolist() == [10.0, 12.0, 30.0, 34.5]


def test_the_plain_parquet_preview_is_what_kedro_viz_could_not_serialise(tmp_path: Path):
    dataset = ParquetDataset(filepath=str(tmp_path / "slices.parquet"))
    dataset.save(TABLE)
    with pytest.raises(PydanticSerializationError, match="ndarray"):
        to_json(dataset.preview())
