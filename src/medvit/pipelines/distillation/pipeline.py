"""Wiring of the distillation pipeline, in three namespaces.

`distillation` draws the training slices both models learn from; `teacher` and `student` each
train, predict val/test slices, log and evaluate their model, and `student` ends with the
comparison against its teacher. A dotted name (`teacher.ptp_report`) belongs to the one namespace
that writes and reads it; what another namespace reads keeps a plain name (`teacher_model`,
`teacher_ptp_metric_table`), as Kedro's dotted-name check and kedro-viz's collapsed namespaces
expect.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline, node

from medvit.pipelines.distillation import nodes
from medvit.pipelines.evaluation import evaluation_pipeline

DATA = "params:distillation_data"
TRAINING_INPUTS = ["distillation_slices", "distillation_classes", "slice_store"]
# What the comparison reads of the teacher's evaluation, under the names it has outside `teacher`.
TEACHER_TABLES = {
    f"teacher.{table}": f"teacher_{table}" for table in ("ptp_metric_table", "slice_metric_table")
}


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


def _model_stage(model: str, stage: list[Node], inputs: set[str], outputs: set[str]) -> Pipeline:
    """`stage` (training, and for the student the comparison), then predicting val/test slices
    with `<model>_model`, logging it to MLflow and evaluating it: all in namespace `model`.
    `inputs` and `outputs` are what the stage shares with other namespaces besides the
    training slices."""
    log = update_wrapper(partial(nodes.log_model, name=model), nodes.log_model)
    predicted = Pipeline(
        [
            *stage,
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
        predicted,
        namespace=model,
        inputs={*TRAINING_INPUTS, *inputs},
        outputs={"model": f"{model}_model", **{name: name for name in outputs}},
        parameters={DATA, f"params:{model}"},
    )
    return namespaced + evaluation_pipeline(model)


def _teacher() -> Pipeline:
    train = node(
        nodes.train_teacher,
        [*TRAINING_INPUTS, DATA, "params:teacher"],
        "model",
        name="train",
    )
    return Pipeline(_model_stage("teacher", [train], set(), set()), outputs=TEACHER_TABLES)


def _student() -> Pipeline:
    train = node(
        nodes.train_student,
        [*TRAINING_INPUTS, "teacher_model", DATA, "params:student"],
        "model",
        name="train",
    )
    compare = node(
        nodes.compare_models,
        [
            "teacher_model",
            "model",
            TEACHER_TABLES["teacher.ptp_metric_table"],
            "ptp_metric_table",
            TEACHER_TABLES["teacher.slice_metric_table"],
            "slice_metric_table",
        ],
        ["distillation_report", "distillation_metrics"],
        name="compare_with_teacher",
    )
    return _model_stage(
        "student",
        [train, compare],
        {"teacher_model", *TEACHER_TABLES.values()},
        {"distillation_report", "distillation_metrics"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(_training_slices() + _teacher() + _student(), tags="distillation")
