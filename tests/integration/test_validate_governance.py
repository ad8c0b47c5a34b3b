"""Calibration-data governance on the real datasets: GX suite + policy checks + Evidently.

Every failure must name the check that caught it, so each test asserts the exact set of failed
check names where that is deterministic. Frames are small (about 2,500 rows) and the reference
profiles are built once per module; GX and Evidently run for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.data.datasets import ADULT_SENSITIVE, load_adult, load_rotten_tomatoes, read_table
from quantgate.errors import DataError, ValidationFailed
from quantgate.validate import (
    CalibrationPolicy,
    CalibrationReport,
    DataProfile,
    govern_calibration,
    profile_frame,
    sample_calibration,
)
from quantgate.validate.governance import expectations_file_for
from quantgate.validate.report import (
    ARTIFACT_DRIFT_HTML,
    ARTIFACT_REPORT_JSON,
    ARTIFACT_VALIDATION_HTML,
    CHECK_DUPLICATES,
    CHECK_OVERLAP,
    CHECK_REPRESENTATIVE,
    report_from_json,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADULT_FILE = expectations_file_for("adult-income", ROOT)
POLICY = CalibrationPolicy()


class Adult:
    """Reference = 10,000 rows of adult.data (enough for a stable profile, and it keeps each
    Evidently run near 2 s); evaluation and calibration are disjoint parts of adult.test."""

    def __init__(self) -> None:
        train, test = load_adult()
        train = train.sample(10_000, random_state=0).reset_index(drop=True)
        self.reference = train
        self.evaluation = test.sample(4000, random_state=1)
        pool = test.drop(self.evaluation.index)
        features = [c for c in test.columns if c != "income"]
        self.clean = sample_calibration(
            pool, 2500, sensitive_attributes=ADULT_SENSITIVE, exclude=self.evaluation, feature_columns=features, seed=2
        )
        self.profile = profile_frame(train, label="income")


@pytest.fixture(scope="module")
def adult() -> Adult:
    return Adult()


@pytest.fixture()
def clean(adult: Adult) -> pd.DataFrame:
    """A fresh copy per test, so one test's corruption never leaks into another."""
    return adult.clean.copy()


def govern(adult: Adult, calibration: pd.DataFrame, **kwargs: object) -> CalibrationReport:
    args: dict[str, object] = {
        "evaluation": adult.evaluation,
        "label": "income",
        "sensitive_attributes": ADULT_SENSITIVE,
        "text_columns": [],
        "policy": POLICY,
        "model_name": "adult-income",
        "profile": adult.profile,
        "render_html": False,
    }
    reference = kwargs.pop("reference", adult.reference)
    args.update(kwargs)
    return govern_calibration(calibration, reference, **args)  # type: ignore[arg-type]


def failed(report: CalibrationReport) -> set[str]:
    return {c.name for c in report.failed()}


def check(report: CalibrationReport, name: str):  # type: ignore[no-untyped-def]
    return next(c for c in report.checks if c.name == name)


# --------------------------------------------------------------------------- clean data


