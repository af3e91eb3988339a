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

from medvit.evaluation.audit import audit_findings, read_back
from medvit.evaluation.confusion import MIN_CLASS_UNITS, NOT_INFORMATIVE
from medvit.evaluation.ptp import COUNT_METRICS
from medvit.evaluation.slice_metrics import COUNT_METRICS as SLICE_COUNTS

__all__ = ["Threshold", "entangled", "png_data_uri", "render_html", "render_report"]

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
COUNTS = (*COUNT_METRICS, *SLICE_COUNTS)
# The figures of the within-source tables: (metric, column title).
WITHIN_COLUMNS = (
    ("auroc", "AUROC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
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
SLICE_INTERVAL_NOTE = (
    "Each interval names its method: a percentile bootstrap over the units slices are grouped"
    " in (patients, or the folds and near-duplicate groups of a source without patient"
    f" identifiers), not informative when a class has fewer than {MIN_CLASS_UNITS} units or"
    " every resample gives the same value. See docs/metrics.md."
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


def _metrics_section(
    metrics: pd.DataFrame, split: str, ci: float, note: str = INTERVAL_NOTE
) -> list[str]:
    """Rates of `split`, with every other split of the table beside them (validation beside
    test shows how far the threshold tuned on validation carries over)."""
    metrics, splits = _by_split(metrics, split)
    by_split = {name: metrics[metrics["split"] == name].set_index("metric") for name in splits}
    shown = by_split[split]
    rates = shown.index[~shown.index.isin(COUNTS)]
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
    counts = shown.loc[shown.index.isin(COUNTS), "value"]
    count_text = ", ".join(f"{metric} = {value:.0f}" for metric, value in counts.items())
    return [
        "## Metrics",
        "",
        *_table([*header, "also called"], rows),
        "",
        f"Counts ({_split_name(split)}): {count_text}." if count_text else "",
        "",
        note,
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


def _estimate(rows: pd.DataFrame, metric: str) -> str:
    """'0.912 (0.850 to 0.960)' from a tidy table; the reason where no interval is shown."""
    if metric not in rows.index:
        return "—"
    row = rows.loc[metric]
    if np.isnan(row.value):
        return "undefined"
    if row.ci_method.startswith(NOT_INFORMATIVE):
        return f"{row.value:.3f} (interval {NOT_INFORMATIVE})"
    if np.isnan(row.ci_low) or np.isnan(row.ci_high):
        return f"{row.value:.3f}"
    return f"{row.value:.3f} ({row.ci_low:.3f} to {row.ci_high:.3f})"


def entangled(by_source: pd.DataFrame) -> dict[str, str]:
    """Source -> 'tumour slices (validation, test)': the one label it holds and where, for
    splits with several sources. Pooled figures can then be earned by telling sources apart."""
    counts = by_source[(by_source["level"] == "slice")]
    found: dict[str, tuple[str, list[str]]] = {}
    for split, rows in counts.groupby("split", sort=False):
        if rows["source"].nunique() < 2:
            continue
        table = rows.pivot_table(index="source", columns="metric", values="value")
        for source, row in table.iterrows():
            if row["n_positive"] in (0, row["n_slices"]):
                label = "tumour" if row["n_positive"] else "normal"
                found.setdefault(source, (label, []))[1].append(_split_name(split))
    return {
        source: f"{label} slices ({', '.join(where)})" for source, (label, where) in found.items()
    }


def _within_tables(by_source: pd.DataFrame, split: str) -> list[str]:
    """One row per source and split (the reported split first): counts and the headline rates."""
    _, splits = _by_split(by_source, split)
    lines = []
    for level, title, count in (
        ("slice", "Slices", ("n_slices", "n_positive")),
        ("ptp", "Patients (PTP)", ("n_patients", "n_tumor")),
    ):
        rows = by_source[by_source["level"] == level]
        if rows.empty:
            continue
        body = []
        for name in splits:
            for source, metrics in rows[rows["split"] == name].groupby("source", sort=True):
                values = metrics.set_index("metric")
                counted = [int(values.loc[c, "value"]) if c in values.index else "—" for c in count]
                rates = [_estimate(values, metric) for metric, _ in WITHIN_COLUMNS]
                body.append([source, _split_name(name), *counted, *rates])
        unit = "slices" if level == "slice" else "patients"
        header = ["source", "split", unit, f"tumour {unit}", *(t for _, t in WITHIN_COLUMNS)]
        lines += [f"### {title}", "", *_table(header, body), ""]
    return [*lines, 'Intervals as in the pooled metrics; "undefined" where a source lacks a class.']


def _within_section(by_source: pd.DataFrame | None, split: str, lead: dict[str, str]) -> list[str]:
    """Within-source figures; with one source, one sentence instead of a copy of the pooled."""
    if by_source is None or by_source.empty:
        return [
            "## Within-source metrics",
            "",
            "The predictions carry no source, so no within-source figures could be computed.",
        ]
    sources = sorted(by_source["source"].unique())
    if len(sources) == 1:
        return [
            "## Within-source metrics",
            "",
            f"One source ({sources[0]}): the pooled metrics above are its within-source metrics.",
        ]
    why = (
        "Sources and labels are entangled: "
        + "; ".join(f"{source} holds only {what}" for source, what in lead.items())
        + ". Pooled figures can then be earned by telling sources apart rather than finding"
        " tumours, so the within-source figures come first: within one source only what separates"
        " its tumours from its normals counts, and only a source with both labels has an AUROC."
        if lead
        else "Each source's slices on their own, at the same thresholds: a model that tells"
        " sources apart gains nothing here."
    )
    return [
        "## Within-source metrics",
        "",
        why,
        "",
        *_within_tables(by_source, split),
    ]


def _audit_section(audit: pd.DataFrame | None) -> list[str]:
    """What the data preparation's shortcut audit found, before any model was trained."""
    lines = ["## Shortcut audit (data preparation)", ""]
    if audit is None or audit.empty:
        return [*lines, "No shortcut audit ran for this cohort."]
    audit = read_back(audit)
    warnings, notes = audit_findings(audit)
    aurocs = audit[(audit["metric"] == "auroc") & (audit["note"] == "")]
    lines += [
        "How well trivial features predict the slice label: a small model fitted on training"
        " slices, scored on validation slices (AUROC; 0.5 is chance).",
        "",
    ]
    if not aurocs.empty:
        scopes = ["all", *sorted(set(aurocs["source"]) - {"all"})]
        table = aurocs.pivot_table(
            index="feature_group", columns="source", values="value", sort=False
        ).reindex(columns=scopes)
        header = [
            "feature group",
            *(f"within {s}" if s != "all" else "all sources" for s in scopes),
        ]
        rows = [
            (group, *values) for group, values in zip(table.index, table.to_numpy(), strict=True)
        ]
        lines += [*_table(header, rows), ""]
    lines += [*(f"- {note}" for note in notes), *(f"- **Warning**: {w}" for w in warnings)]
    counts = audit[audit["metric"].isin(["n_tumor", "n_normal"])]
    table = counts.pivot_table(
        index=["split", "source"], columns="metric", values="value", sort=False, fill_value=0
    )
    table = table.reindex(columns=["n_tumor", "n_normal"], fill_value=0).reset_index()
    rows = [
        (_split_name(row.split), row.source, int(row.n_tumor), int(row.n_normal))
        for row in table.itertuples(index=False)
    ]
    return [
        *lines,
        "",
        *_table(["split", "source", "tumour slices", "normal slices"], rows),
    ]


def render_report(
    model: str,
    split: str,
    metrics: pd.DataFrame,
    patients: pd.DataFrame,
    figures: Mapping[str, str],
    params: Mapping[str, object],
    thresholds: Sequence[Threshold] = (),
    *,
    by_source: pd.DataFrame | None = None,
    audit: pd.DataFrame | None = None,
    ptp_not_applicable: str | None = None,
) -> str:
    """Markdown page: cohort, thresholds, metrics with CIs, figures and every patient's call.

    `metrics` may hold several splits (a `split` column): `split` is reported, the others are
    shown beside it. `figures` maps a caption to an image location (a file name relative to the
    report, or a data URI); `params` should hold the aggregation rule and target prevalence (and
    `ci` if not 0.95). `by_source` (with `level`, `split`, `source` columns) adds the
    within-source figures, first when sources and labels are entangled; `audit` the data
    preparation's shortcut audit. With `ptp_not_applicable` (the reason), `metrics` is the slice
    table, the page says why PTP has no figures, and `patients` is not shown.
    """
    ci = float(params.get("ci", 0.95))
    lead = entangled(by_source) if by_source is not None else {}
    within = [] if by_source is None else _within_section(by_source, split, lead)
    if ptp_not_applicable:
        lines = [
            f"# Slice-level evaluation: {model} on {split}",
            "",
            f"**Patient-to-patient (PTP) evaluation is not applicable**: {ptp_not_applicable}."
            " Slice-level figures follow; a slice is called tumour when its score is >= the"
            " slice threshold, chosen on validation slices only. Definitions: docs/metrics.md.",
            "",
        ]
        pooled = _metrics_section(metrics, split, ci, SLICE_INTERVAL_NOTE)
    else:
        lines = [
            f"# Patient-to-patient evaluation: {model} on {split}",
            "",
            "A patient is called tumour when their patient score is >= the threshold, which was"
            " chosen on validation patients only. Definitions: docs/metrics.md.",
            "",
            _prevalence_sentence(metrics, split),
            "",
        ]
        pooled = _metrics_section(metrics, split, ci)
    if lead:
        lines += [*within, ""]
    if thresholds:
        lines += ["## Thresholds", "", *(threshold.sentence() for threshold in thresholds), ""]
    lines += [
        "## Parameters",
        "",
        *(f"- **{key}**: {value}" for key, value in params.items()),
        "",
        *pooled,
        "",
    ]
    if within and not lead:
        lines += [*within, ""]
    lines += [
        *_audit_section(audit),
        "",
        "## Figures",
        "",
        *(f"![{caption}]({location})\n" for caption, location in figures.items()),
    ]
    if not ptp_not_applicable:
        lines += _patients_section(patients)
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
