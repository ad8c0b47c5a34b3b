"""Calibration-data validation on real data with real Great Expectations runs (no mocks).

The profile is built once per module from the real UCI Adult training split; calibration
samples come from the test split, so "clean" really means unseen-but-similar data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.data.datasets import load_adult, load_rotten_tomatoes
from quantgate.errors import ValidationFailed
from quantgate.validate import (
    DataProfile,
    ValidationReport,
    build_suite,
    profile_frame,
    validate_frame,
)

pytestmark = pytest.mark.integration

SAMPLE_ROWS = 2000


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_adult()


@pytest.fixture(scope="module")
def adult_profile(adult: tuple[pd.DataFrame, pd.DataFrame]) -> DataProfile:
    train, _ = adult
    return profile_frame(train, label="income")


@pytest.fixture()
def sample(adult: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """A fresh copy per test, so one test's corruption never leaks into another."""
    _, test = adult
    return test.sample(SAMPLE_ROWS, random_state=7).reset_index(drop=True)


def failed_names(report: ValidationReport) -> set[str]:
    return {c.name for c in report.failed()}


# --------------------------------------------------------------------------- Adult


def test_clean_adult_sample_passes(sample: pd.DataFrame, adult_profile: DataProfile, tmp_path: Path) -> None:
    report = validate_frame(sample, adult_profile)
    assert report.passed, report.summary()
    assert report.failed() == []
    assert report.row_count == SAMPLE_ROWS
    names = {c.name for c in report.checks}
    for expected in (
        "row count",
        "columns match",
        "age: numeric type",
        "age: no nulls",
        "age: finite",
        "age: within range",
        "sex: values in set",
        "income: values in set",
    ):
        assert expected in names
    assert "passed" in report.summary()

    # the HTML is GX's Data Docs page with the quantgate table on top
    assert report.data_docs_html is not None
    assert "quantgate data validation: PASSED" in report.data_docs_html
    assert "Expectation Suite" in report.data_docs_html
    out = report.write_html(tmp_path / "docs" / "calibration.html")
    assert out.read_text(encoding="utf-8") == report.data_docs_html

    # the report itself is JSON for the flow's logs
    again = ValidationReport.model_validate_json(report.model_dump_json())
    assert again == report
    json.loads(report.model_dump_json())


def test_build_suite_matches_profile(adult_profile: DataProfile) -> None:
    import great_expectations as gx

    suite = build_suite(adult_profile, name="adult-calibration", range_tolerance=0.1)
    assert isinstance(suite, gx.ExpectationSuite)
    assert suite.name == "adult-calibration"
    by_type: dict[str, list] = {}
    for e in suite.expectations:
        by_type.setdefault(e.expectation_type, []).append(e)
    (cols,) = by_type["expect_table_columns_to_match_set"]
    assert cols.exact_match is True
    assert set(cols.column_set) == set(adult_profile.column_names)
    age_range = next(e for e in by_type["expect_column_values_to_be_between"] if e.column == "age")
    # reference ages 17..90, span 73, widened by 7.3 on each side
    assert age_range.min_value == pytest.approx(17 - 7.3)
    assert age_range.max_value == pytest.approx(90 + 7.3)
    sex_set = next(e for e in by_type["expect_column_values_to_be_in_set"] if e.column == "sex")
    assert set(sex_set.value_set) == {"Female", "Male"}
    assert sex_set.mostly == pytest.approx(0.99)
    typed = {e.column for e in by_type["expect_column_values_to_be_in_type_list"]}
    assert typed == {"age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"}


def test_missing_column_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    report = validate_frame(sample.drop(columns=["race"]), adult_profile)
    assert not report.passed
    assert failed_names(report) == {"columns match"}
    (check,) = report.failed()
    assert "missing: race" in check.observed
    assert "columns match" in report.summary()


def test_extra_column_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    report = validate_frame(sample.assign(zip_code="12345"), adult_profile)
    assert failed_names(report) == {"columns match"}
    assert "unexpected: zip_code" in report.failed()[0].observed


def test_renamed_column_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    report = validate_frame(sample.rename(columns={"sex": "gender"}), adult_profile)
    assert failed_names(report) == {"columns match"}
    observed = report.failed()[0].observed
    assert "missing: sex" in observed and "unexpected: gender" in observed


def test_wrong_dtype_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    report = validate_frame(sample.assign(age=sample["age"].astype(str)), adult_profile)
    # only the type check: no range check erroring on strings
    assert failed_names(report) == {"age: numeric type"}


def test_nan_in_numeric_column_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    hours = sample["hours_per_week"].astype("float64")
    hours.iloc[[3, 10, 20]] = np.nan
    report = validate_frame(sample.assign(hours_per_week=hours), adult_profile)
    assert failed_names(report) == {"hours_per_week: no nulls", "hours_per_week: finite"}
    finite = next(c for c in report.checks if c.name == "hours_per_week: finite")
    assert finite.observed.startswith("3 NaN")


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_numeric_column_fails(sample: pd.DataFrame, adult_profile: DataProfile, value: float) -> None:
    gain = sample["capital_gain"].astype("float64")
    gain.iloc[5] = value
    report = validate_frame(sample.assign(capital_gain=gain), adult_profile)
    assert not report.passed
    assert "capital_gain: finite" in failed_names(report)
    assert failed_names(report) <= {"capital_gain: finite", "capital_gain: within range"}


