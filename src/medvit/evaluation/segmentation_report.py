"""The segmentation report: both models under both prompt sources on one page, Markdown and HTML.

One page rather than one per model, because the question it answers is a comparison: what the
dual branch of DB-SAM buys over training SAM's decoder alone, with true boxes and with the boxes
the detector really finds.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure

from medvit.evaluation.report import _cell, _interval, _table
from medvit.evaluation.segmentation import COUNT_METRICS

__all__ = ["figure_png", "render_report"]

DEFINITIONS = {
    "dice": "Dice of each tumour slice, mean over slices",
    "hd95_mm": "95th percentile Hausdorff distance (mm), over slices with a prediction",
    "hd95_px": "the same in stored pixels (given when the spacing is unknown)",
    "nsd": "normalised surface Dice at the tolerance",
    "volume_dice": "Dice of each series' stacked slices (3-D), mean over series",
    "volume_abs_error_ml": "|predicted - true| tumour volume per series (mL)",
    "true_ml": "true tumour volume per series (mL), mean",
    "pred_ml": "predicted tumour volume per series (mL), mean",
}


def figure_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _comparison(summaries: Mapping[str, pd.DataFrame], split: str) -> list[str]:
    columns = [
        (model, prompt)
        for model, table in summaries.items()
        for prompt in table.loc[table["split"] == split, "prompt"].unique()
    ]
    indexed = {
        (model, prompt): table[(table["split"] == split) & (table["prompt"] == prompt)].set_index(
            "metric"
        )
        for model, table in summaries.items()
        for prompt in table["prompt"].unique()
    }
    if not columns:
        return [f"No {split} results."]
    metrics = list(indexed[columns[0]].index)
    rows = []
    for metric in metrics:
        row: list[object] = [metric]
        for column in columns:
            value = indexed[column].loc[metric]
            if metric in COUNT_METRICS:
                row.append(f"{value.value:.0f}")
            else:
                interval = _interval(value.ci_low, value.ci_high, value.ci_method)
                row.append(f"{_cell(float(value.value))} ({interval})")
        rows.append([*row, DEFINITIONS.get(metric, "count")])
    header = ["metric", *(f"{model}, {prompt} boxes" for model, prompt in columns), "meaning"]
    return _table(header, rows)


def render_report(
    summaries: Mapping[str, pd.DataFrame],
    series: pd.DataFrame,
    parameter_counts: Mapping[str, Mapping[str, int]],
    box_threshold: float,
    params: Mapping[str, object],
    figures: Mapping[str, str],
) -> str:
    """`summaries`: per model, the tidy table with `split` and `prompt`; `series`: the first
    model's per-series volumes (`split`, `prompt`, volumes); `figures`: caption -> location."""
    first = next(iter(summaries))
    test_series = series[(series["split"] == "test") & (series["prompt"] == "detector")]
    notes = test_series["volume_note"].astype(object)  # all-NaN reads as float: no "" fill
    test_series = test_series.assign(volume_note=notes.fillna(""))
    lines = [
        "# Tumour segmentation: DB-SAM against SAM with only its decoder trained",
        "",
        "Each tumour slice is prompted with one box per tumour region: the **oracle** box around"
        " the true mask, or each **detector** box of confidence >= the threshold (the clinical"
        " chain: detect, then segment). A tumour slice no detector box touches is scored with an"
        " empty prediction and counted as missed; a box without tumour inside is counted as"
        " spurious and its pixels count against its series' volume. The epoch of each model and"
        " the box threshold were chosen on validation slices only. Definitions: docs/metrics.md.",
        "",
        "## Models",
        "",
        *_table(
            ["model", "trainable parameters", "frozen parameters"],
            [[m, f"{c['trainable']:,}", f"{c['frozen']:,}"] for m, c in parameter_counts.items()],
        ),
        "",
        f"- **Detector box threshold = {box_threshold:.3g}**: boxes of at least this confidence"
        " prompt the segmenters; chosen by F1 of boxes on validation slices.",
        *(f"- **{key}**: {value}" for key, value in params.items()),
        "",
        "## Test",
        "",
        *_comparison(summaries, "test"),
        "",
        "## Validation",
        "",
        *_comparison(summaries, "val"),
        "",
        "Intervals: percentile bootstrap over patients, not informative with fewer than 5 tumour"
        " patients or when every resample gives the same value.",
        "",
        f"## Tumour volumes of test series ({first}, detector boxes)",
        "",
        *_table(
            ["patient", "series", "true mL", "predicted mL", "volume Dice", "note"],
            [
                [
                    r.patient_id[:8],
                    r.series_id[:8],
                    r.true_ml,
                    r.pred_ml,
                    r.volume_dice,
                    r.volume_note,
                ]
                for r in test_series.itertuples(index=False)
            ],
        ),
        "",
        "## Figures",
        "",
        *(f"![{caption}]({location})\n" for caption, location in figures.items()),
    ]
    return "\n".join(lines) + "\n"
