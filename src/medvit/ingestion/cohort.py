"""Patients per label from the label files alone, so that a split request the cohort cannot meet
fails in seconds, before any image is decoded or the demo is written.

Labels are known in advance for a DICOM source with `patients_csv`, an image folder or NIfTI
manifest with a tumour column, and the demo (its spec). Where any source's labels come only from
its pixels (boxes, masks), the totals are unknown and the split node does the check instead.
"""

from __future__ import annotations

import logging

import pandas as pd

from medvit.imaging.demo import DemoCohortSpec
from medvit.ingestion import image_folder
from medvit.ingestion.config import (
    DemoSource,
    DicomSource,
    ImageFolderSource,
    NiftiSource,
    Source,
)
from medvit.ingestion.dicom_tree import load_truth, read_csv
from medvit.splits import SplitError, SplitParams, check_feasible

log = logging.getLogger(__name__)


def patient_labels(source: Source, demo: DemoCohortSpec) -> pd.Series | None:
    """0/1 per raw patient key (as the readers key patients) from the source's label file, or
    None where it has none."""
    if isinstance(source, DemoSource):
        labels = [1] * demo.n_tumor + [0] * demo.n_normal
        return pd.Series(labels, index=[f"{source.name}/{i}" for i in range(len(labels))])
    if isinstance(source, DicomSource):
        if source.patients_csv is None:
            return None
        return pd.Series(load_truth(source).patients, dtype=int)
    if isinstance(source, ImageFolderSource):
        return image_folder.patient_labels(source)
    return _nifti_labels(source)


def _nifti_labels(source: NiftiSource) -> pd.Series | None:
    frame = read_csv(source.root / source.manifest, ["image", "patient_id"])
    if "tumor" not in frame or frame["tumor"].isna().any():
        return None
    return frame["tumor"].astype(float).astype(int).groupby(frame["patient_id"]).max()


def check_split_request(sources: list[Source], demo: DemoCohortSpec, splits: SplitParams) -> None:
    """Raise SplitError, with the patients per label of each source, when the label files show
    that the cohort cannot be split as `splits` asks."""
    labels = {source.name: patient_labels(source, demo) for source in sources}
    unknown = [name for name, series in labels.items() if series is None]
    if unknown:
        log.info(
            "Patient labels of source(s) %s come from their images: the split request is "
            "checked after ingestion",
            unknown,
        )
        return
    cohort = pd.concat(labels.values()).groupby(level=0).max()
    n_tumor = int(cohort.sum())
    try:
        check_feasible(n_tumor, len(cohort) - n_tumor, splits)
    except SplitError as error:
        by_source = "; ".join(
            f"{name}: {int(series.sum())} tumour, {int((series == 0).sum())} normal"
            for name, series in labels.items()
        )
        raise SplitError(f"{error} Per source, from the label files: {by_source}.") from None