def test_clean_adult_calibration_passes_and_writes_artifacts(adult: Adult, clean: pd.DataFrame, tmp_path: Path) -> None:
    report = govern(adult, clean, render_html=True, expectations_file=ADULT_FILE)
    assert report.passed, report.summary()
    names = {c.name for c in report.checks}
    for expected in (
        "row count",
        "columns match",
        "age: within range",
        "sex: rows per group",
        "race: rows per group",
        CHECK_OVERLAP,
        CHECK_DUPLICATES,
        "income: label balance",
        CHECK_REPRESENTATIVE,
    ):
        assert expected in names
    assert not any(c.not_run for c in report.checks)
    assert all(c.status == "passed" for c in report.checks)
    assert report.expectations_file == str(ADULT_FILE) and report.profile_source == "stored"
    assert "adult-income.yaml" in check(report, "age: within range").expected
    assert report.drift is not None and report.drift["n_columns"] == 15
    assert {"profile", "gx", "policy", "representativeness", "total"} <= set(report.timings_s)
    assert report.metrics()["calibration_drifted_share"] == report.drift["drifted_share"]

    paths = report.write_artifacts(tmp_path / "validation")
    assert set(paths) == {ARTIFACT_VALIDATION_HTML, ARTIFACT_DRIFT_HTML, ARTIFACT_REPORT_JSON}
    page = paths[ARTIFACT_VALIDATION_HTML].read_text(encoding="utf-8")
    assert "quantgate calibration governance (adult-income): PASSED" in page
    assert "Expectation Suite" in page  # GX Data Docs below our table
    assert page.count('id="quantgate-checks"') == 1  # one table, with every check
    assert "race: rows per group" in page and "Representativeness: 0 of 15" in page
    drift_page = paths[ARTIFACT_DRIFT_HTML].read_text(encoding="utf-8")
    assert "root_metric" in drift_page and "hours_per_week" in drift_page  # Evidently's report
    data = json.loads(paths[ARTIFACT_REPORT_JSON].read_text(encoding="utf-8"))
    assert data["passed"] is True and "data_docs_html" not in data["gx"]
    assert report_from_json(paths[ARTIFACT_REPORT_JSON].read_text(encoding="utf-8")).checks == report.checks
    report.raise_if_failed()


def test_no_evaluation_data_lists_the_overlap_check_as_not_run(adult: Adult, clean: pd.DataFrame) -> None:
    """Optional: with no evaluation split there is nothing to leak into; listed, never counted as passed."""
    report = govern(adult, clean, evaluation=None)
    assert report.passed, report.summary()
    overlap = check(report, CHECK_OVERLAP)
    assert overlap.status == "not_run" and not overlap.passed and not overlap.required
    assert overlap.observed == "not run: no evaluation data given"
    assert "checks that ran passed" in report.summary() and "1 not run: no overlap" in report.summary()


def test_evaluation_data_that_cannot_be_compared_fails_the_overlap_check(adult: Adult, clean: pd.DataFrame) -> None:
    """Required: an evaluation split with no shared column leaves leakage unmeasured, so the set is refused."""
    evaluation = adult.evaluation.rename(columns=lambda c: f"other_{c}")
    report = govern(adult, clean, evaluation=evaluation)
    assert failed(report) == {CHECK_OVERLAP}
    assert check(report, CHECK_OVERLAP).observed == "could not run: no feature column shared with the evaluation data"


def test_label_balance_switched_off_is_listed_as_not_run(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean, policy=CalibrationPolicy(label_share_bounds=None))
    assert report.passed, report.summary()
    label = check(report, "income: label balance")
    assert label.status == "not_run" and not label.required
    assert label.observed == "not run: label_share_bounds is off in the policy"


# --------------------------------------------------------------------------- schema (GX suite)


def test_missing_column_fails(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean.drop(columns=["education"]))
    # representativeness cannot say the set is representative without the column
    assert failed(report) == {"columns match", CHECK_REPRESENTATIVE}
    assert "missing: education" in check(report, "columns match").observed
    assert report.drift is not None
    assert report.drift["not_run_columns"] == {"education": "missing from the calibration data"}
    assert check(report, CHECK_REPRESENTATIVE).observed.startswith("could not run: 1 of 15 columns not compared")
    # the column's own checks are listed as not run, deferring to "columns match"
    in_set = check(report, "education: values in set")
    assert in_set.status == "not_run" and in_set.blocked_by == "columns match"
    assert not report.passed


def test_extra_column_fails(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean.assign(zip_code="12345"))
    assert failed(report) == {"columns match"}
    assert "unexpected: zip_code" in check(report, "columns match").observed


def test_renamed_sensitive_column_fails_schema_and_group_checks(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean.rename(columns={"sex": "gender"}))
    assert failed(report) == {"columns match", "sex: rows per group", CHECK_REPRESENTATIVE}
    assert check(report, "sex: rows per group").observed == "column missing from the calibration data"
    with pytest.raises(ValidationFailed, match="columns match"):
        report.raise_if_failed()


