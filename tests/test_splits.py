"""Patient-level splits: the documented policy, its error paths, invariants on random cohorts."""

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from medvit.splits import (
    FindingSplitParams,
    SplitError,
    SplitParams,
    check_disjoint,
    check_feasible,
    finding_split_summary,
    make_finding_splits,
    make_splits,
    slices_in,
    split_counts,
    with_fingerprint,
)


def cohort(n_tumor: int, n_normal: int, folds: int | None = None) -> pd.DataFrame:
    """Units with ids that sort differently from their label order, optionally with a fold."""
    ids = [f"P{i:03d}" for i in range(n_tumor + n_normal)]
    labels = [1] * n_tumor + [0] * n_normal
    units = pd.DataFrame({"patient_id": ids, "tumor": labels})
    if folds is not None:
        units["fold"] = [i % folds + 1 for i in range(len(units))]
    return units.sample(frac=1.0, random_state=0, ignore_index=True)


def params(**overrides: object) -> SplitParams:
    """Build params the way Kedro does, from a plain dict."""
    return SplitParams.model_validate(overrides)


def counts_of(splits: pd.DataFrame, name: str) -> tuple[int, int]:
    """(tumour, normal) patients in one split."""
    tumor = splits.loc[splits["split"] == name, "tumor"]
    return int(tumor.sum()), len(tumor) - int(tumor.sum())


def ids_in(splits: pd.DataFrame, name: str) -> set[str]:
    return set(splits.loc[splits["split"] == name, "patient_id"])


NBML = cohort(30, 51)


def test_nbml_default_counts_and_exact_ratio():
    splits = make_splits(NBML, SplitParams())
    assert counts_of(splits, "test") == (3, 27)
    assert counts_of(splits, "val") == (2, 18)
    assert counts_of(splits, "train") == (25, 6)
    assert counts_of(splits, "unused") == (0, 0)
    assert split_counts(splits) == {
        "train/patients": 31,
        "train/tumor": 25,
        "train/normal": 6,
        "val/patients": 20,
        "val/tumor": 2,
        "val/normal": 18,
        "test/patients": 30,
        "test/tumor": 3,
        "test/normal": 27,
        "unused/patients": 0,
        "unused/tumor": 0,
        "unused/normal": 0,
    }


def test_output_shape_and_order():
    splits = make_splits(NBML, SplitParams())
    assert list(splits.columns) == ["patient_id", "split", "tumor", "cv_fold"]
    assert len(splits) == len(NBML)
    assert splits["cv_fold"].dtype == "Int64"
    assert splits["cv_fold"].isna().all()
    keys = list(zip(splits["split"], splits["patient_id"], strict=True))
    assert keys == sorted(keys)
    labels = NBML.set_index("patient_id")["tumor"]
    assert (splits.set_index("patient_id")["tumor"] == labels.loc[splits["patient_id"]]).all()


def test_no_patient_overlap():
    splits = make_splits(NBML, SplitParams())
    assert splits["patient_id"].is_unique
    assert set(splits["patient_id"]) == set(NBML["patient_id"])
    check_disjoint(splits, NBML[["patient_id"]])


def test_deterministic_and_row_order_invariant():
    first = make_splits(NBML, SplitParams())
    again = make_splits(NBML, SplitParams())
    shuffled = make_splits(NBML.sample(frac=1.0, random_state=7), SplitParams())
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, shuffled)


def test_seed_changes_the_draw():
    first = make_splits(NBML, params(seed=1))
    second = make_splits(NBML, params(seed=2))
    assert ids_in(first, "test") != ids_in(second, "test")
    assert counts_of(first, "test") == counts_of(second, "test")


def test_tumor_fraction_rounds_and_keeps_ratio():
    splits = make_splits(
        NBML,
        params(
            test={"tumor_fraction": 0.1, "ratio": {"normal": 3, "tumor": 1}},
            val={"tumor_fraction": 0.01},
        ),
    )
    assert counts_of(splits, "test") == (3, 9)
    assert counts_of(splits, "val") == (1, 9)


