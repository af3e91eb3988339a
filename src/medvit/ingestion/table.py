"""From gathered per-slice records to the slice table analysts rely on.

Series-level checks (mixed sizes, slice order) need every slice of a series, which only exist
together after the parallel read, so they live here rather than in the readers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medvit.ingestion.findings import finding_columns

SLICE_COLUMNS = [
    "patient_id",
    "study_id",
    "series_id",
    "slice_index",
    "tumor",
    "boxes",
    "mask_ref",
    "image_ref",
    "source",
    "patient_tumor",
    "instance_id",
    "group",
    "tumor_type",
    "pixel_spacing_mm",
    "slice_thickness_mm",
    "view",
]  # then the `finding_*` columns, when the cohort has findings


class IngestionError(RuntimeError):
    """The cohort as a whole is unusable: too much was quarantined, or nothing was left."""


def _mixed_sizes(records: pd.DataFrame) -> pd.Series:
    """Slices whose source size differs from their series' most common size."""
    size = records["rows"].astype(str) + "x" + records["cols"].astype(str)
    usual = size.groupby(records["series_id"]).transform(lambda s: s.value_counts().index[0])
    return size != usual


def _order(records: pd.DataFrame) -> pd.Series:
    """Slice index along the normal; InstanceNumber (then frame) where any position is missing."""
    by_series = records.groupby("series_id", sort=False)
    has_positions = by_series["position"].transform(lambda p: p.notna().all())
    key = np.where(
        has_positions,
        records["position"],
        records["instance_number"].astype(float).fillna(0) * 1e6 + records["frame"],
    )
    keyed = records.assign(_key=key)
    return keyed.groupby("series_id")["_key"].rank(method="first").astype(int) - 1


def _slice_spacing(records: pd.DataFrame) -> pd.Series:
    """Spacing between slices in mm: the median step between the positions of a series where
    every slice has one, else what the files state (SpacingBetweenSlices or SliceThickness).

    Positions win because thickness is not spacing: gapped or overlapping acquisitions differ.
    """
    stated = records["slice_thickness_mm"].astype(float)

    def measured(positions: pd.Series) -> float:
        steps = np.diff(np.sort(positions.to_numpy(dtype=float)))
        steps = steps[steps > 1e-6]
        return round(float(np.median(steps)), 6) if steps.size else np.nan

    complete = records.groupby("series_id")["position"].transform(lambda p: p.notna().all())
    rows = records[complete.astype(bool)]
    steps = (
        rows.groupby("series_id")["position"].apply(measured)
        if len(rows)
        else pd.Series(dtype=float)
    )
    return records["series_id"].map(steps).astype(float).fillna(stated)


def _checks(
    records: pd.DataFrame, views: list[str] | None, min_image_size: int
) -> list[tuple[pd.Series, str, pd.Series | str]]:
    """(refused, kind, reason) of each check on whole images, in the order they count."""
    size = records["rows"].astype(str) + "x" + records["cols"].astype(str)
    checks: list[tuple[pd.Series, str, pd.Series | str]] = [
        (
            records[["rows", "cols"]].min(axis=1) < min_image_size,
            "too_small",
            "image is " + size + f", below ingestion.min_image_size={min_image_size} px",
        )
    ]
    if views is not None:
        wanted = [view.strip().upper() for view in views]
        view = records["view"]
        checks.append(
            (
                view.notna() & ~view.isin(wanted),
                "excluded_view",
                "view " + view.astype(str) + f" is not one of ingestion.views {wanted}; add it "
                "there (or set views: null) to use it",
            )
        )
    findings = finding_columns(records)
    if findings:
        checks.append(
            (
                records[findings].isna().any(axis=1),
                "unlabelled",
                "its source gives no findings, but the cohort is multi-label",
            )
        )
    mixed = "size " + size + " differs from the rest of its series"
    checks.append((_mixed_sizes(records), "mixed_sizes", mixed))
    return checks


