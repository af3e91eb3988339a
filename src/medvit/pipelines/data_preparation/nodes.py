"""Thin nodes: typed parameters at the boundary, the library does the work."""

from __future__ import annotations

import logging

import pandas as pd

from medvit.datasets.demo_cohort import DemoRequest
from medvit.evaluation.audit import (
    AuditParams,
    audit_findings,
    audit_metric_names,
    shortcut_audit,
)
from medvit.imaging.chest_demo import ChestDemoCohort, ChestDemoSpec
from medvit.imaging.demo import DemoCohort, DemoCohortSpec
from medvit.ingestion.cohort import check_split_request
from medvit.ingestion.config import DemoSource, DicomSource, IngestionParams
from medvit.ingestion.findings import patient_findings
from medvit.ingestion.pseudonym import resolve_key
from medvit.ingestion.store import SliceStore
from medvit.ingestion.stream import ConcreteSource, IngestionStream, stream_units
from medvit.ingestion.table import (
    build_slice_table,
    check_bad_fraction,
    ingestion_counts,
    name_files,
)
from medvit.pipelines.tracking import log_text, metric_items
from medvit.splits import (
    FindingSplitParams,
    SplitParams,
    check_disjoint,
    finding_split_summary,
    make_finding_splits,
    make_splits,
    slices_in,
    split_counts,
    with_fingerprint,
)

logger = logging.getLogger(__name__)

QUARANTINE_REPORT = "data/08_reporting/ingestion_quarantine.csv"


def plan_cohort(
    demo: DemoCohortSpec, ingestion: IngestionParams, splits: SplitParams
) -> tuple[DemoRequest, dict[str, str]]:
    """What needs no pixels, before any heavy work: whether the label files allow the split asked
    for, whether the demo is a source at all (the dataset writes it only then, or keeps it when
    the spec is unchanged), and the run's `patient_disjoint` tag."""
    check_split_request(ingestion.sources, demo, splits)
    tags = {"patient_disjoint": str(ingestion.patient_disjoint).lower()}
    return DemoRequest(demo if ingestion.uses_demo else None), tags


def plan_chest_cohort(
    demo: ChestDemoSpec, ingestion: IngestionParams
) -> tuple[DemoRequest, dict[str, str]]:
    """As `plan_cohort` for a multi-label cohort: its split needs the findings, which only the
    ingested images give, so the split request is checked by the split node."""
    tags = {"patient_disjoint": str(ingestion.patient_disjoint).lower()}
    return DemoRequest(demo if ingestion.uses_demo else None), tags


def _resolve(source: object, demo: DemoCohort | ChestDemoCohort) -> ConcreteSource:
    if not isinstance(source, DemoSource):
        return source  # type: ignore[return-value]
    if isinstance(demo, ChestDemoCohort):
        return DicomSource(
            name=source.name, root=demo.dicom_dir, findings_csv=demo.findings_csv, window="tags"
        )
    return DicomSource(
        name=source.name,
        root=demo.dicom_dir,
        patients_csv=demo.patients_csv,
        boxes_csv=demo.boxes_csv,
        masks_dir=demo.masks_dir,
        window="tags",
    )


def ingest(
    params: IngestionParams, pseudonym_key: str | None, demo_cohort: DemoCohort | ChestDemoCohort
) -> tuple[pd.DataFrame, IngestionStream]:
    """The local lookup of every input file, then the stream the pixel store dataset consumes.

    The lookup is saved first, so a run that fails while decoding still lets a user find files.
    """
    sources = [_resolve(source, demo_cohort) for source in params.sources]
    stream = stream_units(sources, params, resolve_key(pseudonym_key, params.sources))
    return stream.lookup(), stream


