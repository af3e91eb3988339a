"""Ultralytics YOLO trained, validated and run as one stage of our own tracked run.

Ultralytics brings its own integrations: its MLflow callback sets an experiment, turns on autolog
and opens and ends runs of its own, and its event callbacks phone home. We train through a
trainer subclass that skips every integration callback, read the per-epoch history from the
`results.csv` ultralytics writes (the same in a single process and under its DDP launcher), and
log through the Kedro run instead. Everything else is ultralytics unchanged, so the wrapper costs
nothing per step.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import ultralytics.utils.tqdm as ultralytics_tqdm
from ultralytics import YOLO
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

from medvit.console import is_terminal
from medvit.detection.export import DetectionInputError, YoloDataset
from medvit.identity import Identity, describe_change, file_digest, identity

logger = logging.getLogger(__name__)

STATE_FILE = "medvit_state.json"
_INTEGRATIONS = ("ultralytics.utils.callbacks.", "ultralytics.utils.events")


def _is_integration(callback: Any) -> bool:
    module = getattr(callback, "__module__", "") or ""
    return module.startswith(_INTEGRATIONS) and module != "ultralytics.utils.callbacks.base"


class TrackedDetectionTrainer(DetectionTrainer):
    """Ultralytics' detection trainer with its integration callbacks skipped.

    Filtering at dispatch (not after `__init__`, which already fires the first event) also holds
    in the DDP worker processes ultralytics spawns, which rebuild this class.
    """

    def run_callbacks(self, event: str) -> None:
        for callback in self.callbacks.get(event, []):
            if not _is_integration(callback):
                callback(self)


@contextmanager
def _plain_progress_off_terminal() -> Iterator[None]:
    """Ultralytics' bars as one finished line each, not a carriage return per redraw, in a log.

    Its TQDM does so only when it detects GitHub Actions (`is_noninteractive_console`), but a
    log file, `nohup` or a scheduler's log need it as much: a demo run's log was mostly frames.
    """
    if is_terminal(sys.stdout):  # where ultralytics draws
        yield
        return
    detect = ultralytics_tqdm.is_noninteractive_console
    ultralytics_tqdm.is_noninteractive_console = lambda: True
    try:
        yield
    finally:
        ultralytics_tqdm.is_noninteractive_console = detect


@contextmanager
def _own_thread_count() -> Iterator[None]:
    """Undo ultralytics' `torch.set_num_threads(cores - 1)` for CPU runs once it is done.

    It leaves a core to its data loader while it trains, but the setting is process-wide and
    would slow every model trained after it in the same run.
    """
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def resolve_device(device: str | int | Sequence[int]) -> str:
    """Ultralytics' device string; `auto` is the first GPU when there is one, else the CPU.

    A GPU request on a machine without CUDA fails here, before any data is loaded.
    """
    if isinstance(device, int):
        device = str(device)
    if not isinstance(device, str):
        device = ",".join(str(index) for index in device)
    device = device.strip().lower()
    if device == "auto":
        return "0" if torch.cuda.is_available() else "cpu"
    if device in {"cpu", "mps"}:
        return device
    indices = device.removeprefix("cuda").lstrip(":") or "0"
    if not torch.cuda.is_available():
        raise DetectionInputError(
            f"device: {device} asks for CUDA, but torch sees no CUDA device on this machine "
            f"(torch {torch.__version__}); use device: auto or cpu."
        )
    wanted = [int(index) for index in indices.split(",")]
    if max(wanted) >= torch.cuda.device_count():
        raise DetectionInputError(
            f"device: {device} names GPU {max(wanted)}, but only "
            f"{torch.cuda.device_count()} CUDA device(s) are visible."
        )
    return ",".join(map(str, wanted))


def resolve_weights(weights: str) -> str:
    """What `YOLO(...)` is given: an architecture YAML (from scratch) or a checkpoint.

    A bare release name such as `yolov8n.pt` is left to ultralytics, which downloads it; any other
    checkpoint must be a file that exists, checked now rather than after the export.
    """
    path = Path(weights).expanduser()
    if path.is_file():
        return str(path.resolve())
    if path.suffix in {".yaml", ".yml"} and path.name == weights:
        return weights  # an ultralytics model config, e.g. yolov8n.yaml
    if weights in GITHUB_ASSETS_NAMES:
        return weights
    raise DetectionInputError(
        f"weights: {weights} does not exist. Give an existing checkpoint path, a model config "
        "such as yolov8n.yaml (trained from scratch), or an ultralytics release name such as "
        "yolov8n.pt (downloaded on first use, needs internet)."
    )


# How a run is executed or watched, never what it learns: a resume may change them (ultralytics
# takes new `device`, `workers` and `plots` on resume; `verbose` only changes the console).
# `cache` stays in the identity: ultralytics warns that caching in RAM changes the results.
OPERATIONAL = frozenset({"device", "workers", "plots", "verbose"})


def run_identity(dataset: YoloDataset, weights: str, settings: dict[str, Any]) -> Identity:
    """The export's train and val content (never test), the starting weights (a file's bytes, or
    an ultralytics name) and every setting that changes the result, each its own part, so that a
    replaced run says which setting changed."""
    start = file_digest(weights) if Path(weights).is_file() else weights
    semantic = {f"train.{key}": value for key, value in settings.items() if key not in OPERATIONAL}
    return identity(data=dataset.digest(), weights=start, **semantic)


def _resumable(workdir: Path, ident: Identity) -> tuple[YOLO | None, str]:
    """The last checkpoint of an interrupted run of the same identity, or why there is none."""
    last, state = workdir / "weights" / "last.pt", workdir / STATE_FILE
    if not (last.is_file() and state.is_file()):
        return None, "no interrupted run"
    change = describe_change(json.loads(state.read_text()).get("identity"), ident)
    if change != "unchanged":
        return None, f"identity {change}"
    model = YOLO(str(last))
    ckpt = model.ckpt or {}
    if ckpt.get("epoch", -1) < 0 or ckpt.get("optimizer") is None:
        return None, "the earlier run finished"
    return model, "unchanged"


def _clear(workdir: Path) -> None:
    """Empty the run folder for a fresh run, but never a folder this stage did not create."""
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / STATE_FILE).is_file():
        raise DetectionInputError(
            f"workdir: {workdir} exists, is not empty and holds no {STATE_FILE}, so it is not a "
            "detector run folder; choose an empty or new folder."
        )
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)


# ultralytics' plots of metrics and label statistics: no patient pixels in them.
METRIC_PLOTS = ("results.png", "confusion_matrix*.png", "*_curve.png", "labels*.jpg")
# Mosaics of training batches and validation images with their boxes: patients' slices.
PATIENT_IMAGES = ("train_batch*.jpg", "val_batch*.jpg")


@dataclass(frozen=True)
class TrainedDetector:
    save_dir: Path
    best: Path
    resumed: bool

    def history(self) -> pd.DataFrame:
        """Ultralytics' per-epoch table (losses, P, R, mAP, learning rates), with clean names."""
        table = pd.read_csv(self.save_dir / "results.csv")
        table.columns = [column.strip().replace("(B)", "") for column in table.columns]
        return table

    def plots(self, patient_images: bool = False) -> list[Path]:
        """The run's plots; images of patients only when asked, as they would leave the machine.

        Named patterns rather than "everything but the mosaics", so an image a new ultralytics
        version adds stays local until someone looks at it.
        """
        patterns = METRIC_PLOTS + (PATIENT_IMAGES if patient_images else ())
        return sorted({path for pattern in patterns for path in self.save_dir.glob(pattern)})


