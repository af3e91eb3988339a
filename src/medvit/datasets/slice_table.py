"""Kedro dataset for slice-keyed tables (the slice table, slice predictions)."""

from __future__ import annotations

import json

import pandas as pd
from kedro_datasets._typing import TablePreview
from kedro_datasets.pandas import ParquetDataset


class SliceTableDataset(ParquetDataset):
    """A parquet table whose kedro-viz preview also shows the `boxes` column.

    `boxes` holds a list of [x1, y1, x2, y2(, confidence)] per slice; parquet hands it back as
    nested numpy arrays, which kedro-viz cannot serialise (its dataset panel answers HTTP 500).
    The preview goes through pandas' JSON writer, which turns arrays into lists and NaN into
    null; loading and saving are ParquetDataset's, so the column keeps its type and meaning.
    """

    def preview(self, nrows: int = 5) -> TablePreview:
        table = pd.DataFrame(**super().preview(nrows))
        return TablePreview(json.loads(table.to_json(orient="split")))
