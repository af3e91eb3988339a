"""Kedro dataset for a checkpoint file another library wrote and reads back by path."""

from __future__ import annotations

import shutil
from pathlib import Path

from medvit.datasets.versioned_file import VersionedFileDataset


class CheckpointFileDataset(VersionedFileDataset[Path, Path]):
    """A versioned copy of a file such as ultralytics' `best.pt`.

    Ultralytics saves and loads its checkpoints itself (model, training arguments, metadata), so
    the dataset moves the file rather than re-serialising it: saving takes the path a trainer
    wrote, loading gives the path of the chosen version, ready for `YOLO(path)`.
    """

    def load(self) -> Path:
        return self._load_path()

    def save(self, data: Path) -> None:
        shutil.copyfile(data, self._save_path())