def test_wrong_dtype_fails(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean.assign(age=clean["age"].astype(str)))
    assert failed(report) == {"age: numeric type", CHECK_REPRESENTATIVE}
    assert report.drift is not None
    assert report.drift["not_run_columns"] == {"age": "not numeric in the calibration data"}
    assert check(report, "age: within range").blocked_by == "age: numeric type"


def test_nan_fails(adult: Adult, clean: pd.DataFrame) -> None:
    hours = clean["hours_per_week"].astype("float64")
    hours.iloc[[3, 10, 20]] = np.nan
    report = govern(adult, clean.assign(hours_per_week=hours))
    assert failed(report) == {"hours_per_week: no nulls", "hours_per_week: finite"}


def test_inf_fails(adult: Adult, clean: pd.DataFrame) -> None:
    gain = clean["capital_gain"].astype("float64")
    gain.iloc[5] = np.inf
    report = govern(adult, clean.assign(capital_gain=gain))
    assert "capital_gain: finite" in failed(report)
    assert failed(report) <= {"capital_gain: finite", "capital_gain: within range"}
    assert CHECK_REPRESENTATIVE not in failed(report)  # inf does not crash the drift test


def test_out_of_range_fails(adult: Adult, clean: pd.DataFrame) -> None:
    age = clean["age"].copy()
    age.iloc[[0, 1]] = 500
    report = govern(adult, clean.assign(age=age))
    assert failed(report) == {"age: within range"}
    assert "2 of" in check(report, "age: within range").observed


def test_unseen_categories_above_share_fail(adult: Adult, clean: pd.DataFrame) -> None:
    workclass = clean["workclass"].copy()
    workclass.iloc[:125] = "Space-agency"  # 5% > 1%
    report = govern(adult, clean.assign(workclass=workclass))
    assert failed(report) == {"workclass: values in set"}
    assert "Space-agency" in check(report, "workclass: values in set").observed


# --------------------------------------------------------------------------- the team's expectations file


def test_expectations_file_narrows_a_derived_range(adult: Adult, clean: pd.DataFrame) -> None:
    age = clean["age"].copy()
    age.iloc[:3] = 16  # inside the derived range (about 10..97), outside the census rule (17..90)
    without = govern(adult, clean.assign(age=age))
    assert without.passed, without.summary()
    report = govern(adult, clean.assign(age=age), expectations_file=ADULT_FILE)
    assert failed(report) == {"age: within range"}
    assert "min_value=17" in check(report, "age: within range").expected


def test_expectations_file_makes_sensitive_value_sets_strict(adult: Adult, clean: pd.DataFrame) -> None:
    sex = clean["sex"].copy()
    sex.iloc[0] = "Unknown"  # 1 row in 2,500: under the derived 1% allowance
    assert govern(adult, clean.assign(sex=sex)).passed
    report = govern(adult, clean.assign(sex=sex), expectations_file=ADULT_FILE)
    assert failed(report) == {"sex: values in set"}


def test_expectations_file_can_remove_and_add(adult: Adult, clean: pd.DataFrame, tmp_path: Path) -> None:
    f = tmp_path / "adult-income.yaml"
    f.write_text(
        "expectations:\n"
        "  - expectation: ExpectColumnMeanToBeBetween\n"
        "    name: 'hours_per_week: mean'\n"
        "    column: hours_per_week\n"
        "    min_value: 45\n"
        "    max_value: 60\n"
        "remove: ['fnlwgt: within range']\n"
    )
    report = govern(adult, clean, expectations_file=f)
    names = {c.name for c in report.checks}
    assert "fnlwgt: within range" not in names
    assert failed(report) == {"hours_per_week: mean"}
    assert check(report, "hours_per_week: mean").observed.startswith("observed 40.")


def test_missing_expectations_file_is_ignored(adult: Adult, clean: pd.DataFrame, tmp_path: Path) -> None:
    report = govern(adult, clean, expectations_file=tmp_path / "none.yaml")
    assert report.passed and report.expectations_file is None


