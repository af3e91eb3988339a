"""Patient-level train/val/test splits with controlled anomaly ratios; no Kedro.

Slices of one patient are strongly correlated, so every split is drawn over patients (or over
whatever grouping unit stands in for them when a dataset has no patient ids): a patient's slices
never sit on both sides of an evaluation. Held-out splits are built at a fixed normal : tumour
ratio because detection metrics (precision, AUPRC) depend on prevalence; a fixed ratio makes runs
on different cohorts comparable and keeps the evaluation honest about rare anomalies.

Policy (the reference for analysts; every step is deterministic given `seed`):

1. Fixed assignment. If `fixed` is set, units whose `fixed.column` value is listed under
   `fixed.test` / `fixed.val` go to that split first. Values are compared as strings, with
   integral floats written as integers (so 4, "4" and 4.0 match: a fold column read back as float
   because of a missing value still works); `null` in a list addresses units with no value
   (never the string "nan"). Then `fixed.sources` rules, source by source in name order: values
   listed under `train` / `val` / `test` pin that source's units, and a fraction under `val` /
   `test` draws that share of the source's units per label (rounded half up, seeded) from those
   still unassigned. A unit keeps the first assignment it gets; units of a source that no rule
   assigns stay in the pool. A held-out split filled this way keeps its natural prevalence and is
   not drawn again; the remaining held-out splits are drawn from the pool.
2. Held-out drawing. Test is drawn before val, both stratified by patient label with one seeded
   numpy Generator over the units sorted by patient_id.

   * With a `ratio` (default 9 normal : 1 tumour): the split gets `tumor_patients` tumour
     patients, or round(`tumor_fraction` x all tumour patients of the cohort), at least 1; then
     normal = tumour x ratio.normal / ratio.tumor. When that is not an integer it is rounded to
     the nearest integer, halves up (1 tumour at 2:3 gives 1 normal), so the realised ratio is
     exact whenever the request allows it.
   * With `ratio: null` (natural prevalence): round(`fraction` x all tumour patients) tumour and
     round(`fraction` x all normal patients) normal patients, i.e. `fraction` of the cohort drawn
     stratified.

   Fractions always refer to the whole input cohort, so a value means the same thing with or
   without `fixed`. Patients are drawn at random from those not yet assigned.
3. Failing loudly. `SplitError` (a ValueError) with the numbers involved is raised when a
   held-out split would get no tumour or no normal patient (no metric is defined on one class),
   when not enough tumour or normal patients remain to meet a request, and when train would end
   up empty or with one class only. Nothing is silently shrunk.
4. Train gets every unit left. With `train_ratio`, the class in excess of that ratio is
   subsampled at random (the kept count rounded half up as in step 2); the excess goes to
   "unused", so every input unit appears in the output exactly once.
5. Cross-validation. With `cross_validation`, the train pool of step 4 is dealt into `n_folds`
   stratified, patient-disjoint folds (each class shuffled and dealt round-robin, so fold sizes
   differ by at most one per class); `cv_fold` is set on every row of that pool. Fold
   `cross_validation.fold` becomes val and the others stay train; the `val` drawing of step 2 is
   skipped (the `val` settings are ignored, and `fixed.val` is rejected). Every fold must hold
   both classes.
6. Reproducibility. Same seed and same units, in any row order, give the same output: units are
   sorted by patient_id before any draw, and draws happen in a fixed order (test, val, train
   subsampling, folds).

Multi-label cohorts (chest X-rays) are split by `make_finding_splits` instead: no ratio, val and
test as fractions or counts of patients, stratified by each patient's rarest positive finding (see
its docstring), and `finding_split_summary` names the findings too rare in val or test to be
measured there.

Splits belong to one slice table. The pipeline writes the table's content hash on every row of
the splits (`slice_table_fingerprint`, a column so that any reader keeps it), and `slices_in`,
which every model stage joins the two tables with, refuses splits drawn from another slice table
and slices of patients the splits do not list: a stale splits table fails loudly instead of
silently dropping or mislabelling patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from medvit.identity import table_digest
from medvit.ingestion.findings import finding_columns

SPLITS = ("train", "val", "test", "unused")
FINGERPRINT = "slice_table_fingerprint"
_CLASS_NAMES = {1: "tumour", 0: "normal"}

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class SplitError(ValueError):
    """A cohort cannot be split as configured; the message carries the counts involved."""


class Ratio(BaseModel):
    """Normal : tumour patients, e.g. 9 : 1."""

    model_config = ConfigDict(extra="forbid")

    normal: PositiveInt = 9
    tumor: PositiveInt = 1

    def __str__(self) -> str:
        return f"{self.normal}:{self.tumor}"


class HeldOutSplit(BaseModel):
    """How many patients val or test gets: a tumour count at a ratio, or a natural fraction."""

    model_config = ConfigDict(extra="forbid")

    tumor_patients: PositiveInt | None = None
    tumor_fraction: Fraction | None = None
    ratio: Ratio | None = Field(default_factory=Ratio)
    fraction: Fraction | None = None

    @model_validator(mode="after")
    def _one_way_to_size(self) -> Self:
        by_count = self.tumor_patients is not None or self.tumor_fraction is not None
        if self.ratio is None:
            if by_count:
                raise ValueError(
                    "tumor_patients / tumor_fraction need a ratio; with ratio: null use fraction"
                )
            if self.fraction is None:
                raise ValueError("ratio: null (natural prevalence) needs fraction")
            return self
        if self.fraction is not None:
            raise ValueError(
                "fraction is used only with ratio: null; with a ratio use "
                "tumor_patients or tumor_fraction"
            )
        if (self.tumor_patients is None) == (self.tumor_fraction is None):
            raise ValueError("with a ratio set exactly one of tumor_patients / tumor_fraction")
        return self


Value = str | int | None  # None (YAML null): the units with no value in the column


class SourceRule(BaseModel):
    """How one source's units are split, e.g. figshare `{train: [1, 2, 3], val: [4]}` (its
    folds) or Br35H `{val: 0.3}` (30% of its groups, drawn per label)."""

    model_config = ConfigDict(extra="forbid")

    train: list[Value] = []
    val: list[Value] | Fraction = []
    test: list[Value] | Fraction = []

    def values(self) -> dict[str, list[Value]]:
        """The value lists by split (fractions are not values)."""
        specs = {"train": self.train, "val": self.val, "test": self.test}
        return {name: spec for name, spec in specs.items() if isinstance(spec, list) and spec}

    def fractions(self) -> dict[str, float]:
        """The drawn shares by split, test before val as the held-out drawing goes."""
        specs = {"test": self.test, "val": self.val}
        return {name: spec for name, spec in specs.items() if isinstance(spec, float)}


class FixedAssignment(BaseModel):
    """Author-given held-out units, e.g. {column: fold, test: [4]}, and per-source rules."""

    model_config = ConfigDict(extra="forbid")

    column: str = "group"
    test: list[Value] = []
    val: list[Value] = []
    sources: dict[str, SourceRule] = {}

    @model_validator(mode="after")
    def _distinct_values(self) -> Self:
        if not self.test and not self.val and not self.sources:
            raise ValueError("fixed lists no values for test or val and no source rules")
        _check_distinct("fixed", {"test": self.test, "val": self.val})
        for name, rule in self.sources.items():
            if not rule.values() and not rule.fractions():
                raise ValueError(f"fixed.sources.{name} assigns nothing")
            _check_distinct(f"fixed.sources.{name}", rule.values())
        return self

    def assigns_val(self) -> bool:
        return bool(self.val) or any(
            "val" in rule.values() or "val" in rule.fractions() for rule in self.sources.values()
        )


def _check_distinct(where: str, values: dict[str, list[Value]]) -> None:
    seen: dict[str | None, str] = {}
    for name, listed in values.items():
        for key in map(_as_key, listed):
            if key in seen:
                raise ValueError(
                    f"{where} values [{key}] are listed for both {seen[key]} and {name}"
                )
            seen[key] = name


class CrossValidation(BaseModel):
    """Which of n_folds stratified train folds serves as val."""

    model_config = ConfigDict(extra="forbid")

    n_folds: Annotated[int, Field(ge=2)]
    fold: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _fold_in_range(self) -> Self:
        if self.fold >= self.n_folds:
            raise ValueError(f"fold must be in [0, {self.n_folds}), got {self.fold}")
        return self


class SplitParams(BaseModel):
    """The `params:` block Kedro hands to `make_splits`; unknown keys are errors, not no-ops."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    test: HeldOutSplit = Field(default_factory=lambda: HeldOutSplit(tumor_patients=3))
    val: HeldOutSplit = Field(default_factory=lambda: HeldOutSplit(tumor_patients=2))
    train_ratio: Ratio | None = None
    fixed: FixedAssignment | None = None
    cross_validation: CrossValidation | None = None

    @model_validator(mode="after")
    def _one_source_of_val(self) -> Self:
        if (
            self.cross_validation is not None
            and self.fixed is not None
            and self.fixed.assigns_val()
        ):
            raise ValueError(
                "cross_validation chooses val from the train folds; drop fixed.val and the "
                "val of fixed.sources"
            )
        return self


