"""The plumbing every one-file versioned dataset of ours shares; subclasses say how to load/save."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from kedro.io import AbstractVersionedDataset
from kedro.io.core import Version

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class VersionedFileDataset(AbstractVersionedDataset[_In, _Out]):
    """`filepath` becomes `filepath/<version>/<name>` when the catalog says `versioned: true`."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(PurePosixPath(filepath), version)
        self.metadata = metadata

    def _load_path(self) -> Path:
        return Path(self._get_load_path())

    def _save_path(self) -> Path:
        """The path to write, its folder created."""
        path = Path(self._get_save_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _exists(self) -> bool:
        return self._load_path().is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
