"""Wiring of the detection pipeline: every node and dataset in the `detector` namespace.

The stage reads only the shared `slices`, `splits` and `slice_store`; the evaluation template is
reused under the same namespace, so a collapsed `detector` in kedro-viz hides the whole stage.
"""

from kedro.pipeline import Pipeline, node

from medvit.pipelines.detection import nodes
from medvit.pipelines.evaluation import evaluation_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    stage = Pipeline(
        [
            node(
                nodes.export_yolo_dataset,
                ["slices", "splits", "slice_store"],
                "yolo_dataset",
                name="export_yolo_dataset",
            ),
            node(
                nodes.train,
                ["yolo_dataset", "params:detection"],
                ["weights", "fit_history"],
                name="train",
            ),
            node(
                nodes.log_model,
                ["weights", "params:detection"],
                None,
                name="log_detector_model",
            ),
            node(
                nodes.box_metrics,
                ["weights", "yolo_dataset", "params:detection"],
                "box_metrics",
                name="box_metrics",
            ),
            node(
                nodes.predict,
                ["weights", "slices", "splits", "slice_store", "params:detection"],
                ["val_predictions", "test_predictions"],
                name="predict_slices",
            ),
        ]
    )
    namespaced = Pipeline(
        stage,
        namespace=nodes.MODEL,
        inputs={"slices", "splits", "slice_store"},
        parameters={"params:detection"},
    )
    return Pipeline(namespaced + evaluation_pipeline(nodes.MODEL), tags="detection")