def _refused(records: pd.DataFrame, views: list[str] | None, min_image_size: int) -> pd.DataFrame:
    """`kind`, `reason` per record (null where kept); the first check that refuses it counts."""
    refused = pd.DataFrame({"kind": None, "reason": None}, index=records.index, dtype=object)
    if not len(records):
        return refused
    for hit, kind, reason in _checks(records, views, min_image_size):
        new = hit & refused["kind"].isna()
        refused.loc[new, "kind"] = kind
        refused.loc[new, "reason"] = reason[new] if isinstance(reason, pd.Series) else reason
    return refused


def build_slice_table(
    records: pd.DataFrame,
    quarantine: pd.DataFrame,
    views: list[str] | None = None,
    min_image_size: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the slice table and the full quarantine report: the readers' plus whole images
    refused here (a view not wanted, an image too small, no findings in a multi-label cohort,
    a size that differs from the rest of its series)."""
    refused = _refused(records, views, min_image_size)
    rejected = records[["file_id"]].join(refused)[refused["kind"].notna()]
    kept = records[refused["kind"].isna()].copy()
    kept["slice_index"] = _order(kept) if len(kept) else pd.Series(dtype=int)
    if len(kept):
        kept["slice_thickness_mm"] = _slice_spacing(kept)
    derived = kept.groupby("patient_id")["tumor"].transform("max")
    kept["patient_tumor"] = kept["patient_tumor"].fillna(derived).astype(int)
    findings = finding_columns(kept)
    kept[findings] = kept[findings].astype("int8")
    table = (
        kept[SLICE_COLUMNS + findings]
        .sort_values(["patient_id", "series_id", "slice_index"])
        .reset_index(drop=True)
    )
    report = pd.concat(
        [quarantine, rejected[["file_id", "kind", "reason"]].drop_duplicates()], ignore_index=True
    )
    return table, report


def name_files(report: pd.DataFrame, lookup: pd.DataFrame) -> pd.DataFrame:
    """The quarantine report with each file's source and path: for the local report only."""
    named = report.merge(lookup, on="file_id", how="left", validate="many_to_one")
    return named[["path", "reason", "kind", "source", "file_id"]]


def check_bad_fraction(
    records: pd.DataFrame, report: pd.DataFrame, max_bad_fraction: float, report_path: str
) -> None:
    """Fail when more than the tolerated share of inputs (files, manifest rows) was unusable."""
    bad = report["file_id"].nunique()
    used = records.loc[~records["file_id"].isin(report["file_id"]), "file_id"].nunique()
    if used == 0:
        raise IngestionError(
            f"no usable slice was ingested; every input is listed in {report_path}"
        )
    total = bad + used
    if bad / total > max_bad_fraction:
        raise IngestionError(
            f"{bad} of {total} inputs ({bad / total:.1%}) were quarantined, above "
            f"max_bad_fraction={max_bad_fraction}; reasons are listed in {report_path}"
        )


def ingestion_counts(
    table: pd.DataFrame, report: pd.DataFrame, records: pd.DataFrame
) -> dict[str, float]:
    """Counts for MLflow; `records` (the store's) say how many boxes of kept slices were clipped
    at the image edge or cut by the foreground crop."""
    patients = table.groupby("patient_id")["patient_tumor"].first()
    kept = records["image_ref"].isin(table["image_ref"])
    counts = {
        "ingest/slices": len(table),
        "ingest/tumor_slices": int(table["tumor"].sum()),
        "ingest/patients": len(patients),
        "ingest/tumor_patients": int(patients.sum()),
        "ingest/series": table["series_id"].nunique(),
        "ingest/quarantined": len(report),
        "ingest/clipped_boxes": int(records.loc[kept, "clipped_boxes"].sum()),
        "ingest/cropped_boxes": int(records.loc[kept, "cropped_boxes"].sum()),
    }
    for kind, count in report["kind"].value_counts().items():
        counts[f"ingest/quarantined/{kind}"] = int(count)
    for column in finding_columns(table):  # radiographs showing each finding
        counts[f"ingest/{column}"] = int(table[column].sum())
    return counts
