"""Wiring of the distillation pipeline: teacher, student, predictions, evaluation, comparison."""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from medvit.pipelines.distillation import nodes
from medvit.pipelines.evaluation import evaluation_pipeline

MODELS = ("teacher", "student")


def _model_stage(model: str) -> Pipeline:
    """Predict val/test slices with `<model>_model`, log it to MLflow, evaluate: one namespace."""
    log = update_wrapper(partial(nodes.log_model, name=model), nodes.log_model)
    stage = Pipeline(
        [
            node(
                nodes.predict_slices,
                ["model", "distillation_slices", "slice_store", "params:distillation_data"],
                ["val_predictions", "test_predictions"],
                name="predict_slices",
            ),
            node(log, "model", None, name="log_model"),
        ]
    )
    namespaced = Pipeline(
        stage,
        namespace=model,
        inputs={
            "model": f"{model}_model",
            "distillation_slices": "distillation_slices",
            "slice_store": "slice_store",
        },
        parameters={"params:distillation_data"},
    )
    return namespaced + evaluation_pipeline(model)


def create_pipeline(**kwargs) -> Pipeline:
    training = Pipeline(
        [
            node(
                nodes.training_slices,
                ["slices", "splits", "params:distillation_data"],
                ["distillation_slices", "distillation_classes"],
                name="distillation_slices",
            ),
            node(
                nodes.train_teacher,
                [
                    "distillation_slices",
                    "distillation_classes",
                    "slice_store",
                    "params:distillation_data",
                    "params:teacher",
                ],
                "teacher_model",
                name="train_teacher",
            ),
            node(
                nodes.train_student,
                [
                    "distillation_slices",
                    "distillation_classes",
                    "slice_store",
                    "teacher_model",
                    "params:distillation_data",
                    "params:student",
                ],
                "student_model",
                name="train_student",
            ),
            node(
                nodes.compare_models,
                [
                    "teacher_model",
                    "student_model",
                    "teacher.ptp_metric_table",
                    "student.ptp_metric_table",
                    "teacher.slice_metric_table",
                    "student.slice_metric_table",
                ],
                ["distillation_report", "distillation_metrics"],
                name="compare_teacher_student",
            ),
        ]
    )
    stages = sum((_model_stage(model) for model in MODELS), Pipeline([]))
    return Pipeline(training + stages, tags="distillation")