# --------------------------------------------------------------------------- policy checks


def test_too_few_rows_fail(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean.head(150), policy=CalibrationPolicy(min_group_rows=0))
    assert failed(report) == {"row count"}
    assert check(report, "row count").observed == "150 rows"
    assert check(report, "row count").expected == ">= 200 rows"


def test_very_few_rows_skip_representativeness(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean.head(20))
    assert {"row count", "sex: rows per group", "race: rows per group"} <= failed(report)
    rep = check(report, CHECK_REPRESENTATIVE)
    assert rep.status == "not_run" and "too few" in rep.observed and rep.blocked_by == "row count"
    assert report.drift is None


def test_missing_sensitive_group_fails(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, clean[clean["sex"] != "Female"])
    assert "sex: rows per group" in failed(report)
    assert "Female: 0 (missing)" in check(report, "sex: rows per group").observed


def test_sensitive_group_under_minimum_fails(adult: Adult, clean: pd.DataFrame) -> None:
    few = clean[clean["race"] == "Amer-Indian-Eskimo"].head(10)
    cal = pd.concat([clean[clean["race"] != "Amer-Indian-Eskimo"], few], ignore_index=True)
    report = govern(adult, cal)
    assert failed(report) == {"race: rows per group"}
    assert "Amer-Indian-Eskimo: 10" in check(report, "race: rows per group").observed


def test_overlap_with_evaluation_split_fails(adult: Adult, clean: pd.DataFrame) -> None:
    leaked = adult.evaluation.head(25)
    report = govern(adult, pd.concat([clean, leaked], ignore_index=True))
    assert failed(report) == {CHECK_OVERLAP}
    assert check(report, CHECK_OVERLAP).observed.startswith(f"25 of {len(clean) + 25} ")


def test_overlap_is_found_across_dtypes(adult: Adult, clean: pd.DataFrame) -> None:
    """A calibration file re-read with floats (or categories) still matches the evaluation rows."""
    leaked = pd.concat([clean, adult.evaluation.head(7)], ignore_index=True)
    leaked = leaked.astype({"age": "float64", "sex": "category"})
    report = govern(adult, leaked)
    assert CHECK_OVERLAP in failed(report)
    assert check(report, CHECK_OVERLAP).observed.startswith("7 of")


def test_duplicate_share_above_bound_fails(adult: Adult, clean: pd.DataFrame) -> None:
    report = govern(adult, pd.concat([clean, clean.head(200)], ignore_index=True))
    assert failed(report) == {CHECK_DUPLICATES}
    assert check(report, CHECK_DUPLICATES).observed.startswith(f"200 of {len(clean) + 200} ")


def test_label_balance_out_of_bounds_fails(adult: Adult, clean: pd.DataFrame) -> None:
    cal = pd.concat([clean[clean["income"] == 0], clean[clean["income"] == 1].head(40)], ignore_index=True)
    report = govern(adult, cal)
    assert "income: label balance" in failed(report)
    assert "out of bounds" in check(report, "income: label balance").observed


def test_one_sex_only_fails_group_check_with_drift_evidence(adult: Adult, clean: pd.DataFrame) -> None:
    males = clean[clean["sex"] == "Male"]
    report = govern(adult, males)
    assert "sex: rows per group" in failed(report)
    assert report.drift is not None
    drifted = {c["column"] for c in report.drift["columns"] if c["drifted"]}
    assert {"sex", "relationship"} <= drifted
    # a stricter representativeness bound turns the same evidence into a failure
    strict = govern(adult, males, policy=CalibrationPolicy(max_drifted_share=0.2))
    assert {"sex: rows per group", CHECK_REPRESENTATIVE} <= failed(strict)


# --------------------------------------------------------------------------- not run is never "representative"


