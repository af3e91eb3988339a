"""Project settings: our hooks, the config loader, and environment variables in any config file."""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from medvit.hooks import RunTagsHook
from medvit.run_summary import RunSummaryHook

HOOKS = (RunTagsHook(), RunSummaryHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}` in mlflow.yml lets a cluster job point at
    # its tracking server without a conf/local file.
    "custom_resolvers": {"oc.env": oc.env},
    # conf/local or --env=gpu override only the keys they name (e.g. `detection.train.epochs`)
    # instead of replacing a whole top-level block.
    "merge_strategy": {"parameters": "soft"},
}
