"""Kedro dataset for a checkpoint file another library wrote and reads back by path."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractVersionedDataset
from kedro.io.core import Version


class CheckpointFileDataset(AbstractVersionedDataset[Path, Path]):
    """A versioned copy of a file such as ultralytics' `best.pt`.

    Ultralytics saves and loads its checkpoints itself (model, training arguments, metadata), so
    the dataset moves the file rather than re-serialising it: saving takes the path a trainer
    wrote, loading gives the path of the chosen version, ready for `YOLO(path)`.
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(PurePosixPath(filepath), version)
        self.metadata = metadata

    def load(self) -> Path:
        return Path(self._get_load_path())

    def save(self, data: Path) -> None:
        target = Path(self._get_save_path())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, target)

    def _exists(self) -> bool:
        return Path(self._get_load_path()).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
