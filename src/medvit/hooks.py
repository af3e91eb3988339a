"""Run-level MLflow tags that make any run traceable to code, configuration and cohort."""

from __future__ import annotations

import subprocess
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl

from medvit.splits import slice_table_fingerprint

SLICE_TABLE = "slices"
RUN_TAGS = "run_tags"  # a node output of {tag: value} for the run (e.g. patient_disjoint)


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


class RunTagsHook:
    """Tags each run with git commit, pipeline and Kedro env, and the slice table's fingerprint.

    Registered in settings.py, so it runs after kedro-mlflow's hook (a plugin, registered later and
    so called earlier by pluggy) has opened the run. The slice table is fingerprinted when saved,
    and when loaded only if the run has no fingerprint yet: every later load of a run reads what
    was saved or first loaded, and a 100k-row table takes about a second to hash.
    """

    def __init__(self) -> None:
        self._fingerprinted_run: str | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        mlflow.set_tags(
            {
                "git_commit": _git_commit(),
                "kedro_pipeline": ",".join(run_params.get("pipeline_names") or [])
                or run_params.get("pipeline_name")
                or "__default__",
                "kedro_env": run_params.get("env") or "local",
            }
        )

    def _tag_slices(self, dataset_name: str, data: Any, saved: bool) -> None:
        run = mlflow.active_run()
        if dataset_name != SLICE_TABLE or run is None:
            return
        if saved or run.info.run_id != self._fingerprinted_run:
            mlflow.set_tag("slice_table_fingerprint", slice_table_fingerprint(data))
            self._fingerprinted_run = run.info.run_id

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        self._tag_slices(dataset_name, data, saved=True)
        if dataset_name == RUN_TAGS and mlflow.active_run() is not None:
            mlflow.set_tags(data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        self._tag_slices(dataset_name, data, saved=False)
