"""The statistics of the production checks: intervals, one-sided tests against the gate, CBPE, label joins."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.errors import DataError
from quantgate.monitor import production as p
from quantgate.monitor.labels import join_labels, read_label_file


def _wilson_by_hand(k: int, n: int, z: float) -> tuple[float, float]:
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(0, 50), (7, 200), (180, 200), (500, 1000)])
def test_wilson_matches_the_formula(k: int, n: int) -> None:
    low, high = p.wilson(k, n, 0.95)
    exp_low, exp_high = _wilson_by_hand(k, n, 1.959963984540054)
    assert low == pytest.approx(max(exp_low, 0.0), abs=1e-9) and high == pytest.approx(exp_high, abs=1e-9)


def test_production_flips_above_the_gate_alert_and_equal_ones_do_not() -> None:
    same = p.compare_rate(20, 1000, 0.02, 5000, alpha=0.01)
    assert same["rate"] == 0.02 and not same["above_gate"] and same["p_value"] > 0.3
    assert same["interval"][0] < 0.02 < same["interval"][1] and same["test"].startswith("fisher_exact")
    above = p.compare_rate(60, 1000, 0.02, 5000, alpha=0.01)
    assert above["above_gate"] and above["p_value"] < 1e-6
    below = p.compare_rate(2, 1000, 0.02, 5000, alpha=0.01)  # fewer flips than approved is no alert
    assert not below["above_gate"]
    # without the gate's row count the gate's rate is taken as known: an exact binomial test
    known = p.compare_rate(60, 1000, 0.02, None, alpha=0.01)
    assert known["test"].startswith("binomtest") and known["above_gate"] and known["gate_interval"] is None
    with pytest.raises(DataError):
        p.compare_rate(0, 0, 0.02, 100)


def test_accuracy_below_the_gate_is_one_sided() -> None:
    worse = p.compare_accuracy(700, 1000, 0.85, 8000, alpha=0.01)
    assert worse["below_gate"] and worse["accuracy"] == 0.7
    assert worse["gate_interval"][0] < 0.85 < worse["gate_interval"][1]
    better = p.compare_accuracy(950, 1000, 0.85, 8000, alpha=0.01)
    assert not better["below_gate"]
    small = p.compare_accuracy(8, 10, 0.85, 8000, alpha=0.01)  # 10 rows cannot show a drop of 5 points
    assert not small["below_gate"] and small["interval"][1] - small["interval"][0] > 0.3


def _calibrated(rng: np.random.Generator, proba: np.ndarray) -> pd.DataFrame:
    y = (rng.uniform(size=len(proba)) < proba).astype(int)
    return pd.DataFrame({"label": y, "fp32_pred": (proba > 0.5).astype(int), "proba_0": 1 - proba, "proba_1": proba})


def test_cbpe_tracks_accuracy_under_covariate_shift() -> None:
    """Calibrated probabilities: CBPE's estimate follows the realized accuracy when confidence shifts."""
    rng = np.random.default_rng(7)
    scores = _calibrated(rng, rng.uniform(0, 1, 4000))
    gate_acc = float((scores[["proba_0", "proba_1"]].to_numpy().argmax(1) == scores["label"]).mean())
    gate = {"accuracy": gate_acc, "n": len(scores)}
    # a window of hesitant rows (probabilities near 0.5): same P(y|x), lower accuracy
    hesitant = rng.uniform(0.35, 0.65, 3000)
    realized = float((((hesitant > 0.5).astype(int)) == (rng.uniform(size=3000) < hesitant)).mean())
    est = p.estimate_accuracy_cbpe(scores, hesitant, (hesitant > 0.5).astype(int), gate)
    assert est["estimator"].startswith("nannyml CBPE") and "no concept drift" in est["assumptions"]
    assert est["interval"][0] <= realized <= est["interval"][1]
    assert est["below_gate"] and est["estimated_accuracy"] < gate_acc - 0.1
    # a window like the gate's rows is not below it
    alike = rng.uniform(0, 1, 3000)
    same = p.estimate_accuracy_cbpe(scores, alike, (alike > 0.5).astype(int), gate)
    assert not same["below_gate"] and abs(same["estimated_accuracy"] - gate_acc) < 0.03