def test_an_all_null_calibration_column_is_not_run_not_representative(adult: Adult, clean: pd.DataFrame) -> None:
    """With nulls in the reference, no GX check catches an all-null column; representativeness must not pass it."""
    reference = adult.reference.assign(capital_loss=adult.reference["capital_loss"].astype("float64"))
    reference.loc[reference.index[:50], "capital_loss"] = np.nan
    profile = profile_frame(reference, label="income")
    cal = clean.assign(capital_loss=np.nan)
    report = govern_calibration(
        cal,
        reference,
        evaluation=adult.evaluation,
        label="income",
        sensitive_attributes=ADULT_SENSITIVE,
        text_columns=[],
        policy=POLICY,
        model_name="adult-income",
        profile=profile,
        render_html=False,
    )
    assert failed(report) == {CHECK_REPRESENTATIVE}
    rep = check(report, CHECK_REPRESENTATIVE)
    assert rep.status == "not_run" and "capital_loss (all null in the calibration data)" in rep.observed
    assert report.drift is not None
    assert report.drift["not_run_columns"] == {"capital_loss": "all null in the calibration data"}
    assert "capital_loss" not in {c["column"] for c in report.drift["columns"]}


def test_an_all_null_reference_column_is_not_run(adult: Adult, clean: pd.DataFrame) -> None:
    """Evidently refuses an empty column; before, the whole check failed with Evidently's error."""
    reference = adult.reference.assign(capital_loss=np.nan)
    report = govern(adult, clean, profile=None, reference=reference)
    rep = check(report, CHECK_REPRESENTATIVE)
    assert rep.status == "not_run" and "capital_loss (all null in the reference data)" in rep.observed
    assert report.profile_source == "derived"
    assert report.drift is not None and report.drift["n_columns"] == 14


