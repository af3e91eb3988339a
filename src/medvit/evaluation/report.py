"""One-page report per model and split: Markdown, and the same page as standalone HTML.

Markdown keeps the report diffable and viewable anywhere (GitHub, a text editor), with figures
referenced by file name so the page and its PNGs can be moved together. MLflow's artifact view
shows Markdown as text, so the HTML twin carries its figures inline and renders where analysts
read it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from markdown_it import MarkdownIt

from medvit.evaluation.confusion import MIN_CLASS_UNITS, NOT_INFORMATIVE
from medvit.evaluation.ptp import COUNT_METRICS

__all__ = ["Threshold", "png_data_uri", "render_html", "render_report"]

OUTCOMES = {(1, 1): "TP", (0, 1): "FP", (0, 0): "TN", (1, 0): "FN"}
SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training"}
# Names the same number goes by, so that a reader of either vocabulary finds it.
SYNONYMS = {
    "sensitivity": "tumour recall, true positive rate",
    "tumor_recall": "sensitivity",
    "specificity": "normal recall, true negative rate",
    "normal_recall": "specificity",
    "ppv": "tumour precision, positive predictive value",
    "tumor_precision": "PPV",
    "npv": "normal precision, negative predictive value",
    "normal_precision": "NPV",
    "macro_recall": "balanced accuracy",
    "balanced_accuracy": "macro recall",
}
HTML_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "img{max-width:32%;margin:4px}"
)


@dataclass(frozen=True)
class Threshold:
    """An operating point and, in words, what it decides and how it was chosen."""

    name: str  # "Patient threshold"
    value: float
    decides: str  # "a patient is called tumour when their patient score is at least"
    chosen_by: str  # "Youden's J on validation patients"

    def sentence(self) -> str:
        """One sentence, the value at 3 significant digits as it reads in the sentence."""
        value = f"{self.value:.3g}"
        return f"- **{self.name} = {value}**: {self.decides} {value}; chosen by {self.chosen_by}."


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


def _split_name(split: str) -> str:
    return SPLIT_NAMES.get(split, split)


def _by_split(metrics: pd.DataFrame, split: str) -> tuple[pd.DataFrame, list[str]]:
    """The table with a `split` column (one split if it had none), and its splits, `split` first."""
    if "split" not in metrics:
        metrics = metrics.assign(split=split)
    return metrics, [split, *(other for other in metrics["split"].unique() if other != split)]


def _metrics_section(metrics: pd.DataFrame, split: str, ci: float) -> list[str]:
    """Rates of `split`, with every other split of the table beside them (validation beside
    test shows how far the threshold tuned on validation carries over)."""
    metrics, splits = _by_split(metrics, split)
    by_split = {name: metrics[metrics["split"] == name].set_index("metric") for name in splits}
    shown = by_split[split]
    rates = shown.index[~shown.index.isin(COUNT_METRICS)]
    header = ["metric"]
    for name in splits:
        prefix = "" if len(splits) == 1 else f"{_split_name(name)} "
        header += [f"{prefix}value", f"{prefix}{ci:.0%} CI"]
    rows = []
    for metric in rates:
        row: list[object] = [metric]
        for name in splits:
            if metric in by_split[name].index:
                value = by_split[name].loc[metric]
                row += [value.value, _interval(value.ci_low, value.ci_high, value.ci_method)]
            else:
                row += ["—", "—"]
        rows.append([*row, SYNONYMS.get(metric, "")])
    counts = shown.loc[shown.index.isin(COUNT_METRICS), "value"]
    count_text = ", ".join(f"{metric} = {value:.0f}" for metric, value in counts.items())
    return [
        "## Metrics",
        "",
        *_table([*header, "also called"], rows),
        "",
        f"Counts ({_split_name(split)}): {count_text}." if count_text else "",
        "",
        INTERVAL_NOTE,
    ]


def _prevalence_sentence(metrics: pd.DataFrame, split: str) -> str:
    """'30 test patients, 3 with a tumour: a prevalence of 10%', for every split of the table."""
    metrics, splits = _by_split(metrics, split)
    parts = []
    for name in splits:
        counts = metrics[metrics["split"] == name].set_index("metric")["value"]
        if not {"n_tumor", "n_normal"} <= set(counts.index):
            continue
        tumour, total = int(counts["n_tumor"]), int(counts["n_tumor"] + counts["n_normal"])
        unit = "studies" if "n_studies" in counts.index else "patients"
        share = f"a prevalence of {tumour / total:.0%}" if total else "no prevalence"
        parts.append(f"{total} {_split_name(name)} {unit}, {tumour} with a tumour: {share}")
    return ("; ".join(parts) + ".") if parts else ""


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
    thresholds: Sequence[Threshold] = (),
) -> str:
    """Markdown page: cohort, thresholds, metrics with CIs, figures and every patient's call.

    `metrics` may hold several splits (a `split` column): `split` is reported, the others are
    shown beside it. `figures` maps a caption to an image location (a file name relative to the
    report, or a data URI); `params` should hold the aggregation rule and target prevalence (and
    `ci` if not 0.95).
    """
    ci = float(params.get("ci", 0.95))
    lines = [
        f"# Patient-to-patient evaluation: {model} on {split}",
        "",
        "A patient is called tumour when their patient score is >= the threshold, which was chosen"
        " on validation patients only. Definitions: docs/metrics.md.",
        "",
        _prevalence_sentence(metrics, split),
        "",
    ]
    if thresholds:
        lines += ["## Thresholds", "", *(threshold.sentence() for threshold in thresholds), ""]
    lines += [
        "## Parameters",
        "",
        *(f"- **{key}**: {value}" for key, value in params.items()),
        "",
        *_metrics_section(metrics, split, ci),
        "",
        "## Figures",
        "",
        *(f"![{caption}]({location})\n" for caption, location in figures.items()),
        *_patients_section(patients),
    ]
    return "\n".join(lines) + "\n"


def png_data_uri(png: bytes) -> str:
    """An image location that travels inside the page: the HTML report has no sibling files."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(markdown: str, title: str) -> str:
    """A standalone HTML page of a Markdown report (tables included), for MLflow's artifact view.

    Raw HTML in the Markdown is escaped, not passed through: cells quote patient keys.
    """
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
