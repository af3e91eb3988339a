"""What a run prints: a console a person can read, on a terminal and in a log file alike.

- Progress: on a terminal (or in a notebook) a tqdm bar redraws itself in place. Anywhere else
  (CI, `nohup`, a scheduler's log file) every redraw is one more carriage-return line: a demo
  run's log was 235 KB of bar frames out of 327 KB. There, `progress` logs a plain line every
  `every` of its total instead, or nothing when its caller logs a line per step (an epoch).
- Log records: conf/logging.yml has a rich handler for terminals and a plain one for files, each
  silenced by its level here where it does not fit (in a file, rich pads and wraps every line at
  80 columns, splitting run ids and paths).
- Warnings: third-party deprecations that only their authors can fix, each silenced by module
  and message in `THIRD_PARTY_WARNINGS`, so that every other warning (ours above all) shows.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as chosen_tqdm  # what tqdm.auto chose: a widget or plain bars
from tqdm.std import tqdm as plain_tqdm

logger = logging.getLogger(__name__)

# (category, module that warns, message start): regular expressions, as `warnings.filterwarnings`
# matches them. Each is a library calling another library's deprecated API.
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # kedro's config loader and kedro-mlflow's hook register resolvers through the API that
    # omegaconf 2.4 deprecates.
    (
        UserWarning,
        r"kedro\.config\.omegaconf_config|kedro_mlflow\.",
        r"register_new_resolver\(\) is deprecated",
    ),
    # kedro-mlflow's config models use pydantic 1's class-based `Config`.
    (
        DeprecationWarning,
        r"kedro_mlflow\.config\.",
        r"Support for class-based `config` is deprecated",
    ),
    # kedro's parameter validation reads `model_fields` from our models' instances.
    (
        DeprecationWarning,
        r"kedro\.validation\.",
        r"Accessing the 'model_fields' attribute on the instance is deprecated",
    ),
    # kedro, when a pipeline maps one namespace's dataset (`detector.weights`) into another's
    # inputs, as `external_validation` must: the dots are kedro's own namespacing, not a name.
    (
        UserWarning,
        r"kedro\.pipeline\.node",
        r"One or more dataset names contain '\.' characters",
    ),
    # mlflow's SQL store maps its tables with a loader strategy SQLAlchemy 2.1 deprecates.
    (DeprecationWarning, r"mlflow\.store\.", r"The ``noload`` loader strategy is deprecated"),
    # mlflow, when kedro-mlflow defines its pipeline model (at import), about that model's
    # `predict` type hints; the message starts with a colour code.
    (
        UserWarning,
        r"mlflow\.pyfunc\.utils\.data_validation",
        r"(\x1b\[\d+m)?Add type hints to the `predict` method",
    ),
)


# A warning as `warnings.formatwarning` writes it, which is what reaches logging.
_FORMATTED = re.compile(r"(?P<path>.+?):\d+: (?P<category>\w+): (?P<message>.*)", re.DOTALL)


def is_third_party_warning(formatted: str) -> bool:
    """Whether a formatted warning is one of `THIRD_PARTY_WARNINGS` (its path read as a module)."""
    parts = _FORMATTED.match(formatted)
    if parts is None:
        return False
    module = re.sub(r"[/\\]", ".", parts["path"].removesuffix(".py"))
    return any(
        parts["category"] == category.__name__
        and re.search(rf"(?:^|\.)(?:{module_pattern})", module)
        and re.match(message, parts["message"])
        for category, module_pattern, message in THIRD_PARTY_WARNINGS
    )


# Log records of libraries that say nothing about this run: ultralytics announces, once per
# machine, the settings file it created in the user's home.
CHATTER = {"ultralytics": re.compile(r"Creating new Ultralytics Settings")}


class _DropRecords(logging.Filter):
    def __init__(self, drops: Callable[[str], object]) -> None:
        super().__init__()
        self.drops = drops

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.drops(record.getMessage())


def _drop(logger_name: str, drops: Callable[[str], object]) -> None:
    target = logging.getLogger(logger_name)
    if not any(isinstance(existing, _DropRecords) for existing in target.filters):
        target.addFilter(_DropRecords(drops))


def quiet_third_parties() -> None:
    """Install the `THIRD_PARTY_WARNINGS` filters and drop `CHATTER`; again is harmless.

    The warnings are also dropped where they reach logging (Kedro's rich handler captures
    warnings into `py.warnings`): mlflow issues its type-hint warning inside its own
    `catch_warnings`, whose "once" filter goes ahead of ours.
    """
    for category, module, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    _drop("py.warnings", is_third_party_warning)
    for logger_name, pattern in CHATTER.items():
        _drop(logger_name, pattern.match)


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether `stream` (stderr by default, where tqdm draws) redraws in place.

    A notebook counts as one: `tqdm.auto` draws a widget there, not carriage returns.
    """
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return chosen_tqdm is not plain_tqdm or bool(isatty is not None and isatty())


# Levels of conf/logging.yml's two console handlers (Kedro lets a logging config name only
# logging's and kedro's classes, so the choice is made here): rich on a terminal, plain lines
# anywhere else.
_SILENT = logging.CRITICAL + 1
RICH_LEVEL = logging.NOTSET if is_terminal(sys.stdout) else _SILENT
PLAIN_LEVEL = _SILENT if is_terminal(sys.stdout) else logging.NOTSET


class LoggedProgress:
    """The part of tqdm's interface our loops use, logging a line every `every` of `total`."""

    def __init__(
        self, iterable: Iterable | None, total: int | None, desc: str, every: float
    ) -> None:
        self.iterable, self.desc, self.every = iterable, desc, every
        self.total = total if total is not None else len(iterable)  # type: ignore[arg-type]
        self.n, self._started = 0, time.perf_counter()
        self._logged_steps, self._logged_n, self._closed = 0, 0, False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:  # type: ignore[union-attr]
                yield item
                self.update()
        finally:
            self.close()

    def _log(self) -> None:
        self._logged_n = self.n
        percent = 100 * self.n / self.total if self.total else 100.0
        elapsed = time.perf_counter() - self._started
        logger.info("%s: %.0f%% (%d/%d, %.1f s)", self.desc, percent, self.n, self.total, elapsed)

    def update(self, n: int = 1) -> None:
        self.n += n
        steps = int(self.n / self.total / self.every) if self.total else 0
        if steps > self._logged_steps:
            self._logged_steps = steps
            self._log()

    def close(self) -> None:
        """Log where it ended, unless the last line already said so."""
        if not self._closed and self.n != self._logged_n:
            self._log()
        self._closed = True


Progress = tqdm | LoggedProgress


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    every: float | None = 0.1,
    **tqdm_args: Any,
) -> Progress:
    """A tqdm bar on a terminal; elsewhere a line every `every` of the total (`None`: silent).

    `enabled=False` shows nothing anywhere (another rank of a distributed run, a config that
    turns progress off).
    """
    if enabled and is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, **tqdm_args)
    if enabled and every is not None:
        return LoggedProgress(iterable, total, desc, every)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True)