def test_non_integral_ratio_rounds_half_up():
    splits = make_splits(
        NBML, params(test={"tumor_patients": 3, "ratio": {"normal": 3, "tumor": 2}})
    )
    assert counts_of(splits, "test") == (3, 5)


def test_natural_prevalence_fraction():
    splits = make_splits(
        NBML, params(test={"ratio": None, "fraction": 0.2}, val={"ratio": None, "fraction": 0.1})
    )
    assert counts_of(splits, "test") == (6, 10)
    assert counts_of(splits, "val") == (3, 5)
    assert counts_of(splits, "train") == (21, 36)


def test_fixed_fold_goes_to_test_and_val_is_drawn_from_the_rest():
    units = cohort(30, 51, folds=5)
    splits = make_splits(units, params(fixed={"column": "fold", "test": ["4"]}))
    fold_four = set(units.loc[units["fold"] == 4, "patient_id"])
    assert ids_in(splits, "test") == fold_four
    assert counts_of(splits, "val") == (2, 18)
    assert not ids_in(splits, "val") & fold_four


def test_fixed_values_match_as_strings_including_float_columns():
    units = cohort(30, 51, folds=5)
    units["fold"] = units["fold"].astype(float)
    splits = make_splits(units, params(fixed={"column": "fold", "test": [4], "val": ["5"]}))
    assert ids_in(splits, "test") == set(units.loc[units["fold"] == 4, "patient_id"])
    assert ids_in(splits, "val") == set(units.loc[units["fold"] == 5, "patient_id"])


def test_train_ratio_sends_excess_to_unused():
    splits = make_splits(NBML, params(train_ratio={"normal": 1, "tumor": 1}))
    assert counts_of(splits, "train") == (6, 6)
    assert counts_of(splits, "unused") == (19, 0)
    assert len(splits) == len(NBML)


def test_train_ratio_subsamples_normals_when_they_are_in_excess():
    splits = make_splits(cohort(30, 200), params(train_ratio={"normal": 2, "tumor": 1}))
    assert counts_of(splits, "train") == (25, 50)
    assert counts_of(splits, "unused") == (0, 200 - 45 - 50)


def test_cross_validation_folds_are_disjoint_and_stratified():
    units = cohort(40, 160)
    splits = make_splits(units, params(cross_validation={"n_folds": 5, "fold": 2}))
    pool = splits[splits["split"].isin(["train", "val"])]
    assert pool["cv_fold"].notna().all()
    assert splits.loc[splits["split"] == "test", "cv_fold"].isna().all()
    assert set(pool.loc[pool["split"] == "val", "cv_fold"]) == {2}
    assert set(pool.loc[pool["split"] == "train", "cv_fold"]) == {0, 1, 3, 4}
    per_fold = pool.groupby("cv_fold")["tumor"].agg(["sum", "count"])
    tumour = per_fold["sum"]
    normal = per_fold["count"] - per_fold["sum"]
    assert tumour.max() - tumour.min() <= 1 and tumour.min() >= 1
    assert normal.max() - normal.min() <= 1 and normal.min() >= 1
    assert counts_of(splits, "test") == (3, 27)


def test_cross_validation_folds_partition_the_pool_across_fold_choices():
    vals = [
        ids_in(make_splits(NBML, params(cross_validation={"n_folds": 3, "fold": k})), "val")
        for k in range(3)
    ]
    assert not (vals[0] & vals[1] or vals[0] & vals[2] or vals[1] & vals[2])
    default = make_splits(NBML, SplitParams())
    assert vals[0] | vals[1] | vals[2] == ids_in(default, "train") | ids_in(default, "val")


