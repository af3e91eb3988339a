"""Pages for multi-label results: one model's findings, and models side by side.

Each finding is one row: its positive patients, image and patient AUROC with intervals, the
validation threshold and the test sensitivity and specificity at it, and its status, so a finding
that could not be judged reads "not evaluable: 1 positive patient" rather than a bare number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from medvit.evaluation.confusion import NOT_INFORMATIVE
from medvit.evaluation.multilabel import EVALUABLE, MEAN
from medvit.evaluation.report import SPLIT_NAMES

__all__ = ["estimate_text", "finding_rows", "render_comparison", "render_multilabel_report"]

NOTE = (
    "Patient score: the {rule} of the patient's radiograph scores for the finding; a patient is"
    " positive when any radiograph is. Thresholds are chosen per finding on validation patients"
    " ({threshold_objective}) and applied unchanged to test. Intervals: a bootstrap over patients"
    " for AUROC (not informative with fewer than 5 patients of a class), exact Clopper-Pearson for"
    " sensitivity and specificity. A finding needs {min_patients} positive and {min_patients}"
    " negative patients in a split to be evaluable; the mean AUROC is over the evaluable"
    " findings only, and its row names the ones left out. Definitions: docs/metrics.md."
)


def estimate_text(row: pd.Series | None) -> str:
    """'0.812 (0.702 to 0.901)', or the value with why it has no interval, or 'undefined'."""
    if row is None or not np.isfinite(row["value"]):
        return "undefined"
    value = f"{row['value']:.3f}"
    if str(row["ci_method"]).startswith(NOT_INFORMATIVE):
        return f"{value} ({row['ci_method']})"
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        return f"{value} ({row['ci_low']:.3f} to {row['ci_high']:.3f})"
    return value


def _judged(row: pd.Series | None) -> str:
    """A finding's estimate, or a dash where it is not evaluable (the status says why)."""
    if row is not None and row["finding"] != MEAN and row["status"] != EVALUABLE:
        return "—"
    return estimate_text(row)


def _lookup(table: pd.DataFrame) -> dict[tuple[str, str, str], pd.Series]:
    return {(row.finding, row.level, row.metric): row for _, row in table.iterrows()}


def finding_rows(metrics: pd.DataFrame, split: str) -> pd.DataFrame:
    """One row per finding (the mean last) of `split`, every cell already text."""
    table = metrics[metrics["split"] == split]
    cells = _lookup(table)
    findings = [f for f in dict.fromkeys(table["finding"]) if f != MEAN]
    rows = []
    for finding in findings:
        patient = cells[(finding, "patient", "auroc")]
        threshold = cells[(finding, "patient", "threshold")]["value"]
        rows.append(
            {
                "finding": finding,
                "positive patients": int(cells[(finding, "patient", "n_positive_patients")].value),
                "image AUROC": _judged(cells[(finding, "image", "auroc")]),
                "patient AUROC": _judged(patient),
                "threshold": f"{threshold:.3g}" if np.isfinite(threshold) else "none",
                "sensitivity": estimate_text(cells[(finding, "patient", "sensitivity")]),
                "specificity": estimate_text(cells[(finding, "patient", "specificity")]),
                "status": patient.status,
            }
        )
    mean = cells[(MEAN, "patient", "auroc")]
    rows.append(
        {
            "finding": "**mean**",
            "positive patients": "",
            "image AUROC": estimate_text(cells[(MEAN, "image", "auroc")]),
            "patient AUROC": estimate_text(mean),
            "threshold": "",
            "sensitivity": "",
            "specificity": "",
            "status": mean.status,
        }
    )
    return pd.DataFrame(rows)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    header = [str(column) for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return lines


def render_multilabel_report(model: str, metrics: pd.DataFrame, params: Mapping) -> str:
    """Markdown: every finding of test, then of validation (how far the thresholds carry)."""
    lines = [f"# Multi-label evaluation: {model}", "", NOTE.format(**params), ""]
    for split in ("test", "val"):
        if (metrics["split"] == split).any():
            lines += [f"## {SPLIT_NAMES.get(split, split).capitalize()}", ""]
            lines += [*_markdown_table(finding_rows(metrics, split)), ""]
    return "\n".join(lines)


def render_comparison(
    title: str, tables: Mapping[str, pd.DataFrame], intro: str, split: str = "test"
) -> str:
    """Markdown: patient and image AUROC per finding, one column per model, the means last."""
    models = list(tables)
    cells = {model: _lookup(table[table["split"] == split]) for model, table in tables.items()}
    findings = list(dict.fromkeys(f for c in cells.values() for f, _, _ in c if f != MEAN))
    lines = [f"# {title}", "", intro, ""]
    for level in ("patient", "image"):
        rows = []
        for finding in [*findings, MEAN]:
            row = {"finding": f"**{finding}**" if finding == MEAN else finding}
            for model in models:
                row[model] = _judged(cells[model].get((finding, level, "auroc")))
            status = {cells[m][(finding, level, "auroc")].status for m in models}
            row["status"] = "; ".join(sorted(status - {EVALUABLE})) or EVALUABLE
            rows.append(row)
        lines += [f"## {level.capitalize()}-level AUROC ({SPLIT_NAMES.get(split, split)})", ""]
        lines += [*_markdown_table(pd.DataFrame(rows)), ""]
    return "\n".join(lines)
