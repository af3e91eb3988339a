"""Composition and wiring of the chest X-ray study (Kedro loads only this package, so it is one).

Namespaces: `chest` (data preparation, MAE pretraining, and the radiographs both classifiers
learn from, handed on under plain names as Kedro's dotted-name check expects of what other
namespaces read), `vit_mae` and `vit_scratch` (one classifier each: train, predict val/test,
evaluate with the multi-label template) and `comparison`.
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from medvit.pipelines.chest_xray import nodes
from medvit.pipelines.data_preparation.pipeline import data_preparation_pipeline
from medvit.pipelines.evaluation.multilabel_pipeline import multilabel_evaluation_pipeline
from medvit.pipelines.mae import mae_pretraining_pipeline

COHORT = "chest"
DATA = "params:chest_finetune"
TRAINING_INPUTS = ["chest_labelled_slices", "chest_findings", "chest_images"]
MODELS = ("vit_mae", "vit_scratch")


def _labelled_slices() -> Pipeline:
    return Pipeline(
        [
            node(
                nodes.labelled_slices,
                ["slices", "splits", "slice_store"],
                ["chest_labelled_slices", "chest_findings", "chest_images"],
                name="labelled_slices",
            )
        ],
        namespace=COHORT,
        outputs={"chest_labelled_slices", "chest_findings", "chest_images"},
    )


def _classifier(model: str) -> Pipeline:
    """Train `model` (from the chest MAE when it is `vit_mae`), predict val/test, evaluate."""
    train = update_wrapper(partial(nodes.train_classifier, name=model), nodes.train_classifier)
    mae = ["chest_mae_model"] if model == "vit_mae" else []
    stage = Pipeline(
        [
            node(
                train,
                [*TRAINING_INPUTS, DATA, f"params:{model}", *mae],
                "model",
                name="train",
            ),
            node(
                nodes.predict_findings,
                ["model", "chest_labelled_slices", "chest_images", DATA],
                ["val_predictions", "test_predictions"],
                name="predict_findings",
            ),
        ]
    )
    namespaced = Pipeline(
        stage,
        namespace=model,
        inputs={*TRAINING_INPUTS, *mae},
        outputs={"model": f"{model}_model"},
        parameters={DATA, f"params:{model}"},
    )
    return Pipeline(
        namespaced + multilabel_evaluation_pipeline(model),
        outputs={f"{model}.multilabel_metric_table": f"{model}_multilabel_metric_table"},
    )


def _comparison() -> Pipeline:
    inputs = [f"{model}_multilabel_metric_table" for model in MODELS]
    return Pipeline(
        [
            node(
                nodes.compare_models,
                [*inputs, *(f"params:{model}" for model in MODELS)],
                ["chest_xray_report", "chest_xray_report_html", "chest_xray_metrics"],
                name="mae_vs_scratch",
            )
        ],
        namespace="comparison",
        inputs=set(inputs),
        outputs={"chest_xray_report", "chest_xray_report_html", "chest_xray_metrics"},
        parameters={f"params:{model}" for model in MODELS},
    )


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        data_preparation_pipeline(namespace=COHORT, labels="findings")
        + mae_pretraining_pipeline(COHORT, params="params:chest_mae")
        + _labelled_slices()
        + Pipeline([_classifier(model) for model in MODELS])
        + _comparison(),
        tags="chest_xray",
    )
