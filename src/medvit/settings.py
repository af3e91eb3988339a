"""Project settings: our hooks, the config loader, and environment variables in any config file."""

from functools import partial
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf
from omegaconf.resolvers import oc

from medvit.hooks import FlatParamsMlflowHook, RunDescriptionHook, RunTagsHook
from medvit.run_summary import RunSummaryHook

# pluggy calls the hooks registered last first: the MLflow hook opens the run before ours tag it
# or remember it, and ends it before the description is written to it by run id; the console
# summary (`trylast`) comes after everything else.
HOOKS = (RunTagsHook(), RunSummaryHook(), RunDescriptionHook(), FlatParamsMlflowHook())
# kedro-mlflow's own instance would open a second run and log typed parameters as one string;
# ours replaces it. Kedro matches the distribution name as its metadata spells it.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

SQLITE = "sqlite:///"


def project_uri(root: Path, uri: str) -> str:
    """A SQLite URI with a relative path, made absolute against the project root `root`.

    MLflow resolves `sqlite:///mlflow.db` against the working directory, so a notebook kernel
    started in notebooks/ would open (and create) notebooks/mlflow.db, not the project's store.
    Absolute paths and other URIs (a tracking server) are left as they are.
    """
    path = uri.removeprefix(SQLITE)
    if uri.startswith(SQLITE) and not Path(path).is_absolute():
        return SQLITE + (root / path).as_posix()
    return uri


class ProjectConfigLoader(OmegaConfigLoader):
    """OmegaConfigLoader with `${project_uri:<uri>}`, resolved against the folder of conf/.

    The resolver is registered again on every read, as Kedro does for `runtime_params`, so
    each project's configuration (tests open several) resolves against its own root.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        root = Path(self.conf_source).resolve().parent
        OmegaConf.register_resolver("project_uri", partial(project_uri, root), replace=True)
        return super().__getitem__(key)


CONFIG_LOADER_CLASS = ProjectConfigLoader
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
