"""Profile logic on small hand-made frames: kinds, bounds, JSON round trip, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from quantgate.errors import DataError
from quantgate.validate import MAX_CATEGORIES, DataProfile, profile_frame, read_profile


@pytest.fixture()
def frame() -> pd.DataFrame:
    n = 300
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "score": np.r_[rng.normal(size=n - 3), [np.nan, np.inf, -np.inf]],
            "city": rng.choice(["Oslo", "Rome", "Lima"], n),
            "flag": rng.choice([True, False], n),
            "flag_nullable": pd.Series(rng.choice([True, False], n), dtype=object).where(np.arange(n) % 10 != 0, None),
            "review": [f"review number {i} " + "good " * (i % 7) for i in range(n)],
            "user_id": [f"u{i:05d}" for i in range(n)],
            "tier": pd.Categorical(rng.choice(["gold", "silver"], n)),
            "y": rng.integers(0, 3, n),
        }
    )


def test_kinds(frame: pd.DataFrame) -> None:
    profile = profile_frame(frame, label="y", text_columns=["review"])
    kinds = {c.name: c.kind for c in profile.columns}
    assert kinds == {
        "age": "numeric",
        "score": "numeric",
        "city": "categorical",
        "flag": "boolean",
        "flag_nullable": "boolean",
        "review": "text",
        "user_id": "text",  # > MAX_CATEGORIES distinct strings, not declared: length only
        "tier": "categorical",
        "y": "categorical",  # an integer label is a set of classes
    }
    assert profile.row_count == len(frame)
    assert profile.column_names == list(frame.columns)
    assert profile.feature_columns == [c for c in frame.columns if c != "y"]


def test_numeric_bounds_ignore_nan_and_inf(frame: pd.DataFrame) -> None:
    score = profile_frame(frame, label=None).column("score")
    finite = frame["score"][np.isfinite(frame["score"])]
    assert score.min == pytest.approx(finite.min())
    assert score.max == pytest.approx(finite.max())
    assert score.null_fraction == pytest.approx(1 / len(frame))
    assert score.values is None


def test_categorical_values_are_native_and_sorted(frame: pd.DataFrame) -> None:
    profile = profile_frame(frame, label="y")
    assert profile.column("city").values == ["Lima", "Oslo", "Rome"]
    assert profile.column("y").values == [0, 1, 2]
    assert all(type(v) is int for v in profile.column("y").values or [])
    assert profile.column("flag").values == [False, True]
    assert profile.column("flag_nullable").null_fraction == pytest.approx(0.1)


def test_text_lengths() -> None:
    df = pd.DataFrame({"t": ["ab", "abcdef", None, "abc"]})
    col = profile_frame(df, label=None, text_columns=["t"]).column("t")
    assert (col.kind, col.min_length, col.max_length) == ("text", 2, 6)
    assert col.null_fraction == pytest.approx(0.25)


def test_continuous_label_stays_numeric() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, 1.25, 2.0]})
    assert profile_frame(df, label="y").column("y").kind == "numeric"


def test_many_valued_integer_column_is_numeric_not_categorical() -> None:
    df = pd.DataFrame({"n": np.arange(MAX_CATEGORIES * 2)})
    col = profile_frame(df, label=None).column("n")
    assert col.kind == "numeric" and col.values is None


def test_json_round_trip(frame: pd.DataFrame) -> None:
    profile = profile_frame(frame, label="y", text_columns=["review"])
    text = profile.model_dump_json()
    json.loads(text)  # plain JSON, no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    again = DataProfile.model_validate_json(text)
    assert again == profile
    assert again.column("flag").values == [False, True]
    assert all(type(v) is bool for v in again.column("flag").values or [])
    assert all(type(v) is int for v in again.column("y").values or [])


def test_mixed_value_types_round_trip() -> None:
    df = pd.DataFrame({"m": pd.Series(["a", 1, 2.5, "b"], dtype=object)})
    profile = profile_frame(df, label=None)
    again = DataProfile.model_validate_json(profile.model_dump_json())
    assert again.column("m").values == profile.column("m").values
    assert [type(v) for v in again.column("m").values or []] == [float, int, str, str]


def test_extra_keys_are_refused(frame: pd.DataFrame) -> None:
    data = json.loads(profile_frame(frame, label=None).model_dump_json())
    data["surprise"] = 1
    with pytest.raises(ValidationError):
        DataProfile.model_validate(data)
    data.pop("surprise")
    data["columns"][0]["typo"] = 1
    with pytest.raises(ValidationError):
        DataProfile.model_validate(data)


def test_label_must_be_a_column(frame: pd.DataFrame) -> None:
    data = json.loads(profile_frame(frame, label=None).model_dump_json())
    data["label"] = "nope"
    with pytest.raises(ValidationError, match="label 'nope'"):
        DataProfile.model_validate(data)


@pytest.mark.parametrize(
    ("df", "kwargs", "message"),
    [
        (pd.DataFrame({"a": pd.Series([], dtype="int64")}), {"label": None}, "empty frame"),
        (pd.DataFrame({"a": [1, 2]}), {"label": "y"}, "not in the data"),
        (pd.DataFrame({"a": [1, 2]}), {"label": None, "text_columns": ["a"]}, "not strings"),
        (pd.DataFrame({0: [1, 2]}), {"label": None}, "must be strings"),
        (
            pd.DataFrame({"d": pd.date_range("2020-01-01", periods=300, freq="D")}),
            {"label": None},
            "cannot profile column 'd'",
        ),
    ],
)
def test_refusals(df: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        profile_frame(df, **kwargs)


def test_import_does_not_load_great_expectations() -> None:
    code = "import sys, quantgate.validate; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_read_profile_round_trips_a_stored_profile() -> None:
    df = pd.DataFrame({"age": [30, 40, 50], "sex": ["F", "M", "F"], "label": [0, 1, 0]})
    profile = profile_frame(df, label="label")
    assert read_profile(profile.model_dump_json(), source="runs:/abc/reference_profile.json") == profile


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "first at <root>"),
        ('{"row_count": 3, "columns": [{"name": "a"}]}', "first at columns.0.kind"),
        ('{"schema_version": 2, "row_count": 3, "columns": []}', "first at schema_version"),
    ],
)
def test_an_unreadable_stored_profile_is_a_data_error_naming_the_artifact(text: str, needle: str) -> None:
    """Never a silent fallback to a profile derived from the reference file: name the artifact and the fix."""
    with pytest.raises(DataError) as info:
        read_profile(text, source="runs:/abc/reference_profile.json")
    msg = str(info.value)
    assert "stored reference profile runs:/abc/reference_profile.json is unreadable" in msg
    assert needle in msg
    assert "profile_frame" in (info.value.hint or "")
