"""Wiring of the segmentation pipeline: shared inputs, one namespace per model, one report.

`detector` hands its boxes on under plain names (a dotted dataset is read only inside its own
namespace); `segmentation` picks the slices and the detector's box threshold (on validation);
`dbsam` and `sam_decoder` each train, predict masks with oracle and detector boxes, score them,
log their metrics and write label volumes; `segmentation_report` sets both models side by side.
What the report reads of a model namespace keeps a plain name (`dbsam_seg_summary`), as the
distillation pipeline does.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from medvit.pipelines.segmentation import nodes

PARAMS = "params:segmentation"
SHARED = {"segmentation_slices", "slice_store", "segmentation_box_threshold"}
DETECTOR_BOXES = {"detector_val_boxes", "detector_test_boxes"}
# What the report reads of each model's stage.
REPORTED = ("segmenter", "predicted_masks", "seg_summary", "seg_series")


def _for_model(func, model: str):
    """Bind the model name, which a namespaced node cannot see; keeps the name and type hints."""
    return update_wrapper(partial(func, model=model), func)


def _detector_boxes() -> Pipeline:
    """In the detector's namespace, which owns its predictions: their boxes, for prompting."""
    return Pipeline(
        [
            node(
                nodes.detector_boxes,
                ["val_predictions", "test_predictions"],
                ["val_boxes", "test_boxes"],
                name="boxes_for_segmentation",
            )
        ],
        namespace="detector",
        outputs={"val_boxes": "detector_val_boxes", "test_boxes": "detector_test_boxes"},
    )


def _shared() -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.segmentation_slices,
                ["slices", "splits"],
                "segmentation_slices",
                name="segmentation_slices",
            ),
            node(
                nodes.box_threshold,
                ["segmentation_slices", "detector_val_boxes", "slice_store"],
                "segmentation_box_threshold",
                name="box_threshold",
            ),
        ],
        namespace="segmentation",
        inputs={"slices", "splits", "slice_store", "detector_val_boxes"},
        outputs={"segmentation_slices", "segmentation_box_threshold"},
    )


def _model_stage(model: str) -> Pipeline:
    stage = Pipeline(
        [
            node(
                _for_model(nodes.train, model),
                ["segmentation_slices", "slice_store", PARAMS],
                "segmenter",
                name="train",
            ),
            node(
                _for_model(nodes.log_parameter_counts, model),
                "segmenter",
                None,
                name="log_parameter_counts",
            ),
            node(
                nodes.predict_masks,
                [
                    "segmenter",
                    "segmentation_slices",
                    "slice_store",
                    "detector_val_boxes",
                    "detector_test_boxes",
                    "segmentation_box_threshold",
                    PARAMS,
                ],
                "predicted_masks",
                name="predict_masks",
            ),
            node(
                _for_model(nodes.evaluate, model),
                ["predicted_masks", "segmentation_slices", "slice_store", PARAMS],
                ["seg_slice_scores", "seg_series", "seg_summary", "seg_metrics"],
                name="evaluate",
            ),
            node(
                nodes.label_volumes,
                ["predicted_masks", "segmentation_slices", "slice_store", PARAMS],
                "label_volumes",
                name="label_volumes",
            ),
        ]
    )
    return Pipeline(
        stage,
        namespace=model,
        inputs={*SHARED, *DETECTOR_BOXES},
        outputs={name: f"{model}_{name}" for name in REPORTED},
        parameters={PARAMS},
    )


def _report() -> Pipeline:
    inputs = [
        "dbsam_seg_summary",
        "sam_decoder_seg_summary",
        "dbsam_seg_series",
        "dbsam_predicted_masks",
        "sam_decoder_predicted_masks",
        "dbsam_segmenter",
        "sam_decoder_segmenter",
        "segmentation_slices",
        "slice_store",
        "segmentation_box_threshold",
        PARAMS,
    ]
    return Pipeline(
        [
            node(
                nodes.report,
                inputs,
                [
                    "segmentation_report",
                    "segmentation_report_html",
                    "dbsam_contours",
                    "sam_decoder_contours",
                ],
                name="write_report",
            )
        ],
        namespace="segmentation_report",
        inputs=set(inputs) - {PARAMS},
        outputs={
            "segmentation_report",
            "segmentation_report_html",
            "dbsam_contours",
            "sam_decoder_contours",
        },
        parameters={PARAMS},
    )


def create_pipeline(**kwargs) -> Pipeline:
    stages = [_model_stage(model) for model in nodes.MODELS]
    return Pipeline(
        _detector_boxes() + _shared() + sum(stages, Pipeline([])) + _report(),
        tags="segmentation",
    )
