"""Wiring of the external validation pipeline.

Namespace `external` ingests the external cohort with the data preparation nodes, under the
training cohort's ingestion settings, and makes all of it the test split. Then, per model, the
namespace `external_<model>` scores it with the trained model (read from the catalog, never
written) and runs the evaluation template without its threshold choice: the thresholds are the
model's own `<model>.thresholds`, chosen on the original validation split, whose predictions
(`<model>.val_predictions`) are reported beside the external cohort. Metrics are therefore
`slice/external_<model>/test/...` and `ptp/external_<model>/test/...` (docs/metrics.md).
"""

from kedro.pipeline import Pipeline, node

from medvit.pipelines.data_preparation.pipeline import ingestion_nodes
from medvit.pipelines.evaluation import evaluation_pipeline
from medvit.pipelines.external_validation import nodes

COHORT = "external"
# model -> (prediction node, the catalog entry of the trained model, its parameters)
MODELS = {
    "detector": (nodes.predict_detector, "detector.weights", "params:detection"),
    "teacher": (nodes.predict_classifier, "teacher_model", "params:distillation_data"),
    "student": (nodes.predict_classifier, "student_model", "params:distillation_data"),
}


def _cohort() -> Pipeline:
    stage = Pipeline(
        [
            node(
                nodes.plan_external_cohort,
                ["params:external_validation", "params:ingestion"],
                ["demo_cohort", "ingestion"],
                name="plan_external_cohort",
            ),
            *ingestion_nodes("ingestion"),
            node(nodes.external_splits, "slices", "splits", name="external_splits"),
            node(
                nodes.evaluation_splits,
                ["training_splits", "splits"],
                "evaluation_splits",
                name="evaluation_splits",
            ),
        ]
    )
    return Pipeline(
        stage,
        namespace=COHORT,
        inputs={"pseudonym_key": "pseudonym_key", "training_splits": "splits"},
        parameters={"params:external_validation", "params:ingestion"},
        tags="external_cohort",
    )


def _model_stage(model: str) -> Pipeline:
    """Score the external cohort with `model`, then the evaluation template minus its threshold
    choice, reading the thresholds and validation predictions of the model's own evaluation."""
    predict, trained, params = MODELS[model]
    name = f"external_{model}"
    scoring = Pipeline(
        [
            node(
                predict,
                ["model", "slices", "splits", "slice_store", params],
                "test_predictions",
                name="predict_slices",
            )
        ],
        namespace=name,
        inputs={
            "model": trained,
            **{item: f"{COHORT}.{item}" for item in ("slices", "splits", "slice_store")},
        },
        parameters={params},
    )
    template = evaluation_pipeline(name)
    evaluation = Pipeline(
        template - template.only_nodes(f"{name}.choose_thresholds"),
        inputs={
            f"{name}.thresholds": f"{model}.thresholds",
            f"{name}.val_predictions": f"{model}.val_predictions",
            "splits": f"{COHORT}.evaluation_splits",
        },
        parameters={"params:evaluation"},
    )
    return Pipeline(scoring + evaluation, tags=name)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        _cohort() + sum((_model_stage(model) for model in MODELS), Pipeline([])),
        tags="external_validation",
    )
