"""The run's slice table fingerprint tag and dataset input: hashed and logged once per run on
loads, again on every save."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from medvit import hooks
from medvit.identity import table_digest
from medvit.splits import slice_table_fingerprint


class _Tracking:
    """The part of mlflow the hook calls: an active run, its tags and dataset inputs."""

    def __init__(self) -> None:
        self.run_id, self.tags, self.inputs = "run-1", {}, []
        self.data = SimpleNamespace(from_pandas=lambda table, name, digest: (name, digest))

    def log_input(self, dataset: tuple[str, str], context: str) -> None:
        self.inputs.append((self.run_id, *dataset))

    def active_run(self) -> SimpleNamespace:
        return SimpleNamespace(info=SimpleNamespace(run_id=self.run_id))

    def set_tag(self, key: str, value: str) -> None:
        self.tags[(self.run_id, key)] = value


def test_the_slice_table_is_fingerprinted_once_per_run_however_often_it_is_loaded(monkeypatch):
    tracking, hashed = _Tracking(), []
    monkeypatch.setattr(hooks, "mlflow", tracking)
    monkeypatch.setattr(
        hooks,
        "slice_table_fingerprint",
        lambda t: hashed.append(len(t)) or slice_table_fingerprint(t),
    )
    slices, more = pd.DataFrame({"patient_id": ["a", "b"]}), pd.DataFrame({"patient_id": ["c"]})
    hook = hooks.RunTagsHook()
    hook.after_dataset_loaded("slices", slices)
    hook.after_dataset_loaded("slices", slices)
    hook.after_dataset_loaded("splits", more)
    assert hashed == [2]
    hook.after_dataset_saved("slices", more)
    assert hashed == [2, 1]
    assert tracking.tags[("run-1", "slice_table_fingerprint")] == slice_table_fingerprint(more)
    assert tracking.inputs == [
        ("run-1", "slices", slice_table_fingerprint(slices)),
        ("run-1", "splits", table_digest(more)),
        ("run-1", "slices", slice_table_fingerprint(more)),
    ]

    tracking.run_id = "run-2"
    hook.after_dataset_loaded("slices", slices)
    assert hashed == [2, 1, 2]
    assert tracking.tags[("run-2", "slice_table_fingerprint")] == slice_table_fingerprint(slices)
