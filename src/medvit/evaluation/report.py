"""One-page Markdown report per model and split, readable without MLflow or Python.

Markdown keeps the report diffable and viewable anywhere (GitHub, MLflow artifacts, a text editor);
figures are referenced by file name so the page and its PNGs can be moved together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from medvit.evaluation.confusion import MIN_CLASS_UNITS, NOT_INFORMATIVE
from medvit.evaluation.ptp import COUNT_METRICS

__all__ = ["render_report"]

OUTCOMES = {(1, 1): "TP", (0, 1): "FP", (0, 0): "TN", (1, 0): "FN"}
INTERVAL_NOTE = (
    "Each interval names its method. Proportions (sensitivity, specificity, PPV, NPV, accuracy)"
    " get exact Clopper-Pearson intervals, and PPV and NPV at the target prevalence carry the"
    " Clopper-Pearson bounds of sensitivity and specificity through Bayes' rule; F1, balanced"
    " accuracy, macro averages and AUROC get a percentile bootstrap over patients, which is"
    f" not informative when a class has fewer than {MIN_CLASS_UNITS} patients or every resample"
    " gives the same value. See docs/metrics.md."
)


def _cell(value: object) -> str:
    """Markdown-safe cell; floats at 3 d.p. and NaN spelled out as undefined."""
    if isinstance(value, float | np.floating):
        return "undefined" if np.isnan(value) else f"{value:.3f}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _interval(low: float, high: float, method: str) -> str:
    """The bounds with the method that gave them; a reason instead when they would mislead."""
    if method.startswith(NOT_INFORMATIVE):
        return method
    if np.isnan(low) or np.isnan(high):
        return "—"
    return f"{low:.3f} to {high:.3f} ({method})"


def _metrics_section(metrics: pd.DataFrame, ci: float) -> list[str]:
    rates = metrics[~metrics["metric"].isin(COUNT_METRICS)]
    rows = [
        (row.metric, row.value, _interval(row.ci_low, row.ci_high, row.ci_method))
        for row in rates.itertuples(index=False)
    ]
    counts = metrics[metrics["metric"].isin(COUNT_METRICS)]
    count_text = ", ".join(
        f"{row.metric} = {row.value:.0f}" for row in counts.itertuples(index=False)
    )
    return [
        "## Metrics",
        "",
        *_table(("metric", "value", f"{ci:.0%} CI"), rows),
        "",
        f"Counts: {count_text}." if count_text else "",
        "",
        INTERVAL_NOTE,
    ]


def _patients_section(patients: pd.DataFrame) -> list[str]:
    """One row per unit called: a patient, or one of a patient's studies (a `study_id` column)."""
    keys = [column for column in ("patient_id", "study_id") if column in patients.columns]
    rows = [
        (
            *(getattr(row, key) for key in keys),
            row.tumor,
            row.score,
            row.decision,
            OUTCOMES[(int(row.tumor), int(row.decision))],
            row.n_slices,
            row.n_positive_slices,
        )
        for row in patients.itertuples(index=False)
    ]
    header = (*keys, "tumor", "score", "decision", "outcome", "slices", "positive slices")
    title = "## Studies" if "study_id" in keys else "## Patients"
    return [title, "", *_table(header, rows)]


def render_report(
    model: str,
    split: str,
    metrics: pd.DataFrame,
    patients: pd.DataFrame,
    figures: Mapping[str, str],
    params: Mapping[str, object],
) -> str:
    """Markdown page: parameters, metrics with CIs, figures and every patient's call.

    `figures` maps a caption to an image file name relative to the report; `params` should hold the
    aggregation rule, threshold and target prevalence (and `ci` if not 0.95).
    """
    ci = float(params.get("ci", 0.95))
    lines = [
        f"# Patient-to-patient evaluation: {model} on {split}",
        "",
        "A patient is called tumour when their patient score is >= the threshold, which was chosen"
        " on validation patients only. Definitions: docs/metrics.md.",
        "",
        "## Parameters",
        "",
        *(f"- **{key}**: {value}" for key, value in params.items()),
        "",
        *_metrics_section(metrics, ci),
        "",
        "## Figures",
        "",
        *(f"![{caption}]({file_name})\n" for caption, file_name in figures.items()),
        *_patients_section(patients),
    ]
    return "\n".join(lines) + "\n"
