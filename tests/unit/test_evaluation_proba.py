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


def test_flip_audit_without_groups_is_not_measured() -> None:
    """No group column (or every group under the minimum size): concentration cannot be judged,
    so the ratio is NaN (not measured), never the 1.0 of "no group stands out"."""
    y = np.array([0, 1] * 50)
    base, cand = _proba(np.where(y == 1, 0.9, 0.1)), _proba(np.where(y == 1, 0.4, 0.1))
    assert np.isnan(flip_audit(pd.DataFrame({"g": ["x"] * 100}), y, base, cand, group_columns=[]).max_ratio)
    small = flip_audit(pd.DataFrame({"g": ["x", "y"] * 50}), y, base, cand, group_columns=["g"], min_group_size=60)
    assert small.groups == [] and np.isnan(small.max_ratio)


# --- multi-class (k > 2) ----------------------------------------------------------------------


def _multiclass(k: int = 4, n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.5
    base = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    noisy = logits + rng.normal(0, 0.5, (n, k))
    cand = np.exp(noisy) / np.exp(noisy).sum(1, keepdims=True)
    groups = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "race": rng.choice(["a", "b", "c"], n)})
    return y, base, cand, groups


def test_multiclass_metrics_match_sklearn() -> None:
    from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss, roc_auc_score

    y, p, _, _ = _multiclass()
    m = proba_metrics(y, p)
    pred = p.argmax(1)
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["log_loss"] == pytest.approx(log_loss(y, p, labels=range(4)))
    onehot = np.eye(4)[y]
    assert m["brier"] == pytest.approx(0.5 * ((p - onehot) ** 2).sum(1).mean())  # in [0, 1]
    conf, hit = p.max(1), (pred == y)
    assert m["ece"] == pytest.approx(expected_calibration_error(y, p))
    # top-label ECE by hand
    bins = np.minimum((conf * 10).astype(int), 9)
    by_hand = sum(abs(hit[bins == b].sum() - conf[bins == b].sum()) for b in range(10)) / len(y)
    assert m["ece"] == pytest.approx(by_hand)


def test_multiclass_fairness_gap_is_the_largest_one_vs_rest_gap() -> None:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    y, p, _, g = _multiclass()
    pred = p.argmax(1)
    race = g["race"].to_numpy()
    dp, eo = _fairness_gaps(y, pred, {"race": race}, n_classes=4)
    per_class = [
        (
            demographic_parity_difference(y == c, pred == c, sensitive_features=race),
            equalized_odds_difference(y == c, pred == c, sensitive_features=race),
        )
        for c in range(4)
    ]
    assert dp == pytest.approx(max(d for d, _ in per_class))
    assert eo == pytest.approx(max(e for _, e in per_class))


def test_compare_proba_multiclass_end_to_end() -> None:
    y, base, cand, g = _multiclass()
    cmp = compare_proba(y, base, cand, groups=g, sensitive=["sex", "race"], resamples=50, seed=2)
    for m in ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss", "brier", "ece", "dp_difference"):
        iv = cmp.intervals[m]
        assert np.isfinite([iv.estimate, iv.low, iv.high]).all(), m
        assert iv.nan_draws == 0 and iv.resamples == 50 and not iv.flagged
    assert cmp.flip_rate == pytest.approx(float((base.argmax(1) != cand.argmax(1)).mean()))
    assert {gm.attribute for gm in cmp.groups} == {"sex", "race", "sex&race"}


def test_absent_class_gives_nan_not_a_crash() -> None:
    y, base, cand, _ = _multiclass(k=3, n=300)
    y = np.where(y == 2, 0, y)  # class 2 never occurs in the labels
    cmp = compare_proba(y, base, cand, resamples=20, seed=0)
    assert np.isnan(cmp.baseline["roc_auc"]) and np.isnan(cmp.intervals["roc_auc"].high)
    assert cmp.intervals["roc_auc"].nan_draws == 20 and cmp.intervals["roc_auc"].flagged
    assert np.isfinite(cmp.baseline["log_loss"]) and np.isfinite(cmp.intervals["accuracy"].high)


def test_binary_roc_auc_nan_draws_are_counted() -> None:
    y = np.zeros(40, dtype=int)
    y[:2] = 1  # two positives: many resamples hold none
    p1 = np.linspace(0.05, 0.95, 40)
    cmp = compare_proba(y, _proba(p1), _proba(p1[::-1].copy()), resamples=100, seed=0)
    iv = cmp.intervals["roc_auc"]
    assert 0 < iv.nan_draws < 100 and iv.resamples == 100
    assert iv.flagged == (iv.nan_draws > 10)
    assert np.isfinite(iv.high)  # percentiles of the finite draws


def test_probabilities_are_validated() -> None:
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="shape"):
        compare_proba(y, np.array([0.2, 0.8]), np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="within"):
        compare_proba(y, np.array([[0.5, 1.5], [0.5, 0.5]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="sum to one"):
        compare_proba(y, np.array([[0.5, 0.6], [0.5, 0.5]]), np.array([[0.5, 0.5], [0.5, 0.5]]))


def test_float32_rounding_is_not_an_error() -> None:
    import warnings

    y, p, _, _ = _multiclass(k=5, n=400)
    p32 = p.astype(np.float32) * np.float32(1 + 3e-7)  # softmax in float32: rows sum to 1 +- 1e-7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "do not sum to one" from sklearn
        m = proba_metrics(y, p32)
    assert m["log_loss"] == pytest.approx(proba_metrics(y, p)["log_loss"], rel=1e-5)


def test_flip_audit_multiclass() -> None:
    y, base, cand, g = _multiclass(k=3, n=600)
    cand = base.copy()
    rows = np.flatnonzero((g["race"] == "c").to_numpy())[:60]
    cand[rows] = np.roll(cand[rows], 1, axis=1)  # the argmax moves for these rows
    flipped = base.argmax(1) != cand.argmax(1)
    audit = flip_audit(g, y, base, cand, group_columns=["race"], sample_size=5)
    assert audit.n_flips == int(flipped.sum()) > 0
    assert {(x.attribute, x.group) for x in audit.over_represented} == {("race", "c")}
    shown = set(base.max(1)[flipped].round(4)) | set(cand.max(1)[flipped].round(4))
    assert all(r["fp32_probability"] in shown and r["quantized_probability"] in shown for r in audit.sample)