@pytest.mark.parametrize(
    ("units", "config", "message"),
    [
        (
            cohort(30, 20),
            {},
            "test needs 27 normal patients at 9:1 for 3 tumour patients, "
            "but only 20 normal patients remain",
        ),
        (
            cohort(4, 100),
            {},
            "val needs 2 tumour patients, but only 1 tumour patients remain",
        ),
        (
            cohort(0, 100),
            {"test": {"tumor_fraction": 0.2}},
            "test needs 1 tumour patients (tumor_fraction 0.2 of 0), "
            "but only 0 tumour patients remain",
        ),
        (
            cohort(30, 51),
            {"test": {"ratio": None, "fraction": 0.01}},
            "test would get no tumour patient: fraction 0.01 of 30 rounds to 0",
        ),
        (
            cohort(30, 51),
            {"test": {"tumor_patients": 1, "ratio": {"normal": 1, "tumor": 3}}},
            "test would get no normal patient: 1 tumour patient(s) at 1:3",
        ),
        (cohort(5, 50), {}, "train would get no tumour patient (0 tumour, 5 normal)"),
        (cohort(10, 45), {}, "train would get no normal patient (5 tumour, 0 normal)"),
        (cohort(5, 45), {}, "train would be empty"),
        (
            cohort(30, 51),
            {"train_ratio": {"normal": 50, "tumor": 1}},
            "train would get no tumour patient (0 tumour, 6 normal)",
        ),
        (
            cohort(30, 31),
            {"cross_validation": {"n_folds": 5, "fold": 0}},
            "cross_validation with 5 folds needs at least 5 normal patients "
            "in the train pool so every fold has one, but it has 4",
        ),
    ],
)
def test_impossible_requests_fail_with_numbers(units, config, message):
    with pytest.raises(SplitError, match=re.escape(message)):
        make_splits(units, params(**config))


def test_fixed_errors():
    units = cohort(30, 51, folds=5)
    with pytest.raises(SplitError, match=r"fixed\.column 'site' is not a column of units"):
        make_splits(units, params(fixed={"column": "site", "test": [1]}))
    with pytest.raises(
        SplitError, match=r"fixed\.test values \[9\] match no unit in column 'fold'"
    ):
        make_splits(units, params(fixed={"column": "fold", "test": [9]}))
    units["fold"] = np.where(units["tumor"] == 1, 1, 2)
    with pytest.raises(SplitError, match=r"test would get no normal patient \(30 tumour, 0 normal"):
        make_splits(units, params(fixed={"column": "fold", "test": [1]}))


@pytest.mark.parametrize(
    ("units", "message"),
    [
        (pd.DataFrame({"patient_id": ["a"]}), r"units lack required column\(s\) \['tumor'\]"),
        (
            pd.DataFrame({"patient_id": ["a", "a", "b"], "tumor": [1, 1, 0]}),
            r"1 duplicate patient_id\(s\), e.g. \['a'\]",
        ),
        (
            pd.DataFrame({"patient_id": ["a", "b", "c"], "tumor": [1, 2, None]}),
            r"tumor must be 0 or 1; found \['2.0', 'nan'\] in 2 unit\(s\)",
        ),
        (
            pd.DataFrame({"patient_id": ["a", None], "tumor": [1, 0]}),
            r"1 unit\(s\) have no patient_id",
        ),
    ],
)
def test_bad_units_are_rejected(units, message):
    with pytest.raises(SplitError, match=message):
        make_splits(units, SplitParams())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"tset": {}}, "Extra inputs are not permitted"),
        ({"test": {"ratio": {"normal": 9, "tumour": 1}}}, "Extra inputs are not permitted"),
        ({"test": {"tumor_patients": 3, "tumor_fraction": 0.1}}, "exactly one of"),
        ({"test": {"ratio": {"normal": 4}}}, "exactly one of"),
        ({"test": {"ratio": None}}, "needs fraction"),
        ({"test": {"ratio": None, "tumor_patients": 2}}, "need a ratio"),
        ({"test": {"tumor_patients": 2, "fraction": 0.1}}, "fraction is used only with ratio"),
        ({"test": {"tumor_fraction": 1.5}}, "less than 1"),
        ({"test": {"tumor_patients": 0}}, "greater than 0"),
        ({"cross_validation": {"n_folds": 1, "fold": 0}}, "greater than or equal to 2"),
        ({"cross_validation": {"n_folds": 5, "fold": 5}}, r"fold must be in \[0, 5\)"),
        ({"fixed": {"column": "fold"}}, "fixed lists no values"),
        ({"fixed": {"column": "fold", "test": [1], "val": ["1"]}}, "listed for both"),
        (
            {
                "fixed": {"column": "fold", "val": [1]},
                "cross_validation": {"n_folds": 3, "fold": 0},
            },
            "drop fixed.val",
        ),
    ],
)
def test_params_validation(config, message):
    with pytest.raises(ValidationError, match=message):
        SplitParams.model_validate(config)