def test_gate_figures_from_the_card() -> None:
    card = {
        "metrics": {"n": 9000, "candidate": {"accuracy": 0.84, "flip_rate": 0.011}, "flip_rate": 0.011},
        "groups": [{"attribute": "sex", "group": "Female", "n": 3000, "candidate_accuracy": 0.9}],
        "source": {"name": "adult-income", "version": "3"},
    }
    g = p.gate_figures(card)
    assert g["flip_rate"] == 0.011 and g["n"] == 9000 and g["groups"][0]["accuracy"] == 0.9
    with pytest.raises(DataError, match="no candidate accuracy"):
        p.gate_figures({"metrics": {}})


def test_labels_file_is_checked_and_joined_by_request_and_row(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text("request_id,label\nr1,>50K\nr2,<=50K\n")
    labels = read_label_file(f)
    assert list(labels["request_row"]) == [0, 0]
    window = pd.DataFrame(
        {"request_id": ["r1", "r1", "r2", "r3"], "request_row": [0, 1, 0, 0], "age": [30, 40, 50, 60]}
    )
    joined = join_labels(window, labels)
    assert list(joined["age"]) == [30, 50] and list(joined["true_label"]) == [">50K", "<=50K"]
    (tmp_path / "bad.csv").write_text("id,label\nr1,1\n")
    with pytest.raises(DataError, match="lacks column"):
        read_label_file(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("request_id,label\nr1,\n")
    with pytest.raises(DataError, match="empty request_id, label"):
        read_label_file(tmp_path / "gap.csv")


def test_performance_alert_says_which_figure_fell_and_reuses_the_checks_verdicts() -> None:
    """The alert follows the checks' own ``below_gate`` / ``groups_below_gate``: no second rule."""
    from quantgate.monitoring.checks import performance_message
    from quantgate.monitoring.run import MonitorOutcome

    labelled = {"status": "ok", "n": 400, "groups": [], "groups_below_gate": []}
    labelled |= p.compare_accuracy(300, 400, 0.85, 5000, alpha=0.01)
    estimate = {"status": "ok", "estimator": "nannyml CBPE", "n": 400, "estimated_accuracy": 0.84}
    estimate |= {"interval": [0.81, 0.87], "gate_accuracy": 0.85, "gate_interval": [0.84, 0.86], "below_gate": False}

    def outcome(lab: dict, est: dict) -> MonitorOutcome:
        return MonitorOutcome("m", "1", "champion", 400, {"dataset_drift": False}, "r", labels=lab, estimate=est)

    assert labelled["below_gate"] and outcome(labelled, estimate).performance_alert
    summary, details, report = performance_message(labelled, estimate)
    assert details["below_gate"] == ["labelled"] and report == "classification_report.html"
    assert summary.startswith("labelled accuracy 75.0% (") and "gate's 85.0%" in summary and "estimated" not in summary

    low_estimate = estimate | {"estimated_accuracy": 0.70, "interval": [0.66, 0.74], "below_gate": True}
    not_run = {"status": "not run", "reason": "no labels yet"}
    assert outcome(not_run, low_estimate).performance_alert
    summary, details, report = performance_message(not_run, low_estimate)
    assert details["below_gate"] == ["estimated"] and report == "production.json"
    assert "estimated accuracy 70.0% (66.0-74.0%) (nannyml CBPE, 400 rows) lies below the gate's 85.0%" in summary

    group = p.compare_accuracy(398, 400, 0.85, 5000, alpha=0.01) | {"status": "ok", "n": 400}
    group["groups_below_gate"] = ["sex=Female"]
    assert outcome(group, estimate).performance_alert
    assert performance_message(group, estimate)[1]["groups_below_gate"] == ["sex=Female"]
    fine = p.compare_accuracy(341, 400, 0.85, 5000, alpha=0.01) | {"status": "ok", "groups_below_gate": []}
    assert not fine["below_gate"] and not outcome(fine, estimate).performance_alert


def test_positive_rate_is_the_share_of_the_second_class_whatever_the_labels_are_called() -> None:
    from quantgate.monitoring.score import positive_rate

    served = pd.Series(["malignant", "benign", "benign", "benign"])  # was: mean() of strings, a crash
    assert positive_rate(served, ["malignant", "benign"]) == 0.75
    assert positive_rate(pd.Series([0, 1, 1, 0]), [0, 1]) == 0.5
    assert positive_rate(pd.Series([3, 1, 2]), [0, 1, 2, 3]) is None  # k > 2: no single rate
    with pytest.raises(DataError, match="not among the model's classes"):
        positive_rate(pd.Series(["maybe"]), ["malignant", "benign"])
