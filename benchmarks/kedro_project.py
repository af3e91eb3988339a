"""A copy of the project for a benchmark's Kedro runs: its own data/ and MLflow store, so a
benchmark neither reads nor overwrites the checkout's outputs, and the runs' figures read back
from MLflow."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
Runs = list[tuple[dict[str, str], dict[str, float]]]
Step = tuple[str, str, str | None]  # (what it is, pipeline, --params or None)


def project_copy(workdir: Path) -> Path:
    """conf (without conf/local) and pyproject.toml under `workdir/project`, made once."""
    project = workdir.resolve() / "project"
    if not project.exists():
        shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
        (project / "conf" / "local").mkdir()
        (project / "src").mkdir()
        (project / "notebooks").mkdir()
        shutil.copy(ROOT / "pyproject.toml", project)
    return project


def run_environment(project: Path, data_root: Path) -> dict[str, str]:
    """The process environment of the copy's runs: its MLflow store, the data root."""
    return {
        **os.environ,
        "MEDVIT_DATA_ROOT": str(data_root.resolve()),
        "MLFLOW_TRACKING_URI": store(project),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }


def store(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


def kedro_run(
    project: Path, env: dict[str, str], conf_env: str, pipeline: str, *args: str
) -> float:
    """Minutes a `kedro run` takes; its log goes to a file in the project folder."""
    start = time.perf_counter()
    log = project / f"kedro_{int(time.time())}_{pipeline}.log"
    command = [sys.executable, "-m", "kedro", "run", f"--env={conf_env}"]
    with log.open("w") as handle:
        subprocess.run(
            [*command, f"--pipelines={pipeline}", *args],
            cwd=project,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return (time.perf_counter() - start) / 60


def kedro_runs(project: Path) -> Runs:
    """(params, metrics) of every Kedro run (not the models' child runs), newest first."""
    client = MlflowClient(store(project))
    experiment = client.get_experiment_by_name("medvit")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
    return [
        (run.data.params, run.data.metrics)
        for run in runs
        if "mlflow.parentRunId" not in run.data.tags
    ]


def latest(runs: Runs, metric: str, **params: str) -> dict[str, float]:
    """Metrics of the newest run that logged `metric` under these parameter values."""
    for logged, metrics in runs:
        if metric in metrics and all(logged.get(k) == v for k, v in params.items()):
            return metrics
    return {}


def cell(metrics: dict[str, float], name: str) -> str:
    """A metric with its interval, `n/a` when the run did not log it (or logged NaN)."""
    value = metrics.get(name)
    if value is None or value != value:
        return "n/a"
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    if low is None or high is None or low != low or high != high:
        return f"{value:.3f}"
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def benchmark(
    description: str,
    workdir: Path,
    conf_env: str,
    steps: Sequence[Step],
    report: Callable[[Path], str],
) -> None:
    """Command line of a real-data benchmark: run `steps` in turn in the project copy, timed,
    then print `report(project)` (`--report-only`: the report of an earlier call's runs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", type=Path, default=workdir)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    project = project_copy(args.workdir)
    env = run_environment(project, args.data_root)
    if not args.report_only:
        for label, pipeline, params in steps:
            extra = [f"--params={params}"] if params else []
            minutes = kedro_run(project, env, conf_env, pipeline, *extra)
            print(f"{label}: {minutes:.1f} min", flush=True)
    print(report(project))
