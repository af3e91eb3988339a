"""Shortcut audit: can features that say nothing about a tumour predict the label anyway?

A cohort assembled from several hospitals, scanners or archives often ties the label to where an
image came from (all tumours from one archive, all normals from another). A model then learns the
source, not the tumour, and looks excellent on a test split drawn from the same mix. The audit
asks, before any training, how well trivial features predict the slice label: a small sklearn
model is fitted on training slices and scored on validation slices (AUROC) for each feature group
and for all of them together. A high AUROC means the cohort invites a shortcut, and the group
names which one.

Features come from the stored pixels and the records ingestion keeps, never from identifying
header values: intensity statistics, original size and aspect ratio, letterbox padding, and the
source name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "AUDIT_COLUMNS",
    "FEATURE_GROUPS",
    "AuditModel",
    "AuditParams",
    "audit_findings",
    "audit_metric_names",
    "read_back",
    "shortcut_audit",
    "trivial_features",
]

AuditModel = Literal["boosting", "logistic"]
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
FEATURE_GROUPS = ("intensity", "size", "padding", "source")
ALL = "all"
LESION_SENSITIVE = ("intensity", ALL)  # groups a tumour itself can move
AUDIT_COLUMNS = ("split", "source", "feature_group", "metric", "value", "note")
_CHUNK = 512  # images per read: bounded memory on a memory-mapped store of any size
_LABELS = {0: "normal", 1: "tumour"}


class AuditParams(BaseModel):
    """`audit` in parameters_data_preparation.yml."""

    model_config = ConfigDict(extra="forbid")

    model: AuditModel = "boosting"  # shallow gradient boosting finds non-monotone sizes too
    warn_auroc: float = Field(0.8, gt=0.5, le=1.0)
    seed: int = 0


def _padding_fraction(images: np.ndarray) -> np.ndarray:
    """Share of each image outside the box that drops all-zero border rows and columns."""
    height, width = images.shape[1:]
    rows, cols = images.any(axis=2), images.any(axis=1)

    def kept(present: np.ndarray, length: int) -> np.ndarray:
        leading = np.where(present.any(axis=1), present.argmax(axis=1), length)
        trailing = present[:, ::-1].argmax(axis=1)
        return np.clip(length - leading - trailing, 0, length)

    return 1.0 - kept(rows, height) * kept(cols, width) / (height * width)


def trivial_features(
    images: np.ndarray, rows: pd.DataFrame, sources: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per row of `rows` (needs `image_ref`, `rows`, `cols`, `source`): feature columns
    named `<group>/<feature>`, so a group is selected by its prefix.

    `sources` fixes the one-hot columns of the source name (all sources of the cohort), so train
    and validation features line up even when a source is missing from one of them.
    """
    refs = rows["image_ref"].to_numpy(dtype=np.int64)
    blocks = []
    for start in range(0, len(refs), _CHUNK):
        chunk = np.asarray(images[refs[start : start + _CHUNK]])
        flat = chunk.reshape(len(chunk), -1).astype(np.float32)
        blocks.append(
            np.column_stack(
                [
                    flat.mean(axis=1),
                    flat.std(axis=1),
                    *np.percentile(flat, PERCENTILES, axis=1),
                    _padding_fraction(chunk),
                ]
            )
        )
    names = ["mean", "std", *(f"p{q}" for q in PERCENTILES)]
    stats = np.concatenate(blocks) if blocks else np.empty((0, len(names) + 1))
    features = pd.DataFrame(
        stats, columns=[*(f"intensity/{name}" for name in names), "padding/fraction"]
    )
    height, width = rows["rows"].to_numpy(float), rows["cols"].to_numpy(float)
    features["size/rows"], features["size/cols"] = height, width
    features["size/aspect"] = width / height
    for source in sorted(set(rows["source"]) if sources is None else sources):
        features[f"source/{source}"] = (rows["source"].to_numpy() == source).astype(float)
    return features


