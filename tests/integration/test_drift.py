"""Real Evidently drift runs on real UCI Adult rows.

Reference: 3,000 training rows. A random window of *other* training rows must not drift; a
window of real rows from a strongly shifted sub-population (women aged 50+) must, with age
and sex among the drifted columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_NUMERIC, load_adult
from quantgate.errors import DataError
from quantgate.monitor import DriftResult, detect_drift

pytestmark = pytest.mark.integration

FEATURES = ADULT_NUMERIC + ADULT_CATEGORICAL


@pytest.fixture(scope="module")
def adult_windows() -> dict[str, pd.DataFrame]:
    """Reference, an unshifted window and a shifted window, all disjoint real rows."""
    train, _ = load_adult()
    shuffled = train.sample(frac=1.0, random_state=7)
    reference = shuffled.iloc[:3000]
    rest = shuffled.iloc[3000:]
    same = rest.sample(n=2000, random_state=11)
    shifted = rest[(rest["age"] >= 50) & (rest["sex"] == "Female")]
    return {"reference": reference, "same": same, "shifted": shifted}


@pytest.fixture(scope="module")
def no_drift(adult_windows: dict[str, pd.DataFrame]) -> DriftResult:
    return detect_drift(
        adult_windows["reference"],
        adult_windows["same"],
        numeric=ADULT_NUMERIC,
        categorical=ADULT_CATEGORICAL,
        columns=FEATURES,
    )


@pytest.fixture(scope="module")
def drift(adult_windows: dict[str, pd.DataFrame]) -> DriftResult:
    return detect_drift(
        adult_windows["reference"],
        adult_windows["shifted"],
        numeric=ADULT_NUMERIC,
        categorical=ADULT_CATEGORICAL,
        columns=FEATURES,
    )


def test_random_window_of_same_population_does_not_drift(no_drift: DriftResult) -> None:
    assert not no_drift.dataset_drift
    assert no_drift.n_columns == len(FEATURES)
    assert no_drift.drifted_share < 0.5
    assert "age" not in no_drift.drifted_columns
    assert "sex" not in no_drift.drifted_columns


def test_shifted_subpopulation_drifts(drift: DriftResult) -> None:
    assert drift.dataset_drift
    assert drift.drifted_share >= 0.5
    assert {"age", "sex"} <= set(drift.drifted_columns)
    assert drift.n_drifted == len(drift.drifted_columns)
    assert drift.drifted_share == pytest.approx(drift.n_drifted / drift.n_columns)


def test_per_column_details(drift: DriftResult) -> None:
    by_name = {c.column: c for c in drift.columns}
    assert set(by_name) == set(FEATURES)
    assert by_name["age"].kind == "numerical"
    assert by_name["sex"].kind == "categorical"
    for col in drift.columns:
        assert col.stattest and col.stattest != "unknown"
        assert col.threshold > 0
        # the verdict agrees with score vs threshold in the test's own direction
        if col.score_kind == "distance":
            assert col.drifted == (col.score >= col.threshold)
        else:
            assert col.drifted == (col.score < col.threshold)


def test_html_report_and_json_summary(drift: DriftResult, tmp_path: Path) -> None:
    assert len(drift.html) > 1000
    assert "<html" in drift.html.lower()
    out = drift.write_html(tmp_path / "reports" / "drift.html")
    assert out.read_text(encoding="utf-8") == drift.html

    summary = drift.to_dict()
    assert "html" not in summary
    decoded = json.loads(json.dumps(summary, allow_nan=False))
    assert decoded["dataset_drift"] is True
    assert "age" in decoded["drifted_columns"]
    assert len(decoded["columns"]) == len(FEATURES)
    assert len(repr(drift)) < 20_000  # the multi-MB report stays out of repr


def test_threshold_and_share_are_honoured(adult_windows: dict[str, pd.DataFrame]) -> None:
    """A strict drift_share of 1.0 turns the same shifted window into 'no dataset drift'."""
    result = detect_drift(
        adult_windows["reference"],
        adult_windows["shifted"],
        columns=["age", "sex", "race"],
        drift_share=1.0,
    )
    assert result.n_columns == 3
    assert "age" in result.drifted_columns
    assert result.dataset_drift == (result.n_drifted == 3)


def test_bad_input_is_a_data_error(adult_windows: dict[str, pd.DataFrame]) -> None:
    ref = adult_windows["reference"]
    with pytest.raises(DataError, match="lacks column"):
        detect_drift(ref, ref.drop(columns=["age"]), columns=["age", "sex"])
    with pytest.raises(DataError, match="rows in both windows"):
        detect_drift(ref, ref.iloc[:0])


def test_small_windows_use_p_value_tests(adult_windows: dict[str, pd.DataFrame]) -> None:
    """Under 1,000 reference rows Evidently picks p-value tests; the verdict flips direction."""
    result = detect_drift(
        adult_windows["reference"].iloc[:600],
        adult_windows["shifted"].iloc[:300],
        columns=["age", "hours_per_week", "sex", "race"],
    )
    kinds = {c.column: c.score_kind for c in result.columns}
    assert kinds["age"] == "p_value"
    by_name = {c.column: c for c in result.columns}
    assert by_name["age"].drifted and by_name["age"].score < by_name["age"].threshold
    assert by_name["sex"].drifted


def test_numbers_equal_evidentlys_own_serialisation(adult_windows: dict[str, pd.DataFrame]) -> None:
    """Read through result objects, the figures are exactly those Evidently itself serialises.

    The oracle is the snapshot's JSON form (which quantgate no longer parses); both p-value tests
    (small windows) and distances (>1,000 reference rows) are covered.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = ["age", "hours_per_week", "sex", "race"]
    for n_ref, n_cur in ((600, 300), (3000, 800)):
        ref = adult_windows["reference"].iloc[:n_ref][cols].reset_index(drop=True)
        cur = adult_windows["shifted"].iloc[:n_cur][cols].reset_index(drop=True)
        ours = detect_drift(ref, cur, columns=cols, drift_share=0.5)
        definition = DataDefinition(numerical_columns=cols[:2], categorical_columns=cols[2:])
        snap = Report([DataDriftPreset(columns=cols, drift_share=0.5)], include_tests=True).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
        raw = snap.dict()
        status = {t["metric_config"]["metric_id"]: t["status"] for t in raw["tests"]}
        expected = {
            m["config"]["column"]: (m["value"], m["config"]["method"], m["config"]["threshold"], status[m["id"]])
            for m in raw["metrics"]
            if m["config"]["type"].endswith(":ValueDrift")
        }
        got = {c.column: (c.score, c.stattest, c.threshold, "FAIL" if c.drifted else "SUCCESS") for c in ours.columns}
        assert got == expected
        share = next(
            m["value"]["share"] for m in raw["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount")
        )
        assert ours.drifted_share == pytest.approx(share)
    assert {c.score_kind for c in detect_drift(ref, cur, columns=cols).columns} == {"distance"}