@dataclass(frozen=True)
class _Request:
    """Patients a held-out split needs per label, and why and which parameters set it, for the
    shortage message."""

    split: str
    counts: dict[int, int]
    reasons: dict[int, str]
    parameters: dict[int, str]


def make_splits(units: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    """Assign every unit to train, val, test or unused following the module policy.

    A SplitError ends with what the cohort holds per label: with the parameter named in it, the
    message alone says what to change.
    """
    labels = _clean_units(units, params.fixed)
    try:
        return _assign(labels, params)
    except SplitError as error:
        n_tumor = int(labels["tumor"].sum())
        raise SplitError(
            f"{error}. The cohort holds {n_tumor} tumour and {len(labels) - n_tumor} normal "
            "patients."
        ) from None


def check_feasible(n_tumor: int, n_normal: int, params: SplitParams) -> None:
    """Raise the SplitError `make_splits` would raise on a cohort of these patient counts.

    Which patients are drawn never changes how many are needed, so the policy run on stand-in
    units is exact, keeps one copy of the arithmetic and takes milliseconds: a request the cohort
    cannot meet fails before any image is decoded. `fixed` assignments depend on which units hold
    which value, not on counts, so with `fixed` set the check waits for the real units.
    """
    if params.fixed is not None:
        return
    labels = [1] * n_tumor + [0] * n_normal
    ids = [f"unit{index:09d}" for index in range(len(labels))]
    make_splits(pd.DataFrame({"patient_id": ids, "tumor": labels}), params)


def _assign(labels: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    fixed = params.fixed
    tumor = labels["tumor"]
    split = pd.Series(None, index=tumor.index, dtype=object)
    rng = np.random.default_rng(params.seed)

    fixed_names = _assign_fixed(labels, fixed, split, rng) if fixed else set()
    drawn = {"test": params.test, "val": params.val}
    if params.cross_validation is not None:
        del drawn["val"]
    for name, spec in drawn.items():
        if name not in fixed_names:
            request = _held_out_request(name, spec, tumor)
            split[_draw(request, tumor[split.isna()], rng)] = name

    split[split.isna()] = "train"
    if params.train_ratio is not None:
        split[_excess(tumor[split == "train"], params.train_ratio, rng)] = "unused"
    _require_both_classes("train", tumor[split == "train"])

    cv_fold = pd.Series(pd.NA, index=tumor.index, dtype="Int64")
    if params.cross_validation is not None:
        folds = _deal_folds(tumor[split == "train"], params.cross_validation.n_folds, rng)
        cv_fold[folds.index] = folds
        split[folds.index[folds == params.cross_validation.fold]] = "val"

    table = pd.DataFrame(
        {
            "patient_id": tumor.index,
            "split": split.to_numpy(),
            "tumor": tumor.to_numpy(),
            "cv_fold": cv_fold.array,
        }
    )
    return table.sort_values(["split", "patient_id"], ignore_index=True)


def split_counts(splits: pd.DataFrame) -> dict[str, int]:
    """Realised patients per split and class, with zeros for absent splits so metric keys are
    stable across runs."""
    counts: dict[str, int] = {}
    for name in SPLITS:
        tumor = splits.loc[splits["split"] == name, "tumor"]
        counts[f"{name}/patients"] = len(tumor)
        counts[f"{name}/tumor"] = int(tumor.sum())
        counts[f"{name}/normal"] = len(tumor) - int(tumor.sum())
    return counts


def slice_table_fingerprint(slices: pd.DataFrame) -> str:
    """The slice table's content hash: what a run is tagged with and what splits are drawn from.

    Canonical (`medvit.identity.table_digest`), so it is the same before and after a parquet
    round trip, whether `boxes` holds lists or arrays.
    """
    return table_digest(slices)


def with_fingerprint(splits: pd.DataFrame, slices: pd.DataFrame) -> pd.DataFrame:
    """The splits with the fingerprint of the slice table they were drawn from on every row."""
    return splits.assign(**{FINGERPRINT: slice_table_fingerprint(slices)})


def slices_in(
    slices: pd.DataFrame, splits: pd.DataFrame, keep: tuple[str, ...] = ("train", "val", "test")
) -> pd.DataFrame:
    """The slices of patients assigned to `keep`, in their order, with a `split` column.

    What every model stage starts from. `unused` patients drop out; splits drawn from another
    slice table, or a patient of the slice table with no split, are errors (a join would drop or
    mislabel their slices silently).
    """
    _check_drawn_from(splits, slice_table_fingerprint(slices))
    _check_every_patient_split(splits, slices)
    split = slices["patient_id"].map(splits.set_index("patient_id")["split"])
    return slices.assign(split=split)[split.isin(keep)].reset_index(drop=True)


def _check_drawn_from(splits: pd.DataFrame, fingerprint: str) -> None:
    rerun = "rerun data_preparation (kedro run --pipelines=data_preparation)"
    if FINGERPRINT not in splits:
        raise SplitError(
            f"splits.parquet has no {FINGERPRINT} column, so which slice table it was drawn from "
            f"is unknown (it predates that column or was written by hand): {rerun}"
        )
    built_from = sorted(splits[FINGERPRINT].astype(str).unique())
    if built_from != [fingerprint]:
        raise SplitError(
            f"splits.parquet was built from slice table {', '.join(built_from) or 'none'}, "
            f"but slices.parquet is {fingerprint}: {rerun}"
        )


def _check_every_patient_split(splits: pd.DataFrame, slices: pd.DataFrame) -> None:
    unknown = sorted(set(slices["patient_id"].astype(str)) - set(splits["patient_id"].astype(str)))
    if unknown:
        raise SplitError(
            f"{len(unknown)} patient(s) in the slice table have no split, e.g. {unknown[:5]}"
        )


def check_disjoint(splits: pd.DataFrame, slices: pd.DataFrame) -> None:
    """Guard against the leak that would invalidate every metric: one patient in two splits.

    `slices` is a slice table with `patient_id` and, once the pipeline has joined it to the
    splits, a `split` column; both tables must agree on a single split per patient, and slices of
    patients missing from `splits` are reported because a join would drop them silently.
    """
    _check_every_patient_split(splits, slices)
    split_ids = splits["patient_id"].astype(str)
    slice_ids = slices["patient_id"].astype(str)
    assignments = [pd.DataFrame({"patient_id": split_ids, "split": splits["split"]})]
    if "split" in slices:
        assignments.append(pd.DataFrame({"patient_id": slice_ids, "split": slices["split"]}))
    per_patient = pd.concat(assignments).groupby("patient_id")["split"].unique()
    leaks = per_patient[per_patient.map(len) > 1]
    if len(leaks):
        examples = {pid: sorted(names) for pid, names in leaks.head(5).items()}
        raise SplitError(f"{len(leaks)} patient(s) appear in more than one split: {examples}")


def _clean_units(units: pd.DataFrame, fixed: FixedAssignment | None) -> pd.DataFrame:
    """Validated labels indexed by patient_id in sorted order, the basis of reproducible draws."""
    missing = [c for c in ("patient_id", "tumor") if c not in units]
    if missing:
        raise SplitError(f"units lack required column(s) {missing}")
    if fixed is not None and fixed.column not in units:
        raise SplitError(
            f"fixed.column {fixed.column!r} is not a column of units ({list(units.columns)})"
        )
    if fixed is not None and fixed.sources and "source" not in units:
        raise SplitError(
            f"fixed.sources needs a source column in units, which have {list(units.columns)}"
        )
    if units["patient_id"].isna().any():
        raise SplitError(f"{int(units['patient_id'].isna().sum())} unit(s) have no patient_id")
    ids = units["patient_id"].astype(str)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise SplitError(f"{len(duplicated)} duplicate patient_id(s), e.g. {duplicated[:5]}")
    valid = units["tumor"].notna() & units["tumor"].isin([0, 1])
    if not valid.all():
        bad = sorted({str(v) for v in units.loc[~valid, "tumor"]})
        raise SplitError(f"tumor must be 0 or 1; found {bad[:5]} in {int((~valid).sum())} unit(s)")
    columns = {"tumor": units["tumor"].astype(int).to_numpy()}
    if fixed is not None:
        columns["fixed"] = units[fixed.column].map(_as_key).to_numpy(dtype=object)
        if fixed.sources:
            columns["source"] = units["source"].astype(str).to_numpy()
    return pd.DataFrame(columns, index=pd.Index(ids.to_numpy(), name="patient_id")).sort_index()


def _as_key(value: object) -> str | None:
    """String form for fixed-assignment matching, treating 4.0 as 4; None for a missing value,
    so that no string (not even "nan") addresses units without one."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _matching(keys: pd.Series, values: list[Value]) -> pd.Series:
    """Which units' keys are among `values` (a None among them: those with no value)."""
    wanted = {_as_key(value) for value in values}
    return keys.isin(wanted - {None}) | (keys.isna() & (None in wanted))


def _assign_fixed(
    labels: pd.DataFrame, fixed: FixedAssignment, split: pd.Series, rng: np.random.Generator
) -> set[str]:
    """Place author-given units; returns the held-out splits they filled so those are not drawn
    again."""
    filled = set()
    for name, values in (("test", fixed.test), ("val", fixed.val)):
        if values:
            _pin(labels.index, labels["fixed"], values, name, split, f"fixed.{name}", fixed.column)
            filled.add(name)
    present = sorted(labels["source"].unique()) if fixed.sources else []
    for source, rule in sorted(fixed.sources.items()):
        units = labels.index[labels["source"] == source]
        if units.empty:
            raise SplitError(
                f"fixed.sources names source {source!r}, which has no unit; sources: {present}"
            )
        where = f"fixed.sources.{source}"
        for name, values in rule.values().items():
            keys = labels.loc[units, "fixed"]
            _pin(units, keys, values, name, split, f"{where}.{name}", fixed.column)
            filled.add(name)
        for name, fraction in rule.fractions().items():
            tumor = labels.loc[units, "tumor"]
            counts = {
                label: _round_half_up(fraction * int((tumor == label).sum())) for label in (1, 0)
            }
            reasons = {
                label: f" ({where}.{name}: {fraction} of {int((tumor == label).sum())})"
                for label in (1, 0)
            }
            request = _Request(name, counts, reasons, dict.fromkeys(counts, f"{where}.{name}"))
            split[_draw(request, tumor[split[units].isna()], rng)] = name
            filled.add(name)
    for name in filled - {"train"}:
        _require_both_classes(name, labels.loc[split == name, "tumor"])
    return filled - {"train"}


def _pin(
    units: pd.Index,
    keys: pd.Series,
    values: list[Value],
    name: str,
    split: pd.Series,
    where: str,
    column: str,
) -> None:
    """Put the still unassigned `units` whose key is listed into split `name`."""
    matched = units[_matching(keys.loc[units], values).to_numpy()]
    if matched.empty:
        present = sorted(keys.loc[units].unique(), key=str)
        raise SplitError(
            f"{where} values {values} match no unit in column {column!r} "
            f"(values present: {present[:10]})"
        )
    members = matched[split[matched].isna().to_numpy()]
    split[members] = name


def _held_out_request(name: str, spec: HeldOutSplit, tumor: pd.Series) -> _Request:
    """Translate a HeldOutSplit into patient counts against the whole cohort."""
    n_tumor = int(tumor.sum())
    n_normal = len(tumor) - n_tumor
    if spec.ratio is None:
        fraction = spec.fraction
        counts = {1: _round_half_up(fraction * n_tumor), 0: _round_half_up(fraction * n_normal)}
        reasons = {
            1: f" (fraction {fraction} of {n_tumor})",
            0: f" (fraction {fraction} of {n_normal})",
        }
        for label, count in counts.items():
            if count == 0:
                raise SplitError(
                    f"{name} would get no {_CLASS_NAMES[label]} patient: "
                    f"fraction {fraction} of {n_tumor if label else n_normal} rounds to 0; "
                    f"raise splits.{name}.fraction"
                )
        return _Request(name, counts, reasons, dict.fromkeys(counts, f"splits.{name}.fraction"))

    ratio = spec.ratio
    if spec.tumor_patients is not None:
        tumour, tumour_reason, size = spec.tumor_patients, "", "tumor_patients"
    else:
        tumour = max(1, _round_half_up(spec.tumor_fraction * n_tumor))
        tumour_reason = f" (tumor_fraction {spec.tumor_fraction} of {n_tumor})"
        size = "tumor_fraction"
    normal = _scale(tumour, ratio.normal, ratio.tumor)
    if normal == 0:
        raise SplitError(
            f"{name} would get no normal patient: {tumour} tumour patient(s) at {ratio} "
            f"round to 0 normal patients; raise splits.{name}.ratio.normal"
        )
    return _Request(
        name,
        {1: tumour, 0: normal},
        {1: tumour_reason, 0: f" at {ratio} for {tumour} tumour patients"},
        {1: f"splits.{name}.{size}", 0: f"splits.{name}.ratio or splits.{name}.{size}"},
    )


def _draw(request: _Request, available: pd.Series, rng: np.random.Generator) -> list[str]:
    """Pick the requested patients per label at random from the unassigned ones."""
    chosen: list[str] = []
    for label in (1, 0):
        pool = available.index[available == label].to_numpy()
        need = request.counts[label]
        if need > len(pool):
            kind = _CLASS_NAMES[label]
            raise SplitError(
                f"{request.split} needs {need} {kind} patients{request.reasons[label]}, "
                f"but only {len(pool)} {kind} patients remain; change {request.parameters[label]}, "
                f"or add a source of {kind} patients"
            )
        chosen.extend(str(pid) for pid in rng.choice(pool, size=need, replace=False))
    return chosen


def _excess(train: pd.Series, ratio: Ratio, rng: np.random.Generator) -> list[str]:
    """Patients of the over-represented class to drop so train matches `ratio`."""
    n_tumor = int(train.sum())
    n_normal = len(train) - n_tumor
    parts = {1: ratio.tumor, 0: ratio.normal}
    if n_normal * ratio.tumor > n_tumor * ratio.normal:
        majority, minority_count = 0, n_tumor
    elif n_normal * ratio.tumor < n_tumor * ratio.normal:
        majority, minority_count = 1, n_normal
    else:
        return []
    keep = _scale(minority_count, parts[majority], parts[1 - majority])
    pool = train.index[train == majority].to_numpy()
    excess = max(len(pool) - keep, 0)
    return [str(pid) for pid in rng.choice(pool, size=excess, replace=False)]


def _deal_folds(train: pd.Series, n_folds: int, rng: np.random.Generator) -> pd.Series:
    """Stratified folds: each class shuffled, then all patients dealt round-robin in turn."""
    for label, kind in _CLASS_NAMES.items():
        count = int((train == label).sum())
        if count < n_folds:
            raise SplitError(
                f"cross_validation with {n_folds} folds needs at least {n_folds} {kind} "
                f"patients in the train pool so every fold has one, but it has {count}"
            )
    order = np.concatenate(
        [rng.permutation(train.index[train == label].to_numpy()) for label in (1, 0)]
    )
    return pd.Series(np.arange(len(order)) % n_folds, index=order.astype(str))


def _require_both_classes(name: str, tumor: pd.Series) -> None:
    if tumor.empty:
        raise SplitError(f"{name} would be empty")
    n_tumor = int(tumor.sum())
    n_normal = len(tumor) - n_tumor
    for count, kind in ((n_tumor, "tumour"), (n_normal, "normal")):
        if count == 0:
            raise SplitError(
                f"{name} would get no {kind} patient ({n_tumor} tumour, {n_normal} normal)"
            )


def _scale(count: int, numerator: int, denominator: int) -> int:
    """count x numerator / denominator rounded half up, in integers so 9:1 is never off by one."""
    return (2 * count * numerator + denominator) // (2 * denominator)


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


class FindingSplitParams(BaseModel):
    """Patient-disjoint splits of a multi-label (chest X-ray) cohort, stratified by finding.

    `val` and `test` are a fraction of all patients (0.15) or a count of patients (40).
    `min_positive_patients`: a finding with fewer positive patients in val or test is flagged in
    the split summary (its metrics there would be noise), never silently dropped.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    val: Fraction | PositiveInt = 0.15
    test: Fraction | PositiveInt = 0.15
    min_positive_patients: PositiveInt = 3


def make_finding_splits(units: pd.DataFrame, params: FindingSplitParams) -> pd.DataFrame:
    """Assign every patient to train, val or test, stratified by its rarest positive finding.

    Policy: each patient's stratum is the finding, among its positive ones, with the fewest
    positive patients in the cohort (ties by column order), or "none" when it has no finding.
    Within the cohort, test then val get their share of every stratum (largest-remainder
    rounding, so the totals are exact and ties are broken by the seeded generator), the patients
    of each stratum drawn at random; train gets the rest. Rare findings are thus spread over the
    splits in proportion, as far as whole patients allow (iterative stratification would balance
    co-occurring findings more closely, at the cost of an order-dependent greedy pass). Same seed
    and units, in any row order, give the same output. `units`: `patient_id` and one 0/1 column
    per finding (`finding_*`), one row per patient; `tumor` in the output is "any finding".
    """
    findings = finding_columns(units)
    if not findings:
        raise SplitError(f"units have no finding_* column ({list(units.columns)})")
    labels = _clean_units(units.assign(tumor=units[findings].max(axis=1)), None)
    positives = units.set_index(units["patient_id"].astype(str))[findings].loc[labels.index]
    n = len(labels)
    sizes = {name: _patients_for(name, getattr(params, name), n) for name in ("test", "val")}
    if sizes["test"] + sizes["val"] >= n:
        raise SplitError(
            f"test ({sizes['test']}) and val ({sizes['val']}) patients leave none of {n} to "
            "train; lower splits.test / splits.val"
        )
    rng = np.random.default_rng(params.seed)
    stratum = _rarest_finding(positives)
    split = pd.Series("train", index=labels.index, dtype=object)
    strata = stratum.value_counts().sort_index()
    for name in ("test", "val"):
        free = stratum[split == "train"]
        capacity = free.value_counts().reindex(strata.index, fill_value=0)
        quota = _largest_remainder(strata * sizes[name] / n, capacity, sizes[name], rng)
        for group, count in quota.items():
            members = np.sort(free.index[free == group].to_numpy())
            split[rng.choice(members, size=count, replace=False)] = name
    table = pd.DataFrame(
        {
            "patient_id": labels.index,
            "split": split.to_numpy(),
            "tumor": labels["tumor"].to_numpy(),
            "cv_fold": pd.array([pd.NA] * n, dtype="Int64"),
        }
    )
    return table.sort_values(["split", "patient_id"], ignore_index=True)


def _patients_for(name: str, size: float | int, n: int) -> int:
    count = size if isinstance(size, int) else _round_half_up(size * n)
    if count < 1:
        raise SplitError(
            f"{name} would get no patient: fraction {size} of {n} rounds to 0; raise splits.{name}"
        )
    return count


def _rarest_finding(positives: pd.DataFrame) -> pd.Series:
    """Each patient's positive finding with the fewest positive patients, or "none"."""
    counts = positives.sum()
    order = sorted(positives.columns, key=lambda column: counts[column])  # stable: ties in order
    stratum = pd.Series("none", index=positives.index, dtype=object)
    for column in reversed(order):  # the rarest is written last and wins
        stratum[positives[column] == 1] = column
    return stratum


def _largest_remainder(
    ideal: pd.Series, capacity: pd.Series, total: int, rng: np.random.Generator
) -> pd.Series:
    """Whole patients per stratum summing to `total`, each within its capacity: the floors of
    the ideal shares, then one more to the largest remainders (ties in random order)."""
    quota = np.minimum(np.floor(ideal), capacity).astype(int)
    remainder = (ideal - np.floor(ideal)).to_numpy()
    order = np.lexsort((rng.permutation(len(ideal)), -remainder))
    while quota.sum() < total:
        open_ = [i for i in order if quota.iloc[i] < capacity.iloc[i]]
        for i in open_[: total - quota.sum()]:
            quota.iloc[i] += 1
    return quota[quota > 0]


def finding_split_summary(
    units: pd.DataFrame, splits: pd.DataFrame, min_positive_patients: int
) -> pd.DataFrame:
    """Positive and negative patients per finding and split, with a status that names the
    findings too rare in val or test to be measured there."""
    findings = finding_columns(units)
    joined = units.assign(patient_id=units["patient_id"].astype(str)).merge(
        splits[["patient_id", "split"]].astype({"patient_id": str}), on="patient_id"
    )
    rows = []
    for name in ("train", "val", "test"):
        members = joined[joined["split"] == name]
        for column in findings:
            positive = int(members[column].sum())
            status = "ok"
            if name != "train" and positive < min_positive_patients:
                status = f"too few positive patients ({positive} < {min_positive_patients})"
            elif positive == 0:
                status = "no positive patient"
            rows.append(
                {
                    "finding": column,
                    "split": name,
                    "patients": len(members),
                    "positive_patients": positive,
                    "negative_patients": len(members) - positive,
                    "status": status,
                }
            )
    return pd.DataFrame(rows)
