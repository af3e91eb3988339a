"""Patient-level figures for the evaluation report.

Built on `matplotlib.figure.Figure` rather than pyplot so nothing depends on a GUI backend or global
figure state, and figures are garbage-collected like ordinary objects; saving is the caller's job.
Each takes a `subject` ("detector, test patients") that leads its title, because a figure is often
seen alone (an MLflow artifact, a slide) and must say which model and split it shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["confusion_matrix_figure", "contour_figure", "roc_figure", "score_strip_figure"]

CLASS_NAMES = ("Normal", "Tumour")
CLASS_COLOURS = ("tab:blue", "tab:red")
FIGSIZE = (4.0, 3.6)


def _title(subject: str, what: str) -> str:
    return f"{subject}\n{what}" if subject else what


def confusion_matrix_figure(
    patient_table: pd.DataFrame, subject: str = "", unit: str = "patient"
) -> Figure:
    """2x2 patient counts, truth in rows and call in columns, each count printed in its cell.

    `unit` names what a row is ("slice" where patient-level figures do not apply).
    """
    truth = patient_table["tumor"].to_numpy(dtype=int)
    decision = patient_table["decision"].to_numpy(dtype=int)
    counts = np.zeros((2, 2), dtype=int)
    np.add.at(counts, (truth, decision), 1)
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if count > counts.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axes.set_xticks([0, 1], labels=[f"Called {name.lower()}" for name in CLASS_NAMES])
    axes.set_yticks([0, 1], labels=[f"Truly {name.lower()}" for name in CLASS_NAMES])
    axes.set_title(_title(subject, f"{unit.capitalize()}s (n = {len(patient_table)})"))
    return figure


def roc_figure(patient_table: pd.DataFrame, subject: str = "", unit: str = "patient") -> Figure:
    """ROC of patient scores; with one class there is no curve, so say so instead of drawing one."""
    truth = patient_table["tumor"].to_numpy(dtype=int)
    score = patient_table["score"].to_numpy(dtype=float)
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="Chance")
    if truth.min() == truth.max():
        only = CLASS_NAMES[truth[0]].lower() if truth.size else "no"
        axes.text(0.5, 0.5, f"ROC undefined:\nonly {only} {unit}s", ha="center", va="center")
    else:
        false_positive_rate, true_positive_rate, _ = roc_curve(truth, score)
        auroc = roc_auc_score(truth, score)
        axes.plot(
            false_positive_rate,
            true_positive_rate,
            drawstyle="steps-post",
            label=f"AUROC {auroc:.3f}",
        )
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("1 - specificity")
    axes.set_ylabel("Sensitivity")
    axes.set_title(_title(subject, f"{unit.capitalize()}-level ROC"))
    axes.legend(loc="lower right", fontsize="small")
    return figure


def score_strip_figure(
    patient_table: pd.DataFrame, threshold: float, subject: str = "", unit: str = "patient"
) -> Figure:
    """One dot per patient by true class, so misses and false alarms are visible at a glance.

    The horizontal jitter is seeded, so the same table always draws the same picture.
    """
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, size=len(patient_table))
    truth = patient_table["tumor"].to_numpy(dtype=int)
    score = patient_table["score"].to_numpy(dtype=float)
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    for label, (name, colour) in enumerate(zip(CLASS_NAMES, CLASS_COLOURS, strict=True)):
        chosen = truth == label
        axes.scatter(
            label + jitter[chosen], score[chosen], color=colour, s=22, alpha=0.8, label=name
        )
    axes.axhline(
        threshold, color="black", linestyle="--", linewidth=1, label=f"Threshold {threshold:.3g}"
    )
    axes.set_xticks([0, 1], labels=[f"Truly {name.lower()}" for name in CLASS_NAMES])
    axes.set_xlim(-0.5, 1.5)
    axes.set_ylabel(f"{unit.capitalize()} score")
    axes.set_title(_title(subject, f"{unit.capitalize()} scores"))
    axes.legend(loc="best", fontsize="small")
    return figure


# Contours drawn per prompt source on the segmentation figure; truth is drawn in green.
PROMPT_STYLES = {"oracle": ("tab:blue", "--"), "detector": ("tab:red", "-")}


def contour_figure(
    panels: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str]], subject: str = ""
) -> Figure:
    """One panel per slice: the image with the true contour and each prompt source's predicted
    contour, so a reader sees where a Dice number comes from. `panels`: (image, true mask,
    {prompt: predicted mask}, caption)."""
    columns = min(max(len(panels), 1), 3)
    rows = max(1, -(-len(panels) // columns))
    figure = Figure(figsize=(3.0 * columns, 3.0 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, (image, truth, predicted, caption) in zip(grid.ravel(), panels, strict=False):
        axes.imshow(image, cmap="gray")
        if truth.any():
            axes.contour(truth, levels=[0.5], colors="tab:green", linewidths=1.2)
        for prompt, mask in predicted.items():
            colour, style = PROMPT_STYLES.get(prompt, ("tab:orange", ":"))
            if mask.any():
                axes.contour(mask, levels=[0.5], colors=colour, linestyles=style, linewidths=1.0)
        axes.set_title(caption, fontsize="small")
    lines = {"--": "dashed", "-": "solid", ":": "dotted"}
    legend = "green: truth; " + "; ".join(
        f"{colour.removeprefix('tab:')} {lines[style]}: from {prompt} boxes"
        for prompt, (colour, style) in PROMPT_STYLES.items()
    )
    figure.suptitle(_title(subject, legend), fontsize="small")
    if not panels:
        grid[0, 0].text(0.5, 0.5, "no tumour slice to show", ha="center", va="center")
    return figure
