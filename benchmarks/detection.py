"""Detector training through our node against the plain `yolo train` CLI, and export cost.

Both sides train on the same exported demo cohort with the same arguments (those the node gives
ultralytics, from conf/base/parameters_detection.yml), each in a fresh process, alternating. The
CLI is ultralytics' own entry point (`yolo detect train ...`, called in-process so that imports
are timed apart on both sides), with its integrations off: its MLflow logging would otherwise be
timed against us. Images/s are counted over the whole call (everything our node does around
ultralytics included) and over ultralytics' own training clock.
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
from pathlib import Path

import pandas as pd
import yaml

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parents[1]

# Each child prints the seconds its call took, after its imports.
OURS = """
import sys, time
from pathlib import Path
from medvit.detection.export import YoloDataset
from medvit.pipelines.detection.nodes import DetectionParams, train
params = DetectionParams.model_validate_json(sys.argv[1])
start = time.perf_counter()
train(YoloDataset(Path(sys.argv[2])), params)
print(time.perf_counter() - start)
"""
CLI = """
import sys, time
from ultralytics.cfg import entrypoint
sys.argv = ["yolo", *sys.argv[1:]]
start = time.perf_counter()
entrypoint()
print(time.perf_counter() - start)
"""


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
    done = subprocess.run(
        command, check=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    return float(done.stdout.strip().splitlines()[-1])


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
        env = {**os.environ, "YOLO_CONFIG_DIR": str(Path(tmp) / "yolo_config")}
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

        walls: dict[str, list[float]] = {"yolo CLI": [], "medvit node": []}
        loops: dict[str, list[float]] = {"yolo CLI": [], "medvit node": []}
        for _ in range(args.repeats):
            for name, command, save_dir in (
                ("yolo CLI", cli, cli_dir),
                ("medvit node", ours, ours_dir),
            ):
                walls[name].append(_timed(command, env))
                loops[name].append(_loop_seconds(save_dir))
        images = n_train * args.epochs
        print(
            f"training: {n_train} train images x {args.epochs} epochs, imgsz {train.imgsz}, "
            f"batch {train.batch}, device {train.ultralytics_args()['device']}, "
            f"median of {args.repeats}"
        )
        for name in walls:
            wall, loop = statistics.median(walls[name]), statistics.median(loops[name])
            print(
                f"  {name:12s} {images / wall:6.1f} images/s whole call ({wall:5.1f} s), "
                f"{images / loop:6.1f} images/s training loop ({loop:5.1f} s)"
            )
        ratio = statistics.median(walls["yolo CLI"]) / statistics.median(walls["medvit node"])
        loop_ratio = statistics.median(loops["yolo CLI"]) / statistics.median(loops["medvit node"])
        print(
            f"medvit / CLI throughput: {ratio:.3f}x whole call, {loop_ratio:.3f}x loop "
            f"(wrapper cost {100 * (1 / ratio - 1):+.1f}% / {100 * (1 / loop_ratio - 1):+.1f}%)"
        )


if __name__ == "__main__":
    main()