def test_check_disjoint_catches_leaks_and_orphans():
    splits = make_splits(NBML, SplitParams())
    slices = splits[["patient_id", "split"]].loc[splits.index.repeat(3)]
    check_disjoint(splits, slices)

    leaked = slices.copy()
    leaked["split"] = leaked["split"].where(leaked.index != leaked.index[0], "unused")
    with pytest.raises(SplitError, match=r"1 patient\(s\) appear in more than one split"):
        check_disjoint(splits, leaked)

    doubled = pd.concat([splits, splits.head(1).assign(split="unused")])
    with pytest.raises(SplitError, match="more than one split"):
        check_disjoint(doubled, slices[["patient_id"]])

    orphan = pd.concat([slices, pd.DataFrame({"patient_id": ["X999"], "split": ["train"]})])
    with pytest.raises(SplitError, match=r"1 patient\(s\) in the slice table have no split"):
        check_disjoint(splits, orphan)


def _slices_of(units: pd.DataFrame) -> pd.DataFrame:
    """Two slices per unit, boxes as lists, in patient order."""
    slices = units.loc[units.index.repeat(2), ["patient_id", "tumor"]].sort_values("patient_id")
    return slices.assign(
        slice_index=[0, 1] * len(units), boxes=[[[1.0, 2.0, 3.0, 4.0]]] * len(slices)
    ).reset_index(drop=True)


UNITS = cohort(10, 60)
SLICES = _slices_of(UNITS)


def test_slices_in_keeps_the_modelled_splits_and_drops_unused_patients():
    units, slices = UNITS, SLICES
    splits = with_fingerprint(make_splits(units, params(train_ratio={"normal": 1})), slices)
    assert splits["slice_table_fingerprint"].nunique() == 1
    unused = ids_in(splits, "unused")
    assert unused

    table = slices_in(slices, splits)
    assert set(table["patient_id"]) == set(slices["patient_id"]) - unused
    kept = slices[~slices["patient_id"].isin(unused)].reset_index(drop=True)
    pd.testing.assert_frame_equal(table.drop(columns="split"), kept)
    expected = table["patient_id"].map(splits.set_index("patient_id")["split"])
    assert (table["split"] == expected).all()
    assert set(slices_in(slices, splits, ("test",))["split"]) == {"test"}


def test_slices_in_refuses_splits_of_another_slice_table():
    units, slices = UNITS, SLICES
    splits = with_fingerprint(make_splits(units, SplitParams()), slices)
    relabelled = slices.assign(tumor=1 - slices["tumor"])
    old, new = splits["slice_table_fingerprint"].iloc[0], with_fingerprint(splits, relabelled)
    message = (
        f"splits.parquet was built from slice table {old}, but slices.parquet is "
        f"{new['slice_table_fingerprint'].iloc[0]}: rerun data_preparation "
        r"\(kedro run --pipelines=data_preparation\)"
    )
    with pytest.raises(SplitError, match=message):
        slices_in(relabelled, splits)
    with pytest.raises(SplitError, match="has no slice_table_fingerprint column"):
        slices_in(slices, splits.drop(columns="slice_table_fingerprint"))


def test_slices_in_fails_on_patients_without_a_split_instead_of_dropping_them():
    units, slices = UNITS, SLICES
    splits = make_splits(units, SplitParams())
    missing = sorted(ids_in(splits, "train"))[:3]
    partial = with_fingerprint(splits[~splits["patient_id"].isin(missing)], slices)
    message = f"3 patient(s) in the slice table have no split, e.g. {missing}"
    with pytest.raises(SplitError, match=re.escape(message)):
        slices_in(slices, partial)


