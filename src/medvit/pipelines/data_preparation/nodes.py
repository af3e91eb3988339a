"""Thin nodes: typed parameters at the boundary, the library does the work."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from medvit.imaging.demo import DemoCohort, DemoCohortSpec
from medvit.ingestion.config import DemoSource, DicomSource, IngestionParams
from medvit.ingestion.pseudonym import resolve_key
from medvit.ingestion.store import SliceStore
from medvit.ingestion.stream import ConcreteSource, stream_units
from medvit.ingestion.table import (
    build_slice_table,
    check_bad_fraction,
    ingestion_counts,
)
from medvit.ingestion.units import UnitResult
from medvit.pipelines.tracking import metric_items
from medvit.splits import SplitParams, check_disjoint, make_splits, split_counts

QUARANTINE_REPORT = "data/08_reporting/ingestion_quarantine.csv"


def demo_cohort_spec(spec: DemoCohortSpec) -> DemoCohortSpec:
    """The dataset writes the cohort (or keeps it, when the spec is unchanged)."""
    return spec


def _resolve(source: object, demo: DemoCohort) -> ConcreteSource:
    if not isinstance(source, DemoSource):
        return source  # type: ignore[return-value]
    return DicomSource(
        name=source.name,
        root=demo.dicom_dir,
        patients_csv=demo.patients_csv,
        boxes_csv=demo.boxes_csv,
        masks_dir=demo.masks_dir,
        window="tags",
    )


def ingest(
    params: IngestionParams, pseudonym_key: str | None, demo_cohort: DemoCohort
) -> Iterator[UnitResult]:
    """Stream every configured source into the pixel store (a generator the dataset consumes)."""
    sources = [_resolve(source, demo_cohort) for source in params.sources]
    return stream_units(sources, params, resolve_key(pseudonym_key))


def build_slices(store: SliceStore) -> tuple[pd.DataFrame, pd.DataFrame]:
    table, report = build_slice_table(store.records, store.quarantine)
    return table, report[["path", "reason", "kind"]]


def accept_slices(
    candidates: pd.DataFrame, quarantine: pd.DataFrame, store: SliceStore, params: IngestionParams
) -> tuple[pd.DataFrame, dict]:
    """Gate on `max_bad_fraction` after the quarantine report is on disk, so a failed run has it."""
    check_bad_fraction(store.records, quarantine, params.max_bad_fraction, QUARANTINE_REPORT)
    return candidates, metric_items(ingestion_counts(candidates, quarantine))


def patient_units(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (or grouping unit) with its label: what splits are drawn from."""
    return (
        slices.groupby("patient_id", as_index=False)
        .agg(tumor=("patient_tumor", "max"), group=("group", "first"))
        .sort_values("patient_id", ignore_index=True)
    )


def split_patients(slices: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, dict]:
    splits = make_splits(patient_units(slices), params)
    check_disjoint(splits, slices)
    return splits, metric_items({f"split/{k}": v for k, v in split_counts(splits).items()})