def build_slices(
    store: SliceStore, lookup: pd.DataFrame, params: IngestionParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The candidate slice table, the quarantine records (readers' and series-level, by file_id)
    the gate counts, and the same records naming files for the local report.

    The report is an output of this node rather than an input of the gate: Kedro saves it before
    the gate can fail the run, and no report feeds the slice table.
    """
    table, quarantine = build_slice_table(
        store.records, store.quarantine, params.views, params.min_image_size
    )
    report = name_files(quarantine, lookup)
    if params.log_quarantine_report:
        log_text(report.to_csv(index=False), "reports/ingestion_quarantine.csv")
    return table, quarantine, report


def accept_slices(
    candidates: pd.DataFrame, quarantine: pd.DataFrame, store: SliceStore, params: IngestionParams
) -> tuple[pd.DataFrame, dict]:
    """Gate on `max_bad_fraction`; the quarantine report is already on disk when this fails.

    Each slice is marked `patient_level` (its source identifies patients), so that evaluation
    can say PTP is not applicable to folds, duplicate groups or single images.
    """
    check_bad_fraction(store.records, quarantine, params.max_bad_fraction, QUARANTINE_REPORT)
    slices = candidates.assign(
        patient_level=candidates["source"].map(params.patient_level_sources).astype(bool)
    )
    return slices, metric_items(ingestion_counts(candidates, quarantine, store.records))


def patient_units(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per patient (or grouping unit) with its label: what splits are drawn from.

    A slice table without `patient_level` (written by hand) counts its units as patients.
    """
    slices = slices if "patient_level" in slices else slices.assign(patient_level=True)
    return (
        slices.groupby("patient_id", as_index=False)
        .agg(
            tumor=("patient_tumor", "max"),
            group=("group", "first"),
            source=("source", "first"),
            patient_level=("patient_level", "all"),
        )
        .sort_values("patient_id", ignore_index=True)
    )


def split_patients(slices: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, dict]:
    """Splits that carry the slice table's fingerprint, so stages refuse them with another one,
    and each unit's `patient_level` flag, which decides whether PTP applies."""
    units = patient_units(slices)
    splits = make_splits(units, params).merge(
        units[["patient_id", "patient_level"]], on="patient_id", how="left", validate="one_to_one"
    )
    splits = with_fingerprint(splits, slices)
    check_disjoint(splits, slices)
    return splits, metric_items({f"split/{k}": v for k, v in split_counts(splits).items()})


def audit_shortcuts(
    slices: pd.DataFrame, splits: pd.DataFrame, store: SliceStore, params: AuditParams
) -> tuple[pd.DataFrame, dict]:
    """Before any training: whether trivial features (intensity, source size, letterbox padding,
    the source name) predict the label, logged as `audit/...` and warned about in the log."""
    rows = slices_in(slices, splits).merge(
        store.records[["image_ref", "rows", "cols"]],
        on="image_ref",
        how="left",
        validate="many_to_one",
    )
    audit = shortcut_audit(rows, store.images, model=params.model, seed=params.seed)
    warnings, notes = audit_findings(audit, params.warn_auroc)
    for warning in warnings:
        logger.warning("Shortcut audit: %s", warning)
    for note in notes:
        logger.info(note)
    return audit, metric_items(audit_metric_names(audit))


def split_patients_by_finding(
    slices: pd.DataFrame, params: FindingSplitParams
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Finding-stratified splits with the slice table's fingerprint, their counts (patients per
    split, positive patients per finding and split) and the summary naming rare findings."""
    units = patient_findings(slices).reset_index()
    splits = with_fingerprint(make_finding_splits(units, params), slices)
    check_disjoint(splits, slices)
    summary = finding_split_summary(units, splits, params.min_positive_patients)
    flagged = summary[summary["status"] != "ok"]
    for row in flagged.itertuples():
        logger.warning("Split %s, %s: %s", row.split, row.finding, row.status)
    counts = split_counts(splits) | {
        f"{row.split}/{row.finding}": row.positive_patients for row in summary.itertuples()
    }
    return splits, metric_items({f"split/{k}": v for k, v in counts.items()}), summary