ratios = st.builds(dict, normal=st.integers(1, 12), tumor=st.integers(1, 3))
held_out = st.one_of(
    st.builds(dict, tumor_patients=st.integers(1, 5), ratio=ratios),
    st.builds(dict, tumor_fraction=st.floats(0.01, 0.5), ratio=ratios),
    st.builds(dict, ratio=st.none(), fraction=st.floats(0.02, 0.4)),
)
configs = st.fixed_dictionaries(
    {"seed": st.integers(0, 2**32), "test": held_out, "val": held_out},
    optional={
        "train_ratio": ratios,
        "cross_validation": st.integers(2, 5).flatmap(
            lambda n: st.builds(dict, n_folds=st.just(n), fold=st.integers(0, n - 1))
        ),
    },
)


def expected_normal(spec: dict, tumour: int) -> int | None:
    """Normal patients the policy promises for `tumour` drawn tumour patients at the ratio."""
    ratio = spec.get("ratio")
    if ratio is None:
        return None
    exact = tumour * ratio["normal"] / ratio["tumor"]
    return int(np.floor(exact + 0.5))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_tumor=st.integers(0, 40), n_normal=st.integers(0, 150), config=configs)
def test_random_cohorts_split_cleanly_or_fail_with_split_error(n_tumor, n_normal, config):
    units = cohort(n_tumor, n_normal)
    try:
        splits = make_splits(units, params(**config))
    except SplitError:
        return
    assert sorted(splits["patient_id"]) == sorted(units["patient_id"])
    assert set(splits["split"]) <= {"train", "val", "test", "unused"}
    check_disjoint(splits, units[["patient_id"]])
    assert min(counts_of(splits, "train")) >= 1
    drawn = {"test": config["test"]}
    if "cross_validation" not in config:
        drawn["val"] = config["val"]
    for name, spec in drawn.items():
        tumour, normal = counts_of(splits, name)
        assert tumour >= 1 and normal >= 1
        if "tumor_patients" in spec:
            assert tumour == spec["tumor_patients"]
        if spec.get("ratio") is not None:
            assert normal == expected_normal(spec, tumour)
    if "cross_validation" in config:
        pool = splits[splits["split"].isin(["train", "val"])]
        assert pool["cv_fold"].notna().all()
        assert pool.groupby("cv_fold")["tumor"].nunique().eq(2).all()
    assert make_splits(units.iloc[::-1], params(**config)).equals(splits)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_tumor=st.integers(0, 40), n_normal=st.integers(0, 150), config=configs)
def test_counts_alone_tell_whether_a_cohort_can_be_split(n_tumor, n_normal, config):
    """The pre-ingestion check fails exactly when the split would, with the same message."""
    try:
        make_splits(cohort(n_tumor, n_normal), params(**config))
    except SplitError as error:
        with pytest.raises(SplitError) as early:
            check_feasible(n_tumor, n_normal, params(**config))
        assert str(early.value) == str(error)
    else:
        check_feasible(n_tumor, n_normal, params(**config))


def test_a_tumour_only_cohort_is_told_what_it_holds_and_what_to_change():
    with pytest.raises(SplitError) as failure:
        check_feasible(30, 0, SplitParams())
    assert str(failure.value) == (
        "test needs 27 normal patients at 9:1 for 3 tumour patients, but only 0 normal patients "
        "remain; change splits.test.ratio or splits.test.tumor_patients, or add a source of "
        "normal patients. The cohort holds 30 tumour and 0 normal patients."
    )
    shortage = "only 1 tumour patients remain; change splits.val.tumor_patients, or add a source"
    with pytest.raises(SplitError, match=re.escape(shortage)):
        check_feasible(4, 100, SplitParams())  # test takes 3 of the 4 tumour patients