def test_a_column_evidently_gives_no_score_for_is_not_run(
    adult: Adult, clean: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quantgate.monitor.drift as drift

    real = drift.detect_drift

    def without_age(*args: object, **kwargs: object) -> drift.DriftResult:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        columns = [c.model_copy(update={"score": float("nan")}) if c.column == "age" else c for c in result.columns]
        return result.model_copy(update={"columns": columns})

    monkeypatch.setattr(drift, "detect_drift", without_age)
    report = govern(adult, clean)
    assert failed(report) == {CHECK_REPRESENTATIVE}
    assert report.drift is not None
    assert report.drift["not_run_columns"] == {"age": "Evidently returned no drift score"}
    assert report.drift["n_columns"] == 14


def test_evidently_failing_is_not_run_and_blocks(
    adult: Adult, clean: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quantgate.monitor.drift as drift

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(drift, "detect_drift", broken)
    report = govern(adult, clean)
    assert failed(report) == {CHECK_REPRESENTATIVE}
    assert check(report, CHECK_REPRESENTATIVE).observed == "could not run: Evidently failed: boom"


def test_a_profile_that_is_not_a_data_profile_is_a_data_error(adult: Adult, clean: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="must be a DataProfile, got str"):
        govern(adult, clean, profile=adult.profile.model_dump_json())


# --------------------------------------------------------------------------- files (read_table)


@pytest.fixture()
def adult_csv(clean: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "calibration.csv"
    clean.to_csv(path, index=False)
    return path


def test_csv_and_parquet_round_trips_pass(adult: Adult, clean: pd.DataFrame, adult_csv: Path, tmp_path: Path) -> None:
    path = tmp_path / "calibration.parquet"
    clean.to_parquet(path, index=False)
    from_csv, from_parquet = read_table(adult_csv), read_table(path)
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    assert govern(adult, from_csv).passed


def test_empty_file_is_a_data_error(tmp_path: Path) -> None:
    for name in ("calibration.csv", "calibration.parquet"):
        path = tmp_path / name
        path.write_bytes(b"")
        with pytest.raises(DataError, match=rf"{name} is empty \(0 bytes\)"):
            read_table(path)


def test_header_only_csv_fails_row_count(adult: Adult, clean: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    clean.head(0).to_csv(path, index=False)
    report = govern(adult, read_table(path))
    assert "row count" in failed(report)
    assert check(report, "row count").observed == "0 rows"
    assert check(report, CHECK_REPRESENTATIVE).status == "not_run"


@pytest.mark.parametrize(("edit", "needle"), [("extra", "has 16 fields, expected 15"), ("cut", "has 3 fields")])
def test_csv_with_broken_line_is_a_data_error(adult_csv: Path, edit: str, needle: str) -> None:
    lines = adult_csv.read_text(encoding="utf-8").splitlines()
    lines[41] = lines[41] + ",Springfield" if edit == "extra" else ",".join(lines[41].split(",")[:3])
    adult_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_table(adult_csv)
    msg = str(info.value)
    assert str(adult_csv) in msg and "line 42" in msg and needle in msg
    assert "\n" not in msg


def test_csv_with_invalid_encoding_is_a_data_error(adult_csv: Path) -> None:
    text = adult_csv.read_text(encoding="utf-8")
    first = text.index("Private")
    latin1 = (text[:first] + "Privé" + text[first + len("Private") :]).encode("latin-1")
    adult_csv.write_bytes(latin1)
    line = text[:first].count("\n") + 1
    with pytest.raises(DataError) as info:
        read_table(adult_csv)
    msg = str(info.value)
    assert str(adult_csv) in msg and f"byte 0xe9 on line {line} is not valid UTF-8" in msg
    assert "re-save it as UTF-8" in msg


def test_parquet_name_on_a_csv_is_a_data_error(adult_csv: Path, tmp_path: Path) -> None:
    fake = tmp_path / "calibration.parquet"
    fake.write_bytes(adult_csv.read_bytes())
    with pytest.raises(DataError, match=r"calibration\.parquet as Parquet: it looks like CSV text"):
        read_table(fake)


# --------------------------------------------------------------------------- Rotten Tomatoes (text)


class Reviews:
    def __init__(self) -> None:
        df = load_rotten_tomatoes()
        self.reference = df.sample(frac=0.6, random_state=0)
        rest = df.drop(self.reference.index)
        self.evaluation = rest.sample(2000, random_state=1)
        self.clean = rest.drop(self.evaluation.index).sample(2000, random_state=2).reset_index(drop=True)
        self.profile: DataProfile = profile_frame(self.reference, label="label", text_columns=["text"])


@pytest.fixture(scope="module")
def reviews() -> Reviews:
    return Reviews()


def govern_reviews(r: Reviews, calibration: pd.DataFrame, **kwargs: object) -> CalibrationReport:
    args: dict[str, object] = {
        "evaluation": r.evaluation,
        "label": "label",
        "sensitive_attributes": [],
        "text_columns": ["text"],
        "policy": POLICY,
        "model_name": "rt-sentiment",
        "profile": r.profile,
        "render_html": False,
    }
    args.update(kwargs)
    return govern_calibration(calibration, r.reference, **args)  # type: ignore[arg-type]


def test_clean_reviews_pass_with_text_length_drift(reviews: Reviews) -> None:
    report = govern_reviews(reviews, reviews.clean)
    assert report.passed, report.summary()
    assert report.drift is not None
    assert report.drift["text_length_columns"] == ["text__length"]
    assert "text" not in {c["column"] for c in report.drift["columns"]}


def test_only_short_reviews_fail_representativeness(reviews: Reviews) -> None:
    words = reviews.clean["text"].str.split().str.len()
    short = reviews.clean[words <= 12].reset_index(drop=True)
    report = govern_reviews(reviews, short)
    assert failed(report) == {CHECK_REPRESENTATIVE}
    assert report.drift is not None
    assert "text__length" in {c["column"] for c in report.drift["columns"] if c["drifted"]}
    assert "text__length" in check(report, CHECK_REPRESENTATIVE).observed


def test_reviews_overlapping_the_evaluation_split_fail(reviews: Reviews) -> None:
    cal = pd.concat([reviews.clean, reviews.evaluation.head(12)], ignore_index=True)
    report = govern_reviews(reviews, cal)
    assert failed(report) == {CHECK_OVERLAP}
    assert check(report, CHECK_OVERLAP).observed.startswith("12 of 2012")
