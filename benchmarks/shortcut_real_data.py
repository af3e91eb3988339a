"""The real-data protocol of issue 10 (`conf/brain_mri_public`), timed, and its validation figures.

In a copy of the project (its own data/ and MLflow store), with the public brain MRI sets under
`--data-root` (../shared/data layout):
1. `data_preparation` with the preprocessing off: the shortcut audit before;
2. `brain_tumor` in the `brain_mri_public` environment: the audit after, then the detector, the
   teacher and the student, trained with the protocol's CPU settings.
Each step is timed; then Markdown tables are printed, of validation only (nothing is read on
test): within-Br35H (its tumour vs its no-tumour folder) AUROC, sensitivity and specificity at
the slice threshold chosen on validation, figshare fold-4 sensitivity at that threshold, and the
audit's trivial-feature AUROCs before and after the preprocessing (from the two MLflow runs).
Run: `MEDVIT_PSEUDONYM_KEY=<key> uv run python benchmarks/shortcut_real_data.py [--workdir DIR]`
(`--report-only` reads the runs of an earlier call in the same workdir).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
ENV = "brain_mri_public"
MODELS = ("detector", "teacher", "student")
BEFORE = "ingestion.preprocessing.crop_foreground=false,ingestion.preprocessing.intensity=window"
AUDIT_GROUPS = ("intensity", "size", "padding", "source", "all")


def _project(workdir: Path) -> Path:
    project = workdir / "project"
    if not project.exists():
        shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
        (project / "conf" / "local").mkdir()
        (project / "src").mkdir()
        (project / "notebooks").mkdir()
        shutil.copy(ROOT / "pyproject.toml", project)
    return project


def _kedro(project: Path, env: dict[str, str], *args: str) -> float:
    """Minutes a `kedro run` takes; its log goes to the project folder."""
    start = time.perf_counter()
    log = project / f"kedro_{int(time.time())}.log"
    with log.open("w") as handle:
        subprocess.run(
            [sys.executable, "-m", "kedro", "run", f"--env={ENV}", *args],
            cwd=project,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return (time.perf_counter() - start) / 60


def _runs(client: MlflowClient) -> list[tuple[dict[str, str], dict[str, float]]]:
    """(params, metrics) of every Kedro run (not the models' child runs), newest first."""
    experiment = client.get_experiment_by_name("medvit")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
    return [
        (run.data.params, run.data.metrics)
        for run in runs
        if "mlflow.parentRunId" not in run.data.tags
    ]


def _latest(runs: list[tuple[dict[str, str], dict[str, float]]], metric: str, **params: str):
    """Metrics of the newest run that logged `metric` under these parameter values."""
    for logged, metrics in runs:
        if metric in metrics and all(logged.get(k) == v for k, v in params.items()):
            return metrics
    return {}


def _cell(metrics: dict[str, float], name: str) -> str:
    value = metrics.get(name)
    if value is None or value != value:
        return "n/a"
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    if low is None or high is None or low != low or high != high:
        return f"{value:.3f}"
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def report(runs: list[tuple[dict[str, str], dict[str, float]]]) -> str:
    """Models from their newest runs (one `brain_tumor` run, or a run per stage); the audit from
    the newest data preparation with the preprocessing off and with it on."""
    lines = [
        "| model | within-Br35H AUROC | within-Br35H sensitivity | within-Br35H specificity "
        "| figshare fold-4 sensitivity | pooled val slice AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        within = f"slice/{model}/val/within"
        metrics = _latest(runs, f"slice/{model}/val/auroc")
        names = [
            f"{within}/br35h/auroc",
            f"{within}/br35h/sensitivity",
            f"{within}/br35h/specificity",
            f"{within}/figshare/sensitivity",
            f"slice/{model}/val/auroc",
        ]
        lines.append(f"| {model} | " + " | ".join(_cell(metrics, n) for n in names) + " |")
    key = "ingestion.preprocessing.intensity"
    before = _latest(runs, "audit/val/auroc/all", **{key: "window"})
    after = _latest(runs, "audit/val/auroc/all", **{key: "percentile"})
    lines += ["", "| audit: val AUROC of | before preprocessing | after |", "|---|---|---|"]
    for group in AUDIT_GROUPS:
        name = f"audit/val/auroc/{group}"
        lines.append(f"| {group} | {_cell(before, name)} | {_cell(after, name)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/medvit_shortcut_benchmark"))
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    project = _project(args.workdir.resolve())
    store = f"sqlite:///{project / 'mlflow.db'}"
    env = {
        **os.environ,
        "MEDVIT_DATA_ROOT": str(args.data_root.resolve()),
        "MLFLOW_TRACKING_URI": store,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    if not args.report_only:
        minutes = _kedro(project, env, "--pipelines=data_preparation", f"--params={BEFORE}")
        print(f"data_preparation, preprocessing off: {minutes:.1f} min")
        minutes = _kedro(project, env, "--pipelines=brain_tumor")
        print(f"brain_tumor, {ENV}: {minutes:.1f} min")
    print(report(_runs(MlflowClient(store))))


if __name__ == "__main__":
    main()
