"""Kedro dataset for the generated demo cohort: the generator writes only a declared output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from medvit.imaging.demo import DemoCohort, DemoCohortSpec, write_demo_cohort


@dataclass(frozen=True)
class DemoRequest:
    """What the dataset is asked to write: `spec` is None when no source is the demo, so its
    47 MB of DICOM are not written for nothing (Kedro refuses to save a bare None)."""

    spec: DemoCohortSpec | None


class DemoCohortDataset(AbstractDataset[DemoRequest, DemoCohort]):
    """A DICOM tree with its ground truth; regenerated only when the spec changes.

    The spec is written beside the files, so a rerun with the same parameters costs nothing.
    Loading only resolves the cohort's paths, which a run without the demo never reads.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    @property
    def _spec_file(self) -> Path:
        return self._path / "spec.json"

    def load(self) -> DemoCohort:
        return DemoCohort.at(self._path)

    def save(self, data: DemoRequest) -> None:
        if data.spec is None:
            return
        wanted = asdict(data.spec)
        if self._spec_file.is_file() and json.loads(self._spec_file.read_text()) == wanted:
            return
        write_demo_cohort(self._path, data.spec)
        self._spec_file.write_text(json.dumps(wanted, indent=2))

    def _exists(self) -> bool:
        return self._spec_file.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
