"""The expectations-file loader: every mistake is a one-line ConfigError that names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.errors import ConfigError
from quantgate.validate import DataProfile, load_expectations, parse_expectations, profile_frame, validate_frame
from quantgate.validate.gx_suite import apply_overrides, derive_expectations

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "city": rng.choice(["Oslo", "Rome", "Lima"], n),
            "y": rng.integers(0, 2, n),
        }
    )


@pytest.fixture(scope="module")
def profile(frame: pd.DataFrame) -> DataProfile:
    return profile_frame(frame, label="y")


AGE = "- expectation: ExpectColumnValuesToBeBetween\n  column: age\n  min_value: 17\n  max_value: 90\n"


def test_bare_list_and_mapping_forms() -> None:
    bare = parse_expectations(AGE, "f.yaml")
    assert [(s.type, s.kwargs) for s in bare.expectations] == [
        ("ExpectColumnValuesToBeBetween", {"column": "age", "min_value": 17, "max_value": 90})
    ]
    assert bare.remove == ()
    full = parse_expectations(
        "expectations:\n"
        "  - expectation: ExpectColumnValuesToBeBetween\n"
        "    column: age\n"
        "    min_value: 17\n"
        "remove: ['age: no nulls']\n"
    )
    assert full.expectations[0].column == "age" and full.remove == ("age: no nulls",)


def test_snake_case_type_is_accepted() -> None:
    o = parse_expectations("- expectation: expect_column_values_to_not_be_null\n  column: age\n")
    assert o.expectations[0].type == "ExpectColumnValuesToNotBeNull"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "f.yaml is empty"),
        ("just a string\n", "must be a list of expectations"),
        ("expectations: []\nremovee: []\n", "f.yaml: removee: unknown key"),
        ("expectations: {a: 1}\n", "expectations: must be a list"),
        ("- 3\n", "expectations.0: expected a mapping"),
        ("- column: age\n", "expectations.0: missing 'expectation'"),
        (
            "- expectation: ExpectColumnValuesToBeBetwen\n  column: age\n  min_value: 1\n",
            "expectations.0.expectation: unknown expectation 'ExpectColumnValuesToBeBetwen' — did you mean",
        ),
        ("- expectation: UnexpectedRowsExpectation\n  unexpected_rows_query: x\n", "needs SQL or a second table"),
        (
            "- expectation: ExpectColumnValuesToBeBetween\n  column: age\n  min_valu: 1\n",
            "expectations.0 (ExpectColumnValuesToBeBetween): min_valu: unknown key",
        ),
        (
            "- expectation: ExpectColumnValuesToBeBetween\n  column: age\n  min_value: young\n",
            "min_value: value is not",
        ),
        (
            "- expectation: ExpectColumnValuesToNotBeNull\n  column: age\n  meta: {a: 1}\n",
            "expectations.0.meta: not allowed in an expectations file",
        ),
        ("- expectation: ExpectColumnValuesToNotBeNull\n  column: age\n  severity: warning\n", "severity: not allowed"),
        ("- expectation: ExpectColumnValuesToNotBeNull\n  column: age\n  column: city\n", "duplicate key 'column'"),
        ("- expectation: ExpectColumnValuesToNotBeNull\n  column: [age\n", "is not valid YAML"),
        ("- expectation: ExpectColumnValuesToNotBeNull\n  name: ''\n  column: age\n", "expectations.0.name"),
        ("remove: fnlwgt\n", "remove: must be a list of check names"),
        ("remove: [a, a]\n", "remove: 'a' is listed twice"),
        (
            "- {expectation: ExpectColumnValuesToNotBeNull, column: age, name: n}\n"
            "- {expectation: ExpectColumnValuesToNotBeNull, column: city, name: n}\n",
            "two expectations are named 'n'",
        ),
    ],
)
def test_mistakes_are_config_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_expectations(text, "f.yaml")
    msg = str(info.value)
    assert needle in msg, msg
    assert "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expectations file not found"):
        load_expectations(tmp_path / "nope.yaml")


def _apply(profile: DataProfile, text: str):  # type: ignore[no-untyped-def]
    derived = derive_expectations(profile, range_tolerance=0.1, max_unseen_share=0.01, min_rows=1)
    return apply_overrides(derived, profile, parse_expectations(text, "m.yaml"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "remove: ['agee: within range']\n",
            "no derived check named 'agee: within range' — did you mean 'age: within range'",
        ),
        ("remove: ['row count']\n", "'row count' cannot be removed — change calibration.min_rows"),
        ("remove: ['unique column names']\n", "cannot be removed"),
        ("- expectation: ExpectColumnValuesToNotBeNull\n  column: agee\n", "'agee' is not a column of the reference"),
        (
            "- {expectation: ExpectColumnMeanToBeBetween, column: age, min_value: 1, name: 'age: within range'}\n",
            "check name 'age: within range' is already used",
        ),
    ],
)
def test_override_mistakes_against_the_profile(profile: DataProfile, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _apply(profile, text)
    assert needle in str(info.value)


def test_same_type_and_column_replaces_the_derived_check(profile: DataProfile) -> None:
    expectations, removed = _apply(
        profile, AGE + "- expectation: ExpectColumnMeanToBeBetween\n  column: age\n  min_value: 1\n"
    )
    ranges = [e for e in expectations if type(e).__name__ == "ExpectColumnValuesToBeBetween"]
    assert len(ranges) == 1 and ranges[0].min_value == 17
    assert ranges[0].meta["quantgate_check"] == "age: within range"
    assert any(e.meta["quantgate_check"] == "age: ExpectColumnMeanToBeBetween" for e in expectations)
    assert removed == set()


def test_removing_a_pandas_side_check(frame: pd.DataFrame, profile: DataProfile) -> None:
    overrides = parse_expectations("remove: ['age: finite', 'city: values in set']\n", "m.yaml")
    report = validate_frame(frame, profile, render_html=False, overrides=overrides)
    names = {c.name for c in report.checks}
    assert "age: finite" not in names and "city: values in set" not in names
    assert "age: within range" in names and report.passed


def test_shipped_expectation_files_parse() -> None:
    files = sorted((ROOT / "policies" / "expectations").glob("*.yaml"))
    assert files, "policies/expectations/ ships at least the adult-income example"
    for f in files:
        assert load_expectations(f).expectations
