"""Kedro dataset for the YOLO dataset folder ultralytics trains from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from medvit.atomic import recover
from medvit.detection.export import ExportPlan, YoloDataset, write_export


class YoloDatasetFolder(AbstractDataset[ExportPlan, YoloDataset]):
    """`images/<split>`, `labels/<split>`, `data.yaml` and a manifest of what each file holds.

    Saving an export plan rewrites only the files whose content changed and swaps the new folder
    in whole (see `medvit.detection.export`); loading gives the folder, whose `data_yaml`
    ultralytics reads.
    """

    def __init__(
        self, path: str, workers: int | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self._path = Path(path)
        self._workers = workers
        self.metadata = metadata

    def load(self) -> YoloDataset:
        recover(self._path)
        return YoloDataset(self._path)

    def save(self, data: ExportPlan) -> None:
        write_export(self._path, data, self._workers)

    def _exists(self) -> bool:
        recover(self._path)
        return (self._path / "data.yaml").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
