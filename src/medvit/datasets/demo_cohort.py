"""Kedro dataset for the generated demo cohort: the generator writes only a declared output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from kedro.io import AbstractDataset

from medvit.imaging.chest_demo import ChestDemoCohort, ChestDemoSpec, write_chest_demo
from medvit.imaging.demo import DemoCohort, DemoCohortSpec, write_demo_cohort

# Each demo kind: where its files are found again, and how they are written.
_KINDS = {
    "brain": (DemoCohort.at, write_demo_cohort),
    "chest": (ChestDemoCohort.at, write_chest_demo),
}


@dataclass(frozen=True)
class DemoRequest:
    """What the dataset is asked to write: `spec` is None when no source is the demo, so its
    47 MB of DICOM are not written for nothing (Kedro refuses to save a bare None)."""

    spec: DemoCohortSpec | ChestDemoSpec | None


class DemoCohortDataset(AbstractDataset[DemoRequest, DemoCohort | ChestDemoCohort]):
    """A DICOM tree with its ground truth; regenerated only when the spec changes.

    The spec is written beside the files, so a rerun with the same parameters costs nothing.
    Loading only resolves the cohort's paths, which a run without the demo never reads.
    `kind`: the brain MRI demo or the chest X-ray demo.
    """

    def __init__(
        self,
        path: str,
        kind: Literal["brain", "chest"] = "brain",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"DemoCohortDataset kind must be one of {list(_KINDS)}, got {kind!r}")
        self._path = Path(path)
        self._kind = kind
        self.metadata = metadata

    @property
    def _spec_file(self) -> Path:
        return self._path / "spec.json"

    def load(self) -> DemoCohort | ChestDemoCohort:
        return _KINDS[self._kind][0](self._path)

    def save(self, data: DemoRequest) -> None:
        if data.spec is None:
            return
        wanted = asdict(data.spec)
        if self._spec_file.is_file() and json.loads(self._spec_file.read_text()) == wanted:
            return
        _KINDS[self._kind][1](self._path, data.spec)
        self._spec_file.write_text(json.dumps(wanted, indent=2))

    def _exists(self) -> bool:
        return self._spec_file.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "kind": self._kind}