def _classifier(model: AuditModel, seed: int):
    if model == "logistic":
        return make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced")
        )
    # Single-threaded on purpose: the histogram variant's OpenMP threads crawl on shared cores.
    return GradientBoostingClassifier(max_depth=3, n_estimators=100, random_state=seed)


def _label_counts(rows: pd.DataFrame) -> list[dict]:
    counts = rows.groupby(["split", "source"])["tumor"].agg(n_tumor="sum", n_slices="size")
    records = []
    for (split, source), row in counts.iterrows():
        for metric, value in (
            ("n_tumor", row.n_tumor),
            ("n_normal", row.n_slices - row.n_tumor),
        ):
            records.append(
                {"split": split, "source": source, "metric": metric, "value": float(value)}
            )
    return records


def _not_applicable(train: pd.Series, val: pd.Series) -> str | None:
    """Why no AUROC can be fitted and scored: a split with no slices or a single class."""
    for name, labels in (("training", train), ("validation", val)):
        if not len(labels):
            return f"not applicable: {name} holds no slices"
        if labels.nunique() == 1:
            return f"not applicable: {name} holds only {_LABELS[int(labels.iloc[0])]} slices"
    return None


def _fit_and_score(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_val: pd.DataFrame,
    y_val: pd.Series,
    model: AuditModel,
    seed: int,
) -> dict[str, float]:
    """Validation AUROC per feature group (groups without varying features included: 0.5)."""
    found = {}
    for group in (*FEATURE_GROUPS, ALL):
        columns = [c for c in x_train.columns if group == ALL or c.startswith(f"{group}/")]
        fitted = _classifier(model, seed).fit(x_train[columns], y_train)
        found[group] = float(roc_auc_score(y_val, fitted.predict_proba(x_val[columns])[:, 1]))
    return found


def _aurocs(
    train: pd.DataFrame, val: pd.DataFrame, images: np.ndarray, model: AuditModel, seed: int
) -> list[dict]:
    """Validation AUROC per feature group, over all sources (`source` = "all") and within each
    source with both labels in training and validation; or one row saying why none."""
    row = {"split": "val", "metric": "auroc"}
    reason = _not_applicable(train["tumor"], val["tumor"])
    if reason:
        return [{**row, "source": ALL, "feature_group": ALL, "value": np.nan, "note": reason}]
    sources = sorted(set(train["source"]) | set(val["source"]))
    x_train = trivial_features(images, train, sources)
    x_val = trivial_features(images, val, sources)
    scopes = {ALL: (train.index, val.index)}
    if len(sources) > 1:
        for source in sources:
            own = (train.index[train["source"] == source], val.index[val["source"] == source])
            if all(
                frame.loc[index, "tumor"].nunique() == 2
                for frame, index in zip((train, val), own, strict=True)
            ):
                scopes[source] = own
    records = []
    for scope, (fit_on, score_on) in scopes.items():
        aurocs = _fit_and_score(
            x_train.loc[fit_on],
            train.loc[fit_on, "tumor"],
            x_val.loc[score_on],
            val.loc[score_on, "tumor"],
            model,
            seed,
        )
        records += [
            {**row, "source": scope, "feature_group": group, "value": value}
            for group, value in aurocs.items()
        ]
    return records


def shortcut_audit(
    rows: pd.DataFrame,
    images: np.ndarray,
    *,
    model: AuditModel = "boosting",
    seed: int = 0,
) -> pd.DataFrame:
    """The audit table (`AUDIT_COLUMNS`): slice label counts per split and source, and the
    validation AUROC of each feature group fitted on training slices.

    `rows`: one row per slice with `split`, `source`, `tumor`, `image_ref` and the source image's
    `rows`/`cols`; `images` the stored pixels `image_ref` indexes. When training or validation
    holds a single class, one `auroc` row says why the audit is not applicable (value NaN).
    """
    missing = {"split", "source", "tumor", "image_ref", "rows", "cols"} - set(rows.columns)
    if missing:
        raise ValueError(
            f"the audit needs column(s) {', '.join(sorted(missing))} on its slice rows; "
            f"it got {', '.join(map(str, rows.columns))}"
        )
    rows = rows.astype({"tumor": int})
    train, val = (rows[rows["split"] == split].reset_index(drop=True) for split in ("train", "val"))
    table = pd.DataFrame(
        [*_label_counts(rows), *_aurocs(train, val, images, model, seed)],
        columns=list(AUDIT_COLUMNS),
    )
    return read_back(table)


