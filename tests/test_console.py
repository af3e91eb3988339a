"""A console a person can read: progress off a terminal, third-party warnings and chatter."""

from __future__ import annotations

import io
import logging
import warnings

import pytest
import ultralytics.utils.tqdm as ultralytics_tqdm

from medvit import console
from medvit.detection import yolo

SITE = "/venv/lib/python3.11/site-packages"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_a_log_line_every_step_of_its_total(caplog):
    with caplog.at_level(logging.INFO, logger="medvit.console"):
        assert list(console.progress(range(8), desc="ingest", every=0.25)) == list(range(8))
        bar = console.progress(total=3, desc="units", every=0.5)
        for _ in range(2):
            bar.update()
        bar.close()  # stopped short of its total: where it ended is logged
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(" (")[0] for line in lines] == [
        "ingest: 25%",
        "ingest: 50%",
        "ingest: 75%",
        "ingest: 100%",
        "units: 67%",
    ]
    assert lines[-1].startswith("units: 67% (2/3, ")


def test_a_caller_that_logs_its_own_steps_gets_no_progress_off_a_terminal(caplog, capsys):
    with caplog.at_level(logging.INFO):
        bar = console.progress(range(5), desc="epoch 1/2", every=None)
        assert list(bar) == list(range(5))
        bar.set_postfix(loss="0.1")  # what the training loop calls
    assert not caplog.records
    assert capsys.readouterr().err == ""


def test_on_a_terminal_progress_is_a_tqdm_bar(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert console.is_terminal()
    list(console.progress(range(3), desc="ingest"))
    assert "\r" in terminal.getvalue() and "ingest" in terminal.getvalue()
    assert list(console.progress(range(3), desc="ingest", enabled=False)) == [0, 1, 2]


@pytest.mark.parametrize("on_terminal", [True, False])
def test_ultralytics_bars_leave_one_line_each_off_a_terminal(monkeypatch, on_terminal):
    out = _Terminal() if on_terminal else io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    with yolo._plain_progress_off_terminal():
        list(ultralytics_tqdm.TQDM(range(50), desc="train", disable=False))
    assert ("\r" in out.getvalue()) == on_terminal
    if not on_terminal:
        assert out.getvalue().count("\n") == 1 and "train: 100%" in out.getvalue()
    assert not ultralytics_tqdm.is_noninteractive_console()  # restored after training


def _warn(message: str, module: str) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet_third_parties()
        path = f"{SITE}/{module.replace('.', '/')}.py"
        warnings.warn_explicit(message, UserWarning, path, 1, module=module)
    return caught


def test_third_party_deprecations_are_silenced_by_module_and_message():
    deprecated = "register_new_resolver() is deprecated and will be removed in a future release."
    assert not _warn(deprecated, "kedro.config.omegaconf_config")
    assert not _warn(deprecated, "kedro_mlflow.framework.hooks.mlflow_hook")
    assert not _warn(
        "\x1b[33mAdd type hints to the `predict` method ...", "mlflow.pyfunc.utils.data_validation"
    )
    # the same message from our code, or another message from the same module, still shows
    assert len(_warn(deprecated, "medvit.settings")) == 1
    assert len(_warn("Globals key 'x' not found", "kedro.config.omegaconf_config")) == 1


def test_warnings_captured_into_logging_are_dropped_by_the_same_list():
    """mlflow warns under its own `catch_warnings`: the log record is the last place to drop it."""
    hinted = warnings.formatwarning(
        "\x1b[33mAdd type hints to the `predict` method",
        UserWarning,
        f"{SITE}/mlflow/pyfunc/utils/data_validation.py",
        187,
    )
    assert console.is_third_party_warning(hinted)
    ours = warnings.formatwarning(
        "Add type hints to the `predict` method", UserWarning, "/work/src/medvit/models/x.py", 3
    )
    assert not console.is_third_party_warning(ours)
    console.quiet_third_parties()
    captured = logging.getLogger("py.warnings")
    assert not captured.filter(logging.makeLogRecord({"msg": "%s", "args": (hinted,)}))
    assert captured.filter(logging.makeLogRecord({"msg": "%s", "args": (ours,)}))


def test_ultralytics_settings_chatter_is_dropped_but_its_warnings_are_not():
    console.quiet_third_parties()
    ultralytics = logging.getLogger("ultralytics")
    chatter = "Creating new Ultralytics Settings v0.0.8 file ✅ \nView Ultralytics Settings with"
    assert not ultralytics.filter(logging.makeLogRecord({"msg": chatter}))
    assert ultralytics.filter(logging.makeLogRecord({"msg": "Ultralytics settings updated"}))
