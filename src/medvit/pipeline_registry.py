"""Project pipelines, discovered one folder each under medvit.pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DEFAULT = "brain_tumor"


def register_pipelines() -> dict[str, Pipeline]:
    """Kedro >= 1.5 loads only the requested pipeline's package, so the default may be absent."""
    pipelines = find_pipelines()
    if DEFAULT in pipelines:
        pipelines["__default__"] = pipelines[DEFAULT]
    return pipelines
