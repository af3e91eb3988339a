"""Detector training through our node against the plain `yolo train` CLI, and export cost.

Both sides train on the same exported demo cohort with the same arguments (those the node gives
ultralytics, from conf/base/parameters_detection.yml), each in a fresh process, alternating. The
CLI runs with ultralytics' integrations off (its MLflow logging would otherwise be timed against
us). Images/s are counted over the whole call, which is the process's wall time less the time its
imports take alone (medvit's imports are Kedro's, paid once per run), and over ultralytics' own
training clock (results.csv).
Run: `uv run python benchmarks/detection.py [--epochs 3] [--repeats 2]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parents[1]
# Children start from this environment: importing ultralytics here sets OMP_NUM_THREADS and more.
CHILD_ENV = dict(os.environ)

OURS = r"""
import sys
from pathlib import Path
from medvit.detection.export import YoloDataset
from medvit.pipelines.detection.nodes import DetectionParams, train
train(YoloDataset(Path(sys.argv[2])), DetectionParams.model_validate_json(sys.argv[1]))
"""
# What each side imports before it can start: timed alone and taken off its wall time.
IMPORTS = {
    "medvit node": "import medvit.pipelines.detection.nodes",
    "yolo CLI": "import ultralytics.cfg",
}


def prepare(project: Path) -> None:
    """The default demo cohort through `data_preparation`, in a copy of the project."""
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    kedro = str(Path(sys.executable).with_name("kedro"))
    subprocess.run(
        [kedro, "run", "--pipelines=data_preparation"],
        cwd=project,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"},
    )


def export_times(project: Path) -> tuple[int, float, float]:
    """Seconds for a fresh export and for an unchanged re-export of every split slice."""
    from medvit.detection.export import plan_export, write_export
    from medvit.ingestion.store import open_store

    slices = pd.read_parquet(project / "data/03_primary/slices.parquet")
    splits = pd.read_parquet(project / "data/05_model_input/splits.parquet")
    plan = plan_export(slices, splits, open_store(project / "data/04_feature/slice_store").images)
    fresh = write_export(project / "yolo", plan)
    again = write_export(project / "yolo", plan)
    return len(plan.items), fresh.seconds, again.seconds


def _timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def _loop_seconds(save_dir: Path) -> float:
    return float(pd.read_csv(save_dir / "results.csv")["time"].iloc[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from medvit.pipelines.detection.nodes import DetectionParams

    config = yaml.safe_load((ROOT / "conf/base/parameters_detection.yml").read_text())
    params = DetectionParams.model_validate(config["detection"])
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        prepare(project)
        n_slices, fresh, again = export_times(project)
        print(f"cpus={os.cpu_count()}  export of {n_slices} slices ({params.train.imgsz} px PNG)")
        print(
            f"export: fresh {fresh / n_slices * 1000:.2f} s per 1,000 slices, "
            f"unchanged re-export {again / n_slices * 1000:.2f} s per 1,000 slices"
        )

        data = project / "yolo"
        n_train = len(list((data / "images" / "train").glob("*.png")))
        ours_dir, cli_dir = Path(tmp) / "ours", Path(tmp) / "cli"
        train = params.train.model_copy(update={"epochs": args.epochs, "workdir": str(ours_dir)})
        run_params = params.model_copy(update={"train": train})
        cli_args = {**train.ultralytics_args(), "project": tmp, "name": "cli", "exist_ok": True}
        env = {**CHILD_ENV, "YOLO_CONFIG_DIR": str(Path(tmp) / "yolo_config")}
        yolo = str(Path(sys.executable).with_name("yolo"))
        subprocess.run(
            [yolo, "settings", "mlflow=False", "sync=False"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cli = [yolo, "detect", "train", f"data={data / 'data.yaml'}", f"model={train.weights}"]
        cli += [f"{key}={value}" for key, value in cli_args.items()]
        ours = [sys.executable, "-c", OURS, run_params.model_dump_json(), str(data)]

        commands = {"yolo CLI": (cli, cli_dir), "medvit node": (ours, ours_dir)}
        imports = {name: [] for name in commands}
        walls: dict[str, list[float]] = {name: [] for name in commands}
        loops: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, (command, save_dir) in commands.items():
                imports[name].append(_timed([sys.executable, "-c", IMPORTS[name]], env))
                walls[name].append(_timed(command, env))
                loops[name].append(_loop_seconds(save_dir))
        images = n_train * args.epochs
        print(
            f"training: {n_train} train images x {args.epochs} epochs, imgsz {train.imgsz}, "
            f"batch {train.batch}, device {train.ultralytics_args()['device']}, "
            f"median of {args.repeats}"
        )
        calls = {}
        for name in commands:
            start = statistics.median(imports[name])
            calls[name] = statistics.median(walls[name]) - start
            loop = statistics.median(loops[name])
            print(
                f"  {name:12s} {images / calls[name]:6.1f} images/s whole call "
                f"({calls[name]:5.1f} s after {start:4.1f} s of imports), "
                f"{images / loop:6.1f} images/s training loop ({loop:5.1f} s)"
            )
        ratio = calls["yolo CLI"] / calls["medvit node"]
        loop_ratio = statistics.median(loops["yolo CLI"]) / statistics.median(loops["medvit node"])
        print(
            f"medvit / CLI throughput: {ratio:.3f}x whole call, {loop_ratio:.3f}x loop "
            f"(wrapper cost {100 * (1 / ratio - 1):+.1f}% / {100 * (1 / loop_ratio - 1):+.1f}%)"
        )


if __name__ == "__main__":
    main()
