"""Wiring of the detection pipeline; the evaluation template is reused as namespace `detector`."""

from kedro.pipeline import Pipeline, node

from medvit.pipelines.detection import nodes
from medvit.pipelines.evaluation import evaluation_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    detection = Pipeline(
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
                ["detector.weights", "detector.fit_history"],
                name="train_detector",
            ),
            node(
                nodes.log_model,
                ["detector.weights", "params:detection"],
                None,
                name="log_detector_model",
            ),
            node(
                nodes.box_metrics,
                ["detector.weights", "yolo_dataset", "params:detection"],
                "detector.box_metrics",
                name="detector_box_metrics",
            ),
            node(
                nodes.predict,
                ["detector.weights", "slices", "splits", "slice_store", "params:detection"],
                ["detector.val_predictions", "detector.test_predictions"],
                name="predict_detector_slices",
            ),
        ],
        tags="detection",
    )
    return detection + evaluation_pipeline(nodes.MODEL)