def test_an_empty_column_is_named_and_the_others_are_compared(adult_windows: dict[str, pd.DataFrame]) -> None:
    """A column with no value in the window (Evidently refuses it) is left out by name: a partial answer."""
    shifted = adult_windows["shifted"].assign(age=float("nan"))
    result = detect_drift(adult_windows["reference"], shifted, columns=["age", "sex", "race"])
    assert result.status == "partial"
    assert result.not_compared == {"age": "all values missing in the current window"}
    assert {c.column for c in result.columns} == {"sex", "race"} and result.n_columns == 2
    assert result.dataset_drift is not None
    assert result.to_dict()["not_compared"] == {"age": "all values missing in the current window"}


def test_no_column_compared_is_not_run_never_no_drift(
    adult_windows: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero compared columns has no verdict: ``not run``, each column named with why, not "no drift"."""
    import quantgate.monitor.drift as drift

    ref, cur = adult_windows["reference"], adult_windows["same"]
    empty = detect_drift(ref, cur.assign(age=None, sex=None), columns=["age", "sex"])
    assert empty.status == "not run" and empty.dataset_drift is None and empty.n_columns == 0
    assert empty.not_compared == {
        "age": "all values missing in the current window",
        "sex": "all values missing in the current window",
    }
    assert empty.to_dict()["status"] == "not run" and empty.to_dict()["dataset_drift"] is None

    monkeypatch.setattr(drift, "_read_results", lambda *_a, **_k: ([], None))  # Evidently answers for nothing
    silent = detect_drift(ref, cur, columns=["age", "sex"])
    assert silent.status == "not run" and silent.dataset_drift is None and silent.drifted_columns == []
    assert silent.not_compared == {
        "age": "Evidently returned no drift result",
        "sex": "Evidently returned no drift result",
    }
