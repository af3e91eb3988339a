"""Figures are real matplotlib Figures; the report names every metric and links every figure."""

from __future__ import annotations

import base64
import io

import pandas as pd
import pytest
from matplotlib.figure import Figure

from medvit.evaluation.plots import confusion_matrix_figure, roc_figure, score_strip_figure
from medvit.evaluation.ptp import AggregationRule, patient_metrics, patient_table
from medvit.evaluation.report import Threshold, png_data_uri, render_html, render_report

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


def test_figure_titles_name_model_and_split(patients):
    subject = "detector, test patients"
    for figure in (
        confusion_matrix_figure(patients, subject),
        roc_figure(patients, subject),
        score_strip_figure(patients, 0.41234, subject),
    ):
        assert figure.axes[0].get_title().startswith(subject)
    strip = score_strip_figure(patients, 0.41234, subject).axes[0].get_legend()
    assert "Threshold 0.412" in [text.get_text() for text in strip.get_texts()]


def test_report_explains_prevalence_thresholds_synonyms_and_shows_validation(cohort, patients):
    slices, labels = cohort
    metrics = pd.concat(
        [
            patient_metrics(slices, labels, RULE, 0.5, n_bootstrap=0).assign(split="test"),
            patient_metrics(slices.iloc[1:], labels, RULE, 0.5, n_bootstrap=0).assign(split="val"),
        ]
    )
    threshold = Threshold(
        "Patient threshold", 0.123456, "a patient is called tumour at a score of", "Youden's J"
    )
    page = render_report("detector", "test", metrics, patients, {}, {}, [threshold])
    assert "4 test patients, 2 with a tumour: a prevalence of 50%" in page
    assert "4 validation patients, 2 with a tumour: a prevalence of 50%" in page
    assert (
        "- **Patient threshold = 0.123**: a patient is called tumour at a score of 0.123;"
        " chosen by Youden's J." in page
    )
    header = "| metric | test value | test 95% CI | validation value | validation 95% CI |"
    assert header in page
    sensitivity = next(line for line in page.splitlines() if line.startswith("| sensitivity |"))
    assert sensitivity.startswith("| sensitivity | 0.500 | 0.013 to 0.987 (clopper-pearson) |")
    assert sensitivity.endswith("| tumour recall, true positive rate |")


def test_html_report_renders_tables_and_inline_figures_and_escapes_cells(patients, cohort):
    metrics = patient_metrics(*cohort, RULE, 0.5, n_bootstrap=0)
    png = rendered(roc_figure(patients))
    figures = {"ROC": png_data_uri(png)}
    hostile = patients.assign(patient_id=patients["patient_id"].where(lambda p: p != "a", "<b>a"))
    page = render_html(render_report("vit", "test", metrics, hostile, figures, {}), "vit on test")
    assert page.startswith("<!DOCTYPE html>") and "<title>vit on test</title>" in page
    assert "<table>" in page and "<td>sensitivity</td>" in page
    source = page.split('<img src="')[1].split('"')[0]
    assert base64.b64decode(source.removeprefix("data:image/png;base64,")) == png
    assert "<b>a" not in page and "&lt;b&gt;a" in page