def test_fixed_assignments_wait_for_the_real_units():
    fixed = params(fixed={"column": "fold", "test": [1]})
    check_feasible(0, 0, fixed)  # which units hold fold 1 is not known from counts
    with pytest.raises(SplitError, match="match no unit"):
        make_splits(cohort(0, 0, folds=2), fixed)


def public_cohort() -> pd.DataFrame:
    """figshare folds (tumour) and Br35H near-copy groups of both labels, as units."""
    figshare = [(f"fig{fold}", 1, fold, "figshare") for fold in (1, 2, 3, 4)]
    tumour = [(f"bt{i:02d}", 1, i, "br35h_tumor") for i in range(20)]
    normal = [(f"bn{i:02d}", 0, 100 + i, "br35h_no_tumor") for i in range(30)]
    return pd.DataFrame(
        figshare + tumour + normal, columns=["patient_id", "tumor", "group", "source"]
    ).sample(frac=1.0, random_state=1, ignore_index=True)


PUBLIC = {
    "seed": 3,
    "test": {"ratio": None, "fraction": 0.1},
    "fixed": {
        "column": "group",
        "sources": {
            "figshare": {"train": [1, 2, 3], "val": [4]},
            "br35h_tumor": {"val": 0.3},
            "br35h_no_tumor": {"val": 0.3},
        },
    },
}


def test_sources_pin_folds_and_draw_a_share_of_groups():
    units = public_cohort()
    splits = make_splits(units, params(**PUBLIC))
    source = splits["patient_id"].map(units.set_index("patient_id")["source"])
    val = splits[splits["split"] == "val"]
    assert ids_in(splits, "train") >= {"fig1", "fig2", "fig3"} and "fig4" in ids_in(splits, "val")
    # 30% of each Br35H source's groups per label: 6 of 20 tumour, 9 of 30 normal
    assert val.groupby(source[val.index]).size().to_dict() == {
        "br35h_no_tumor": 9,
        "br35h_tumor": 6,
        "figshare": 1,
    }
    # test is drawn from what the rules left (Br35H's other 70%), at 10% of the cohort per label
    assert counts_of(splits, "test") == (2, 3)
    assert not ids_in(splits, "test") & {"fig1", "fig2", "fig3", "fig4"}
    assert len(splits) == len(units)
    again = make_splits(units.sample(frac=1.0, random_state=5), params(**PUBLIC))
    assert again.equals(splits)
    other = make_splits(units, params(**{**PUBLIC, "seed": 4}))
    assert ids_in(other, "val") != ids_in(splits, "val")


def test_units_without_a_group_are_addressed_by_null_not_by_nan():
    units = cohort(10, 30)
    units["group"] = [None if i % 4 == 0 else f"g{i}" for i in range(len(units))]
    units.loc[units["group"].isna(), "group"] = np.nan  # as a parquet round trip gives it back
    no_group = set(units.loc[units["group"].isna(), "patient_id"])
    splits = make_splits(
        units, params(val={"ratio": None, "fraction": 0.2}, fixed={"test": [None]})
    )
    assert ids_in(splits, "test") == no_group
    with pytest.raises(SplitError, match=r"fixed\.test values \['nan'\] match no unit"):
        make_splits(units, params(fixed={"test": ["nan"]}))


def test_source_rule_errors():
    units = public_cohort()
    with pytest.raises(SplitError, match=r"source 'kaggle', which has no unit; sources: \['br35h"):
        make_splits(units, params(fixed={"sources": {"kaggle": {"val": 0.5}}}))
    with pytest.raises(SplitError, match="needs a source column"):
        make_splits(units.drop(columns="source"), params(**PUBLIC))
    with pytest.raises(SplitError, match=r"fixed\.sources\.figshare\.val values \[7\] match no"):
        make_splits(units, params(fixed={"sources": {"figshare": {"val": [7]}}}))
    shortage = {"sources": {"br35h_no_tumor": {"val": [100], "test": 0.99}}}
    with pytest.raises(SplitError, match=r"needs 30 normal patients \(fixed\.sources"):
        make_splits(units, params(fixed=shortage))
    with pytest.raises(SplitError, match="val would get no normal patient"):
        make_splits(units, params(fixed={"sources": {"figshare": {"val": [4]}}}))


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ({"sources": {"figshare": {}}}, "fixed.sources.figshare assigns nothing"),
        ({"sources": {"figshare": {"train": [1], "val": ["1"]}}}, "listed for both train and val"),
        ({"sources": {"figshare": {"val": 1.5}}}, "val"),
    ],
)
def test_source_rule_validation(fixed, message):
    with pytest.raises(ValidationError, match=message):
        params(fixed=fixed)
    with pytest.raises(ValidationError, match=r"drop fixed\.val and the val of fixed\.sources"):
        params(fixed={"sources": {"a": {"val": 0.2}}}, cross_validation={"n_folds": 3, "fold": 0})


