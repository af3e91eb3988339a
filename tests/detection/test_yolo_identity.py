"""The detector's run identity: what resumes an interrupted run, what replaces it, and why."""

from __future__ import annotations

import json

import pytest
import torch
from ultralytics import YOLO

from medvit.detection.yolo import STATE_FILE, _resumable, run_identity

SETTINGS = {"epochs": 2, "imgsz": 64, "batch": 8, "seed": 0, "mosaic": 0.0, "cache": False}
RUNNING = {"device": "cpu", "workers": 0, "plots": False, "verbose": False}


def test_how_a_run_executes_is_not_part_of_what_it_is(exported):
    base = run_identity(exported, "yolov8n.yaml", {**SETTINGS, **RUNNING})
    elsewhere = {"device": "0", "workers": 8, "plots": True, "verbose": True}
    assert run_identity(exported, "yolov8n.yaml", {**SETTINGS, **elsewhere}) == base
    for key, value in {"seed": 1, "imgsz": 32, "mosaic": 1.0, "cache": "ram"}.items():
        changed = run_identity(exported, "yolov8n.yaml", {**SETTINGS, **RUNNING, key: value})
        assert {k for k in base if base[k] != changed[k]} == {f"train.{key}"}


def test_starting_weights_are_identified_by_their_bytes(exported, tmp_path):
    weights = tmp_path / "start.pt"
    weights.write_bytes(b"one")
    first = run_identity(exported, str(weights), SETTINGS)
    copy = tmp_path / "elsewhere" / "start.pt"
    copy.parent.mkdir()
    copy.write_bytes(b"one")
    assert run_identity(exported, str(copy), SETTINGS) == first  # moved, not changed
    weights.write_bytes(b"two")
    assert run_identity(exported, str(weights), SETTINGS)["weights"] != first["weights"]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return YOLO("yolov8n.yaml").model


def _run_folder(tmp_path, model, ident, epoch: int):
    """A run folder as ultralytics leaves it: interrupted (epoch >= 0) or finished (-1)."""
    workdir = tmp_path / "run"
    (workdir / "weights").mkdir(parents=True)
    optimizer = {"state": {}} if epoch >= 0 else None
    torch.save(
        {"epoch": epoch, "model": model, "optimizer": optimizer, "train_args": {}},
        workdir / "weights" / "last.pt",
    )
    (workdir / STATE_FILE).write_text(json.dumps({"identity": ident}))
    return workdir


@pytest.mark.parametrize(
    ("epoch", "change", "resumed", "reason"),
    [
        (0, {"workers": 4, "device": "0"}, True, "unchanged"),
        (0, {"seed": 1}, False, "identity changed: train.seed"),
        (-1, {}, False, "the earlier run finished"),
    ],
    ids=["operational-change", "semantic-change", "finished"],
)
def test_only_an_interrupted_run_of_the_same_identity_resumes(
    exported, tmp_path, model, epoch, change, resumed, reason
):
    settings = {**SETTINGS, **RUNNING}
    ident = run_identity(exported, "yolov8n.yaml", settings)
    workdir = _run_folder(tmp_path, model, ident, epoch)
    found, why = _resumable(workdir, run_identity(exported, "yolov8n.yaml", settings | change))
    assert (found is not None) == resumed and why == reason
