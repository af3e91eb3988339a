"""Project settings: our hooks, the config loader, and environment variables in any config file."""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from medvit.hooks import FlatParamsMlflowHook, RunSummaryHook, RunTagsHook

# pluggy calls the hooks registered last first: the MLflow hook opens the run before ours tag it,
# and ends it before the summary is written to it.
HOOKS = (RunTagsHook(), RunSummaryHook(), FlatParamsMlflowHook())
# kedro-mlflow's own instance would open a second run and log typed parameters as one string;
# ours replaces it. Kedro matches the distribution name as its metadata spells it.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

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
