"""Wiring of the evaluation pipeline: one template, namespaced per model.

A model stage composes `evaluation_pipeline("detector")` into its own pipeline; its inputs are
`detector.val_predictions` and `detector.test_predictions`, and every output is `detector.*`, which
the catalog's `{model}.*` factories persist, so a new model needs no new catalog entry.
"""

from collections.abc import Callable
from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from medvit.pipelines.evaluation import nodes

# The name the un-namespaced template logs under; only `evaluation_pipeline(model)` is run.
TEMPLATE_MODEL = "model"


def _for_model(func: Callable, model: str) -> Callable:
    """Bind the model name, which a namespaced node cannot see.

    `update_wrapper` keeps the function's name and type hints on the partial, so Kedro still
    finds the typed `params:evaluation` input to validate, and names the node after the function.
    """
    return update_wrapper(partial(func, model=model), func)


def _template(model: str) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.choose_thresholds,
                ["val_predictions", "splits", "params:evaluation"],
                "thresholds",
                name="choose_thresholds",
            ),
            node(
                nodes.evaluate,
                [
                    "val_predictions",
                    "test_predictions",
                    "splits",
                    "thresholds",
                    "params:evaluation",
                ],
                [
                    "ptp_patients",
                    "ptp_metric_table",
                    "slice_metric_table",
                    "by_source_metric_table",
                ],
                name="evaluate",
            ),
            node(
                _for_model(nodes.mlflow_metrics, model),
                ["ptp_metric_table", "slice_metric_table", "by_source_metric_table"],
                "evaluation_metrics",
                name="name_metrics",
            ),
            node(
                _for_model(nodes.run_params, model),
                ["thresholds", "params:evaluation"],
                "evaluation_params",
                name="name_params",
            ),
            node(nodes.log_params, "evaluation_params", None, name="log_params"),
            node(
                _for_model(nodes.report, model),
                [
                    "ptp_patients",
                    "ptp_metric_table",
                    "slice_metric_table",
                    "by_source_metric_table",
                    "shortcut_audit",
                    "test_predictions",
                    "thresholds",
                    "evaluation_params",
                    "params:evaluation",
                ],
                [
                    "ptp_report",
                    "ptp_report_html",
                    "ptp_confusion_matrix",
                    "ptp_roc",
                    "ptp_scores",
                ],
                name="write_report",
            ),
        ],
        tags="evaluation",
    )


def evaluation_pipeline(model: str) -> Pipeline:
    """The template for one model: `splits`, `shortcut_audit` (data preparation's) and
    `params:evaluation` are shared by all models."""
    return Pipeline(
        _template(model),
        namespace=model,
        inputs={"splits", "shortcut_audit"},
        parameters={"params:evaluation"},
        tags="evaluation",
    )


def create_pipeline(**kwargs) -> Pipeline:
    """The template as `find_pipelines` registers it, for kedro-viz and parameter validation."""
    return _template(TEMPLATE_MODEL)
