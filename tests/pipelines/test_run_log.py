"""`kedro run` with its console in a file, as CI, nohup or a scheduler keep it: readable lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_logged_run_is_plain_lines_without_warnings_and_ends_with_its_summary(
    project: Path, tiny_local_conf: Path, latest_run
):
    log = project / "run.log"
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--pipelines", "data_preparation"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text  # no progress-bar frames
    assert "Warning" not in text  # no third-party deprecation blocks
    assert "Loading data from" not in text and "Saving data to" not in text
    # one record per line, never wrapped: a node's whole signature stays on its line
    assert any(
        line.endswith(
            "Running node: split_patients: split_patients([slices;params:splits]) -> "
            "[splits;split_metrics]"
        )
        for line in lines
    )
    progress = [line.split("medvit.console: ")[1] for line in lines if "medvit.console" in line]
    assert progress[-1].startswith("ingest: 100% (12/12, ") and len(progress) <= 11
    run = latest_run()
    summary = text[text.index("medvit.run_summary: Run summary") :].splitlines()
    assert summary[1] == f"MLflow run {run.info.run_id}; to open it:"
    assert summary[2].startswith("  uv run mlflow ui --backend-store-uri sqlite:///")
    assert summary[3].endswith(f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    assert len(summary) == 4  # no reports or PTP metrics here; and the last thing the run says
