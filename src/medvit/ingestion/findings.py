"""Multi-label findings and views of radiographs: one 0/1 column per configured finding.

Manifests spell findings as NIH does (`Effusion|Pneumonia`, `No Finding`) or as one 0/1 column
per finding. Names are matched by their snake-case form, so `Pleural_Thickening`, `pleural
thickening` and `Pleural-Thickening` are one finding. A name outside the configured list is an
error naming the known ones, never a finding silently dropped: a typo in the vocabulary would
otherwise turn every positive of that finding into a negative.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

PREFIX = "finding_"


class UnknownFinding(ValueError):
    """A manifest names a finding that is not configured."""


def snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def finding_column(name: str) -> str:
    """A finding's slice table column: `Pleural_Thickening` -> `finding_pleural_thickening`."""
    return PREFIX + snake(name)


def finding_columns(table: pd.DataFrame) -> list[str]:
    """The finding columns of a slice table (or of any table keyed like it), in table order."""
    return [column for column in table.columns if str(column).startswith(PREFIX)]


@dataclass(frozen=True)
class Vocabulary:
    """The configured findings, and the spellings that mean "none" or "not labelled"."""

    findings: tuple[str, ...]
    no_finding: tuple[str, ...] = ("No Finding",)
    unlabelled: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [snake(name) for name in self.findings]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated or "" in keys:
            raise ValueError(f"findings must be distinct, non-empty names; repeated: {repeated}")

    @property
    def columns(self) -> list[str]:
        return [finding_column(name) for name in self.findings]

    def _known(self) -> str:
        spelled = ", ".join(self.findings) or "(none configured)"
        return f"known findings: {spelled}; 'none' is written {list(self.no_finding)}"

    def is_unlabelled(self, text: object) -> bool:
        """An empty cell says nothing (it is not "no finding"), nor does an `unlabelled` value."""
        if not isinstance(text, str) or not snake(text):
            return True
        return snake(text) in {snake(value) for value in self.unlabelled}

    def parse(self, text: str, where: str, separator: str = "|") -> dict[str, int]:
        """`A|B` -> {column: 0/1}; a no-finding spelling -> all 0."""
        labels = dict.fromkeys(self.columns, 0)
        none = {snake(value) for value in self.no_finding}
        by_key = {snake(name): finding_column(name) for name in self.findings}
        for part in text.split(separator):
            key = snake(part)
            if key in none:
                continue
            if key not in by_key:
                raise UnknownFinding(
                    f"{where}: unknown finding {part.strip()!r}; {self._known()}. Add it to "
                    "ingestion.findings, or list it under no_finding / unlabelled of the source"
                )
            labels[by_key[key]] = 1
        return labels

    def from_columns(
        self, row: Mapping[str, object], header: Mapping[str, str], where: str
    ) -> dict[str, int]:
        """One 0/1 manifest column per configured finding; `header` from `match_header`."""
        labels = {}
        for name, column in zip(self.findings, self.columns, strict=True):
            value = str(row[header[name]]).strip()
            if value not in {"0", "1", "0.0", "1.0"}:
                raise UnknownFinding(
                    f"{where}: column {header[name]!r} holds {value!r}, not 0 or 1"
                )
            labels[column] = int(float(value))
        return labels

    def match_header(self, header: Iterable[str], where: str) -> dict[str, str]:
        """Configured finding -> manifest column holding it; every finding must have one."""
        by_key = {snake(column): column for column in header}
        missing = [name for name in self.findings if snake(name) not in by_key]
        if missing:
            raise UnknownFinding(
                f"{where}: no 0/1 column for finding(s) {missing}; columns are {sorted(by_key)}"
            )
        return {name: by_key[snake(name)] for name in self.findings}


def view_name(value: object) -> str | None:
    """Views compare case-insensitively (`pa` is PA); empty means unknown."""
    return (str(value).strip().upper() or None) if value is not None else None


def any_finding(labels: Mapping[str, int]) -> int:
    """What `tumor` means for a radiograph: abnormal, i.e. at least one finding."""
    return int(any(labels.values()))


def patient_findings(table: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Per patient, 1 where any of their radiographs shows the finding (index: patient_id)."""
    columns = list(columns) if columns is not None else finding_columns(table)
    return table.groupby("patient_id")[columns].max().astype("int8")