def test_out_of_range_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    age = sample["age"].copy()
    age.iloc[[0, 1]] = 500
    report = validate_frame(sample.assign(age=age), adult_profile)
    assert failed_names(report) == {"age: within range"}
    check = report.failed()[0]
    assert "500" in check.observed and "2 of 2000" in check.observed


def test_unseen_categories_above_share_fail(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    workclass = sample["workclass"].copy()
    workclass.iloc[:100] = "Space-agency"  # 5% > 1%
    report = validate_frame(sample.assign(workclass=workclass), adult_profile)
    assert failed_names(report) == {"workclass: values in set"}
    assert "Space-agency" in report.failed()[0].observed


def test_unseen_categories_below_share_pass(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    workclass = sample["workclass"].copy()
    workclass.iloc[:10] = "Space-agency"  # 0.5% <= 1%
    report = validate_frame(sample.assign(workclass=workclass), adult_profile, render_html=False)
    assert report.passed, report.summary()
    assert report.data_docs_html is None


def test_write_html_without_data_docs_writes_checks_table(
    sample: pd.DataFrame, adult_profile: DataProfile, tmp_path: Path
) -> None:
    report = validate_frame(sample, adult_profile, render_html=False)
    html = report.write_html(tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "quantgate data validation: PASSED" in html
    assert "age: within range" in html
    assert "Expectation Suite" not in html


def test_nullable_dtype_with_na_fails_and_still_renders(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    age = sample["age"].astype("Int64")
    age.iloc[0] = pd.NA
    report = validate_frame(sample.assign(age=age), adult_profile)
    assert failed_names(report) == {"age: no nulls", "age: finite"}
    assert report.data_docs_html is not None and "Expectation Suite" in report.data_docs_html


def test_duplicate_columns_fail(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    doubled = pd.concat([sample, sample[["sex"]]], axis=1)
    report = validate_frame(doubled, adult_profile, render_html=False)
    assert failed_names(report) == {"unique column names"}


def test_unseen_label_class_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    income = sample["income"].copy()
    income.iloc[0] = 2  # a single unseen class is already wrong for the label
    report = validate_frame(sample.assign(income=income), adult_profile, render_html=False)
    assert failed_names(report) == {"income: values in set"}


def test_empty_frame_fails(sample: pd.DataFrame, adult_profile: DataProfile) -> None:
    report = validate_frame(sample.iloc[:0], adult_profile)
    assert failed_names(report) == {"row count"}
    assert report.failed()[0].observed == "0 rows"


def test_too_few_rows_fail(sample: pd.DataFrame, adult_profile: DataProfile, tmp_path: Path) -> None:
    report = validate_frame(sample.head(50), adult_profile, min_rows=100)
    assert failed_names(report) == {"row count"}
    assert "row count" in report.summary()
    html = report.write_html(tmp_path / "too_few.html").read_text(encoding="utf-8")
    assert "quantgate data validation: FAILED" in html
    with pytest.raises(ValidationFailed, match="row count"):
        report.raise_if_failed()


def test_100k_rows_validate_in_seconds(adult: tuple[pd.DataFrame, pd.DataFrame], adult_profile: DataProfile) -> None:
    _, test = adult
    big = test.sample(100_000, replace=True, random_state=3).reset_index(drop=True)
    validate_frame(big.head(10), adult_profile, render_html=False)  # GX imported and warm
    start = time.perf_counter()
    report = validate_frame(big, adult_profile)
    elapsed = time.perf_counter() - start
    assert report.passed, report.summary()
    assert elapsed < 15.0, f"validating 100k rows took {elapsed:.1f}s"


# --------------------------------------------------------------------------- Rotten Tomatoes


@pytest.fixture(scope="module")
def reviews() -> tuple[DataProfile, pd.DataFrame]:
    """(profile of 70% of the snippets, 2000 held-out snippets)."""
    df = load_rotten_tomatoes()
    ref = df.sample(frac=0.7, random_state=0)
    held_out = df.drop(ref.index).sample(SAMPLE_ROWS, random_state=1).reset_index(drop=True)
    return profile_frame(ref, label="label", text_columns=["text"]), held_out


def test_clean_reviews_pass(reviews: tuple[DataProfile, pd.DataFrame]) -> None:
    profile, held_out = reviews
    assert profile.column("text").kind == "text"
    report = validate_frame(held_out, profile)
    assert report.passed, report.summary()
    assert {"text: length", "text: string values", "label: values in set"} <= {c.name for c in report.checks}


def test_empty_texts_fail(reviews: tuple[DataProfile, pd.DataFrame]) -> None:
    profile, held_out = reviews
    text = held_out["text"].copy()
    text.iloc[:5] = ""
    report = validate_frame(held_out.assign(text=text), profile)
    assert failed_names(report) == {"text: length"}
    assert "''" in report.failed()[0].observed


def test_overlong_texts_fail(reviews: tuple[DataProfile, pd.DataFrame]) -> None:
    profile, held_out = reviews
    max_length = profile.column("text").max_length
    assert max_length is not None
    text = held_out["text"].copy()
    text.iloc[:3] = "spam " * (max_length // 2 + 1)  # > 2x the longest reference text
    report = validate_frame(held_out.assign(text=text), profile)
    assert failed_names(report) == {"text: length"}


def test_non_string_texts_fail(reviews: tuple[DataProfile, pd.DataFrame]) -> None:
    profile, held_out = reviews
    report = validate_frame(held_out.assign(text=7), profile, render_html=False)
    assert failed_names(report) == {"text: string values"}
