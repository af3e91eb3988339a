"""Wiring of the multi-label evaluation template, namespaced per model like the binary one.

`multilabel_evaluation_pipeline("vit_mae")` reads `vit_mae.val_predictions` and
`vit_mae.test_predictions` (one row per radiograph: `finding_<name>` truth and `score_<name>`
columns) and writes `vit_mae.multilabel_*`, which the catalog's `{model}.multilabel_*` factories
persist; `params:multilabel_evaluation` is shared by every model.
"""

from kedro.pipeline import Pipeline, node

from medvit.pipelines.evaluation import multilabel_nodes as nodes
from medvit.pipelines.evaluation.pipeline import _for_model

PARAMS = "params:multilabel_evaluation"


def multilabel_evaluation_pipeline(model: str) -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.choose_thresholds,
                ["val_predictions", PARAMS],
                "thresholds",
                name="choose_thresholds",
            ),
            node(
                nodes.evaluate,
                ["val_predictions", "test_predictions", "thresholds", PARAMS],
                "multilabel_metric_table",
                name="evaluate",
            ),
            node(
                _for_model(nodes.mlflow_metrics, model),
                "multilabel_metric_table",
                "multilabel_metrics",
                name="name_metrics",
            ),
            node(
                _for_model(nodes.report, model),
                ["multilabel_metric_table", PARAMS],
                ["multilabel_report", "multilabel_report_html"],
                name="write_report",
            ),
        ],
        namespace=model,
        parameters={PARAMS},
        tags="evaluation",
    )
