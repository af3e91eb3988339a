"""Wiring of the MAE pretraining template, namespaced per cohort.

`mae_pretraining_pipeline("chest", params="params:chest_mae")` reads `chest.slices`,
`chest.slice_store` and `chest.splits` and writes `chest_mae_model` (data/06_models/chest_mae.pt;
a plain name, as other namespaces read it) and `chest.mae_report*`; the registered `mae`
pipeline runs it on the brain slice table (`slices`, ...) as namespace `brain`, whose checkpoint
(data/06_models/brain_mae.pt) the DeiT student can start from (`student.init: mae`).
"""

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from medvit.pipelines.mae import nodes

INPUTS = ("slices", "slice_store", "splits")
PARAMS = "params:mae"


def mae_pretraining_pipeline(
    namespace: str, inputs: dict[str, str] | None = None, params: str = PARAMS
) -> Pipeline:
    """`inputs` maps the template's `slices`, `slice_store`, `splits` to the cohort's datasets
    (default: the namespace's own, `<namespace>.slices` ...); `params` is its parameter block."""
    pretrain = update_wrapper(partial(nodes.pretrain_mae, name=namespace), nodes.pretrain_mae)
    report = update_wrapper(partial(nodes.mae_report, name=namespace), nodes.mae_report)
    return Pipeline(
        [
            node(pretrain, [*INPUTS, PARAMS], "mae_model", name="pretrain_mae"),
            node(
                report,
                ["mae_model", *INPUTS, PARAMS],
                ["mae_report", "mae_report_html", "mae_reconstruction"],
                name="mae_report",
            ),
        ],
        namespace=namespace,
        inputs=inputs,
        outputs={"mae_model": f"{namespace}_mae_model"},  # read by other namespaces
        parameters={PARAMS: params},
        tags="mae",
    )


def create_pipeline(**kwargs) -> Pipeline:
    return mae_pretraining_pipeline("brain", {name: name for name in INPUTS})