def multilabel_cohort(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Patients with a common, a rarer and a rare finding that co-occur at random."""
    rng = np.random.default_rng(seed)
    units = pd.DataFrame(
        {
            "patient_id": [f"P{i:04d}" for i in range(n)],
            "finding_common": (rng.uniform(size=n) < 0.4).astype("int8"),
            "finding_rarer": (rng.uniform(size=n) < 0.15).astype("int8"),
            "finding_rare": (rng.uniform(size=n) < 0.05).astype("int8"),
        }
    )
    return units.sample(frac=1.0, random_state=1, ignore_index=True)


def test_finding_splits_are_patient_disjoint_sized_and_stratified():
    units = multilabel_cohort()
    splits = make_finding_splits(units, FindingSplitParams(val=0.15, test=40))
    assert list(splits.columns) == ["patient_id", "split", "tumor", "cv_fold"]
    assert splits["patient_id"].is_unique and set(splits["patient_id"]) == set(units.patient_id)
    assert splits["split"].value_counts().to_dict() == {"train": 130, "test": 40, "val": 30}
    joined = units.merge(splits, on="patient_id")
    assert (joined["tumor"] == joined.filter(like="finding_").max(axis=1)).all()
    positives = joined.groupby("split")[["finding_common", "finding_rarer", "finding_rare"]].sum()
    totals = units[positives.columns].sum()
    for split, share in (("test", 40 / 200), ("val", 30 / 200)):
        for finding in positives.columns:
            # within one patient of the proportional share, rare finding included
            assert abs(positives.loc[split, finding] - share * totals[finding]) <= 1.5, (
                split,
                finding,
            )


def test_finding_splits_ignore_row_order_and_follow_the_seed():
    units = multilabel_cohort()
    first = make_finding_splits(units, FindingSplitParams())
    shuffled = make_finding_splits(units.sample(frac=1.0, random_state=7), FindingSplitParams())
    pd.testing.assert_frame_equal(first, shuffled)
    other = make_finding_splits(units, FindingSplitParams(seed=1))
    assert not first["split"].equals(other.set_index("patient_id").loc[first.patient_id].split)


def test_finding_split_summary_names_findings_too_rare_to_measure():
    units = multilabel_cohort(n=60)
    splits = make_finding_splits(units, FindingSplitParams(val=0.2, test=0.2))
    summary = finding_split_summary(units, splits, min_positive_patients=3)
    assert set(summary["split"]) == {"train", "val", "test"}
    rare = summary[(summary["finding"] == "finding_rare") & (summary["split"] != "train")]
    assert rare["status"].str.startswith("too few positive patients").all()
    common = summary[summary["finding"] == "finding_common"]
    assert (common["status"] == "ok").all()
    assert (common["positive_patients"] + common["negative_patients"] == common["patients"]).all()
    assert common["positive_patients"].sum() == units["finding_common"].sum()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"val": 0.5, "test": 100}, "leave none of 200 to train"),
        ({"val": 0.001}, "val would get no patient"),
    ],
)
def test_impossible_finding_split_requests_fail_clearly(request_, message):
    with pytest.raises(SplitError, match=message):
        make_finding_splits(multilabel_cohort(), FindingSplitParams(**request_))
