"""Probability-based evaluation, fairness gaps, intervals and the flip audit (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantgate.evaluate.audit import flip_audit
from quantgate.evaluate.metrics import _fairness_gaps, compare_proba, expected_calibration_error, proba_metrics


def _proba(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p1, p1])


@pytest.fixture()
def data() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.25, n), 0.01, 0.99)
    groups = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "race": rng.choice(["a", "b", "c"], n)})
    return y, p1, groups


def test_roc_auc_matches_sklearn(data: tuple[np.ndarray, np.ndarray, pd.DataFrame]) -> None:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y, p1, _ = data
    m = proba_metrics(y, _proba(p1))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p1), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(y, _proba(p1)), abs=1e-9)


def test_ece_hand_computed() -> None:
    y = np.array([1, 0, 1, 1])
    p1 = np.array([0.95, 0.95, 0.15, 0.15])  # bin 9: acc .5 conf .95 ; bin 1: acc 1 conf .15
    assert expected_calibration_error(y, p1) == pytest.approx(0.5 * 0.45 + 0.5 * 0.85)


def test_fairness_gaps_match_fairlearn(data: tuple[np.ndarray, np.ndarray, pd.DataFrame]) -> None:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    y, p1, g = data
    pred = (p1 > 0.5).astype(int)
    dp, eo = _fairness_gaps(y, pred, {"race": g["race"].to_numpy()})
    assert dp == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=g["race"]))
    assert eo == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=g["race"]))


def test_compare_proba_groups_intersections_and_intervals(data: tuple[np.ndarray, np.ndarray, pd.DataFrame]) -> None:
    y, p1, g = data
    cand = p1.copy()
    hurt = (g["sex"] == "F").to_numpy() & (g["race"] == "a").to_numpy()
    cand[hurt] = 1 - cand[hurt]  # the candidate is wrong exactly where fp32 is right, for one intersection
    cmp = compare_proba(y, _proba(p1), _proba(cand), groups=g, sensitive=["sex", "race"], resamples=100, seed=1)
    attrs = {gm.attribute for gm in cmp.groups}
    assert attrs == {"sex", "race", "sex&race"}
    worst = max(cmp.groups, key=lambda gm: gm.drop)
    assert (worst.attribute, worst.group) == ("sex&race", "F&a")
    iv = cmp.intervals["group:sex&race=F&a"]
    assert iv.low <= worst.drop <= iv.high and iv.low > 0.3
    for m in ("accuracy", "roc_auc", "ece", "log_loss", "dp_difference"):
        assert cmp.intervals[m].low <= cmp.intervals[m].estimate + 1e-12 <= cmp.intervals[m].high + 2e-12
    assert cmp.candidate["worst_group_accuracy"] < cmp.baseline["worst_group_accuracy"]
    again = compare_proba(y, _proba(p1), _proba(cand), groups=g, sensitive=["sex", "race"], resamples=100, seed=1)
    assert again.intervals["accuracy"] == cmp.intervals["accuracy"]


def test_flip_audit_finds_the_over_represented_group(data: tuple[np.ndarray, np.ndarray, pd.DataFrame]) -> None:
    y, p1, g = data
    cand = p1.copy()
    rng = np.random.default_rng(3)
    flip_rows = np.flatnonzero((g["race"] == "c").to_numpy())[:120]
    other = rng.choice(np.flatnonzero((g["race"] != "c").to_numpy()), 20, replace=False)
    for idx in (flip_rows, other):
        cand[idx] = 1 - cand[idx]
    audit = flip_audit(g, y, _proba(p1), _proba(cand), group_columns=["sex", "race"], sample_size=5)
    assert audit.n_flips == 140
    flagged = {(x.attribute, x.group) for x in audit.over_represented}
    assert flagged == {("race", "c")}
    c = next(x for x in audit.groups if x.group == "c")
    assert c.ratio > 2 and c.p_value < 1e-6
    assert len(audit.sample) == 5 and {"fp32_prediction", "quantized_prediction"} <= set(audit.sample[0])
    assert audit.max_ratio == pytest.approx(c.ratio)


def test_flip_audit_without_flips() -> None:
    y = np.array([0, 1] * 50)
    p = _proba(np.where(y == 1, 0.9, 0.1))
    audit = flip_audit(pd.DataFrame({"g": ["x"] * 100}), y, p, p, group_columns=["g"])
    assert audit.n_flips == 0 and audit.over_represented == [] and audit.sample == []
    assert audit.max_ratio == 1.0  # no significant excess anywhere
