"""Figures are real matplotlib Figures; the report names every metric and links every figure."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from matplotlib.figure import Figure

from medvit.evaluation.plots import confusion_matrix_figure, roc_figure, score_strip_figure
from medvit.evaluation.ptp import AggregationRule, patient_metrics, patient_table
from medvit.evaluation.report import render_report

RULE = AggregationRule("max")


@pytest.fixture
def cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    # Patient a has a T1 and a T2 series, both numbered from 0; the others one series each.
    slices = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "c", "d"],
            "study_id": ["S-a", "S-a", "S-b", "S-c", "S-d"],
            "series_id": ["R-a1", "R-a2", "R-b", "R-c", "R-d"],
            "slice_index": [0, 0, 0, 0, 0],
            "score": [0.2, 0.9, 0.7, 0.3, 0.1],
        }
    )
    labels = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "tumor": [1, 0, 1, 0]})
    return slices, labels


@pytest.fixture
def patients(cohort) -> pd.DataFrame:
    return patient_table(*cohort, RULE, 0.5)


def rendered(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "draw",
    [
        confusion_matrix_figure,
        roc_figure,
        lambda table: score_strip_figure(table, 0.5),
    ],
)
def test_figures_have_axes_and_render(draw, patients):
    figure = draw(patients)
    assert isinstance(figure, Figure)
    assert figure.axes
    assert rendered(figure).startswith(b"\x89PNG")


def test_roc_legend_shows_auroc(patients):
    legend = roc_figure(patients).axes[0].get_legend()
    assert any("AUROC 0.750" in text.get_text() for text in legend.get_texts())


def test_one_class_roc_is_a_note_not_a_curve(patients):
    figure = roc_figure(patients[patients["tumor"] == 0])
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert any("only normal" in text for text in texts)
    rendered(figure)


def test_confusion_matrix_prints_counts(patients):
    texts = sorted(text.get_text() for text in confusion_matrix_figure(patients).axes[0].texts)
    assert texts == ["1", "1", "1", "1"]


def test_report_has_metrics_patients_and_figure_links(cohort, patients):
    metrics = patient_metrics(*cohort, RULE, 0.5, n_bootstrap=20)
    figures = {"Confusion matrix": "confusion.png", "ROC": "roc.png", "Scores": "scores.png"}
    params = {"rule": RULE.name, "threshold": 0.5, "target_prevalence": 0.1}
    page = render_report("vit_small", "test", metrics, patients, figures, params)
    assert page.startswith("# Patient-to-patient evaluation: vit_small on test")
    for name in metrics["metric"]:
        assert name in page
    for caption, file_name in figures.items():
        assert f"![{caption}]({file_name})" in page
    assert "95% CI" in page
    assert "target_prevalence" in page
    for patient_id in patients["patient_id"]:
        assert f"| {patient_id} |" in page
    assert "| FN |" in page
    assert "undefined" not in page.split("## Patients")[1]


def test_study_level_report_lists_studies(cohort):
    slices, labels = cohort
    follow_up = slices.iloc[[0]].assign(study_id="S-a2", series_id="R-a3", score=0.05)
    slices = pd.concat([slices, follow_up], ignore_index=True)
    studies = patient_table(slices, labels, RULE, 0.5, by="study")
    metrics = patient_metrics(slices, labels, RULE, 0.5, n_bootstrap=0, by="study")
    page = render_report("vit_small", "test", metrics, studies, {}, {"aggregate_by": "study"})
    listed = page.split("## Studies")[1]
    assert "| patient_id | study_id | tumor |" in listed
    assert "| a | S-a | 1 | 0.900 | 1 | TP |" in listed
    assert "| a | S-a2 | 1 | 0.050 | 0 | FN |" in listed
    assert "n_patients = 4, n_studies = 5" in page
