"""Wiring of the distillation pipeline, in four namespaces.

`distillation` draws the training slices both models learn from; `teacher` and `student` each
train, predict val/test slices, log and evaluate their model; `comparison` sets the two side by
side. A dotted name (`teacher.ptp_report`) belongs to the one namespace that writes and reads it;
what another namespace reads keeps a plain name (`teacher_model`, `teacher_ptp_metric_table`), as
Kedro's dotted-name check and kedro-viz's collapsed namespaces expect.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline, node

from medvit.pipelines.distillation import nodes
from medvit.pipelines.evaluation import evaluation_pipeline

DATA = "params:distillation_data"
TRAINING_INPUTS = ["distillation_slices", "distillation_classes", "slice_store"]
# What the comparison reads of each model's evaluation.
COMPARED_TABLES = ("ptp_metric_table", "slice_metric_table")


def _training_slices() -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.training_slices,
                ["slices", "splits", DATA],
                ["distillation_slices", "distillation_classes"],
                name="training_slices",
            )
        ],
        namespace="distillation",
        inputs={"slices", "splits"},
        outputs={"distillation_slices", "distillation_classes"},
        parameters={DATA},
    )


def _model_stage(model: str, train: Node, inputs: set[str]) -> Pipeline:
    """`train` (which writes `model`), then predicting val/test slices with it, logging it to
    MLflow and evaluating it, in namespace `model`; `inputs` are what `train` reads of other
    namespaces besides the training slices."""
    log = update_wrapper(partial(nodes.log_model, name=model), nodes.log_model)
    stage = Pipeline(
        [
            train,
            node(
                nodes.predict_slices,
                ["model", "distillation_slices", "slice_store", DATA],
                ["val_predictions", "test_predictions"],
                name="predict_slices",
            ),
            node(log, "model", None, name="log_model"),
        ]
    )
    namespaced = Pipeline(
        stage,
        namespace=model,
        inputs={*TRAINING_INPUTS, *inputs},
        outputs={"model": f"{model}_model"},
        parameters={DATA, f"params:{model}"},
    )
    return Pipeline(
        namespaced + evaluation_pipeline(model),
        outputs={f"{model}.{table}": f"{model}_{table}" for table in COMPARED_TABLES},
    )


def _comparison() -> Pipeline:
    inputs = [
        "teacher_model",
        "student_model",
        "teacher_ptp_metric_table",
        "student_ptp_metric_table",
        "teacher_slice_metric_table",
        "student_slice_metric_table",
    ]
    return Pipeline(
        [
            node(
                nodes.compare_models,
                inputs,
                ["distillation_report", "distillation_metrics"],
                name="teacher_vs_student",
            )
        ],
        namespace="comparison",
        inputs=set(inputs),
        outputs={"distillation_report", "distillation_metrics"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    teacher = node(
        nodes.train_teacher, [*TRAINING_INPUTS, DATA, "params:teacher"], "model", name="train"
    )
    student = node(
        nodes.train_student,
        [*TRAINING_INPUTS, "teacher_model", DATA, "params:student"],
        "model",
        name="train",
    )
    return Pipeline(
        _training_slices()
        + _model_stage("teacher", teacher, set())
        + _model_stage("student", student, {"teacher_model"})
        + _comparison(),
        tags="distillation",
    )
