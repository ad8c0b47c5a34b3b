"""GX checks that cannot run are listed as not run, never dropped and never counted as passed.

Real Great Expectations runs on a sample of UCI Adult; the reference profile is built once.
"""

from __future__ import annotations

import pandas as pd
import pytest

from quantgate.data.datasets import load_adult
from quantgate.validate import DataProfile, parse_expectations, profile_frame, validate_frame

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def adult_profile_and_sample() -> tuple[DataProfile, pd.DataFrame]:
    train, test = load_adult()
    return profile_frame(train, label="income"), test.sample(1000, random_state=7).reset_index(drop=True)


def test_checks_of_a_missing_column_are_not_run_and_defer_to_columns_match(
    adult_profile_and_sample: tuple[DataProfile, pd.DataFrame],
) -> None:
    profile, sample = adult_profile_and_sample
    report = validate_frame(sample.drop(columns=["age"]), profile, render_html=False)
    assert [c.name for c in report.failed()] == ["columns match"]
    age = {c.name: c for c in report.checks if c.column == "age"}
    assert set(age) == {"age: numeric type", "age: no nulls", "age: finite", "age: within range"}
    for check in age.values():
        assert check.status == "not_run" and not check.passed
        assert check.blocked_by == "columns match"
        assert check.observed == "could not run: column missing from the calibration data"
    assert not report.passed
    assert report.summary().endswith("; 4 more could not run because of them")


def test_without_columns_match_a_missing_column_still_blocks(
    adult_profile_and_sample: tuple[DataProfile, pd.DataFrame],
) -> None:
    """Before: removing "columns match" let a missing column's checks vanish and the data pass."""
    profile, sample = adult_profile_and_sample
    overrides = parse_expectations("remove: ['columns match']\n", "team.yaml")
    report = validate_frame(sample.drop(columns=["age"]), profile, render_html=False, overrides=overrides)
    assert not report.passed
    assert {c.name for c in report.failed()} == {
        "age: numeric type",
        "age: no nulls",
        "age: finite",
        "age: within range",
    }
    assert all(c.blocked_by is None for c in report.failed())


def test_a_range_check_on_a_mistyped_column_defers_to_the_type_check(
    adult_profile_and_sample: tuple[DataProfile, pd.DataFrame],
) -> None:
    profile, sample = adult_profile_and_sample
    report = validate_frame(sample.assign(age=sample["age"].astype(str)), profile, render_html=False)
    assert [c.name for c in report.failed()] == ["age: numeric type"]
    by_name = {c.name: c for c in report.checks}
    for name in ("age: within range", "age: finite"):
        assert by_name[name].status == "not_run" and by_name[name].blocked_by == "age: numeric type"
        assert "dtype object is not numeric" in by_name[name].observed


def test_an_expectation_gx_cannot_evaluate_is_not_run_and_blocks(
    adult_profile_and_sample: tuple[DataProfile, pd.DataFrame],
) -> None:
    """A GX error is not a judgement on the data: a required check that could not run."""
    profile, sample = adult_profile_and_sample
    overrides = parse_expectations(
        "- expectation: ExpectColumnMeanToBeBetween\n  column: sex\n  min_value: 0\n  max_value: 1\n", "team.yaml"
    )
    report = validate_frame(sample, profile, render_html=False, overrides=overrides)
    (check,) = report.failed()
    assert check.name == "sex: ExpectColumnMeanToBeBetween"
    assert check.status == "not_run" and check.required and check.blocked_by is None
    assert check.observed.startswith("could not run: error: ")