def read_back(audit: pd.DataFrame) -> pd.DataFrame:
    """The table as `shortcut_audit` made it, after a CSV round trip turned empty text into NaN."""
    text = ["split", "source", "feature_group", "metric", "note"]
    return audit.astype({column: object for column in text}).fillna(dict.fromkeys(text, ""))


def audit_metric_names(audit: pd.DataFrame) -> dict[str, float]:
    """`audit/<split>/<source>/n_tumor|n_normal`, `audit/val/auroc/<group>` (all sources) and
    `audit/val/<source>/auroc/<group>` (within one source)."""
    named = {}
    for row in read_back(audit).itertuples(index=False):
        if row.metric == "auroc":
            scope = "" if row.source == ALL else f"{row.source}/"
            named[f"audit/{row.split}/{scope}auroc/{row.feature_group}"] = float(row.value)
        else:
            named[f"audit/{row.split}/{row.source}/{row.metric}"] = float(row.value)
    return named


def _single_source_labels(audit: pd.DataFrame) -> list[str]:
    """Per split with several sources: a label that only one source provides."""
    audit = read_back(audit)
    counts = audit[audit["metric"].isin(["n_tumor", "n_normal"]) & (audit["value"] > 0)]
    findings = []
    for split, rows in counts.groupby("split", sort=False):
        if rows["source"].nunique() < 2:
            continue
        for metric, label in (("n_tumor", "tumour"), ("n_normal", "normal")):
            holders = sorted(rows.loc[rows["metric"] == metric, "source"])
            if len(holders) == 1:
                findings.append(
                    f"every {label} slice of the {split} split comes from source "
                    f"{holders[0]!r}: the source name alone predicts the label there"
                )
    return findings


def audit_findings(audit: pd.DataFrame, warn_auroc: float = 0.8) -> tuple[list[str], list[str]]:
    """(warnings, notes) in words: feature groups at or above `warn_auroc`, labels that come from
    a single source; notes say when the AUROC part was not applicable.

    A bright lesion raises a slice's intensity statistics by itself, so in a cohort of one source
    a high `intensity` (or `all`) AUROC may be the tumour, not a shortcut: a note, not a warning.
    Size, padding and the source name never show a tumour, so they always warn.
    """
    audit = read_back(audit)
    aurocs = audit[audit["metric"] == "auroc"]
    notes = [f"Shortcut audit AUROC {note}" for note in aurocs["note"] if note]
    held = audit[audit["metric"].isin(["n_tumor", "n_normal"]) & (audit["value"] > 0)]
    one_source = held.loc[held["split"].isin(["train", "val"]), "source"].nunique() < 2
    warnings = []
    for row in aurocs.itertuples(index=False):
        if not (np.isfinite(row.value) and row.value >= warn_auroc):
            continue
        where = "" if row.source == ALL else f" within source '{row.source}'"
        found = (
            f"trivial features '{row.feature_group}' predict the slice label{where} at validation"
            f" AUROC {row.value:.3f} (>= {warn_auroc})"
        )
        alone = one_source or row.source != ALL
        if alone and row.feature_group in LESION_SENSITIVE:
            notes.append(
                f"Shortcut audit: {found}; with a single source this can be the lesion itself "
                "(a bright tumour raises intensity statistics), not a source shortcut"
            )
        else:
            warnings.append(
                f"{found}: a model can score well by learning them instead of the tumour; read "
                "the within-source metrics of every evaluation"
            )
    return warnings + _single_source_labels(audit), notes