@_own_thread_count()
@_plain_progress_off_terminal()
def train_detector(
    dataset: YoloDataset,
    weights: str,
    settings: dict[str, Any],
    workdir: Path,
    resume: bool = True,
) -> TrainedDetector:
    """Train (or resume) in `workdir`; `settings` are ultralytics train arguments.

    A rerun resumes from `weights/last.pt` only when that run was interrupted under the same
    identity (`run_identity`: export, weights and the settings outside `OPERATIONAL`), taking the
    new operational settings; anything else starts a fresh run and logs why, because
    ultralytics would otherwise continue a run on data it was not started on.
    """
    workdir = workdir.resolve()
    ident = run_identity(dataset, weights, settings)
    resumable, reason = _resumable(workdir, ident) if resume else (None, "resume: false")
    if resumable is not None:
        logger.info("Resuming the interrupted detector training in %s", workdir)
        model = resumable
        model.train(
            resume=True,
            trainer=TrackedDetectionTrainer,
            data=str(dataset.data_yaml),
            **{key: settings[key] for key in OPERATIONAL - {"verbose"} if key in settings},
        )
    else:
        logger.info("Training the detector from scratch in %s: %s", workdir, reason)
        _clear(workdir)
        (workdir / STATE_FILE).write_text(json.dumps({"identity": ident}))
        model = YOLO(weights)
        model.train(
            trainer=TrackedDetectionTrainer,
            data=str(dataset.data_yaml),
            project=str(workdir.parent),
            name=workdir.name,
            exist_ok=True,
            **settings,
        )
    save_dir = Path(model.trainer.save_dir)
    return TrainedDetector(
        save_dir=save_dir, best=save_dir / "weights" / "best.pt", resumed=resumable is not None
    )


@_own_thread_count()
@_plain_progress_off_terminal()
def validate_detector(
    weights: Path, dataset: YoloDataset, split: str, settings: dict[str, Any], workdir: Path
) -> dict[str, float]:
    """Ultralytics' box metrics on one exported split: precision, recall, mAP50, mAP50-95."""
    metrics = YOLO(str(weights)).val(
        data=str(dataset.data_yaml),
        split=split,
        project=str(workdir.resolve()),
        name=f"val_{split}",
        exist_ok=True,
        plots=False,
        verbose=False,
        **settings,
    )
    box = metrics.box
    return {"precision": box.mp, "recall": box.mr, "mAP50": box.map50, "mAP50-95": box.map}


def predict_slices(
    weights: Path,
    images: np.ndarray,
    refs: Sequence[int],
    batch: int,
    settings: dict[str, Any],
) -> Iterator[tuple[float, list[list[float]]]]:
    """(score, boxes) per slice: score is the highest box confidence, 0 when nothing is found.

    Slices are read straight from the memory-mapped store (the same pixels as the export) and
    given as 3-channel arrays, as ultralytics reads the PNGs in training.
    """
    model = YOLO(str(weights))
    for start in range(0, len(refs), batch):
        chunk = refs[start : start + batch]
        arrays = [np.repeat(images[ref][..., None], 3, axis=-1) for ref in chunk]
        with _own_thread_count():
            results = model.predict(arrays, verbose=False, **settings)
        for result in results:
            confidences = result.boxes.conf.cpu().numpy()
            xyxy = result.boxes.xyxy.cpu().numpy()
            boxes = [[*map(float, box), float(c)] for box, c in zip(xyxy, confidences, strict=True)]
            yield (float(confidences.max()) if len(confidences) else 0.0), boxes
