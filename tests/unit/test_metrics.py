"""Metric math on small hand-computed arrays: overall metrics, groups, flips, paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from quantgate.evaluate.metrics import (
    Comparison,
    GroupMetric,
    classification_metrics,
    compare,
    paired_bootstrap,
    paired_bootstrap_drop,
)


def test_classification_metrics_hand_computed() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    # tp=3 (0,1,7) fn=1 (2) fp=1 (5) tn=3 (3,4,6)
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert set(m) == {"accuracy", "balanced_accuracy", "f1"}


def test_classification_metrics_imbalanced() -> None:
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    p = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(7 / 8)
    assert m["balanced_accuracy"] == pytest.approx((6 / 6 + 1 / 2) / 2)
    assert m["f1"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))


def test_classification_metrics_multiclass() -> None:
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array([0, 2, 2, 2, 1, 1])
    m = classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 2 / 2) / 3)
    # macro F1: class 0 tp=1 fp=0 fn=1; class 1 tp=1 fp=1 fn=1; class 2 tp=2 fp=1 fn=0
    assert m["f1"] == pytest.approx((2 / 3 + 2 / 4 + 4 / 5) / 3)


def test_classification_metrics_perfect_and_no_positives() -> None:
    y = np.array([0, 1, 0, 1])
    assert classification_metrics(y, y) == {"accuracy": 1.0, "balanced_accuracy": 1.0, "f1": 1.0}
    zeros = np.zeros(4, dtype=int)
    m = classification_metrics(zeros, zeros)
    assert m["accuracy"] == 1.0 and m["f1"] == 0.0  # no positives at all: defined as 0


def test_classification_metrics_empty_is_nan() -> None:
    m = classification_metrics(np.array([], dtype=int), np.array([], dtype=int))
    assert math.isnan(m["accuracy"]) and math.isnan(m["balanced_accuracy"])
    assert math.isnan(m["f1"])  # undefined on no rows (was 0.0)


# --- compare ------------------------------------------------------------------------------


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    # 10 rows; group "a" (6 rows), "b" (4 rows)
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    base = np.array([1, 0, 1, 0, 1, 1, 1, 0, 1, 0])  # one error (row 5, group a)
    cand = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 1])  # errors rows 2,5 (a), 6,9 (b)
    groups = pd.DataFrame({"g": list("aaaaaabbbb"), "h": [1, 2] * 5})
    return y, base, cand, groups


def test_compare_overall_and_flip_rate() -> None:
    y, base, cand, _ = _data()
    cmp = compare(y, base, cand, resamples=0)
    assert cmp.n == 10
    assert cmp.baseline["accuracy"] == pytest.approx(0.9)
    assert cmp.candidate["accuracy"] == pytest.approx(0.6)
    assert cmp.drop("accuracy") == pytest.approx(0.3)
    # base and cand differ on rows 2, 6, 9
    assert cmp.flip_rate == pytest.approx(0.3)
    assert cmp.candidate["flip_rate"] == pytest.approx(0.3)
    assert "flip_rate" not in cmp.baseline
    assert cmp.groups == []
    assert "worst_group_accuracy" not in cmp.candidate


def test_compare_groups_respect_min_group_size() -> None:
    y, base, cand, groups = _data()
    cmp = compare(y, base, cand, groups=groups[["g"]], min_group_size=5, resamples=0)
    assert [(g.attribute, g.group, g.n) for g in cmp.groups] == [("g", "a", 6)]  # b has 4 rows
    a = cmp.groups[0]
    assert a.baseline_accuracy == pytest.approx(5 / 6)
    assert a.candidate_accuracy == pytest.approx(4 / 6)
    assert a.drop == pytest.approx(1 / 6)
    assert cmp.baseline["worst_group_accuracy"] == pytest.approx(5 / 6)

    cmp = compare(y, base, cand, groups=groups[["g"]], min_group_size=4, resamples=0)
    assert [(g.group, g.n) for g in cmp.groups] == [("a", 6), ("b", 4)]
    b = cmp.groups[1]
    assert b.baseline_accuracy == 1.0 and b.candidate_accuracy == pytest.approx(0.5)
    assert cmp.baseline["worst_group_accuracy"] == pytest.approx(5 / 6)
    assert cmp.candidate["worst_group_accuracy"] == pytest.approx(0.5)

    cmp = compare(y, base, cand, groups=groups, min_group_size=11, resamples=0)
    assert cmp.groups == []
    assert "worst_group_accuracy" not in cmp.baseline


def test_compare_several_attributes_are_stringified() -> None:
    y, base, cand, groups = _data()
    cmp = compare(y, base, cand, groups=groups, min_group_size=1, resamples=0)
    assert [(g.attribute, g.group) for g in cmp.groups] == [
        ("g", "a"),
        ("g", "b"),
        ("h", "1"),
        ("h", "2"),
    ]
    assert sum(g.n for g in cmp.groups if g.attribute == "h") == 10


def test_compare_accepts_lists_and_interval_for_accuracy() -> None:
    y, base, cand, _ = _data()
    cmp = compare(list(y), list(base), list(cand), resamples=50, seed=3)
    assert set(cmp.intervals) == {"accuracy"}
    iv = cmp.intervals["accuracy"]
    assert iv.estimate == pytest.approx(0.3) and iv.confidence == 0.95
    assert iv.low <= iv.estimate <= iv.high


def test_comparison_to_dict_includes_group_drop() -> None:
    cmp = Comparison(4, {"accuracy": 1.0}, {"accuracy": 0.5}, [GroupMetric("g", "a", 4, 1.0, 0.75)])
    d = cmp.to_dict()
    assert d["groups"] == [
        {
            "attribute": "g",
            "group": "a",
            "n": 4,
            "baseline_accuracy": 1.0,
            "candidate_accuracy": 0.75,
            "drop": 0.25,
        }
    ]
    assert d["n"] == 4 and d["intervals"] == {} and d["flip_rate"] == 0.0


# --- paired bootstrap ---------------------------------------------------------------------


def _boot_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    y = rng.integers(0, 2, 400)
    base = np.where(rng.random(400) < 0.9, y, 1 - y)
    cand = np.where(rng.random(400) < 0.9, base, 1 - base)
    return y, base, cand


def test_bootstrap_deterministic_with_same_seed() -> None:
    y, base, cand = _boot_data()
    a = paired_bootstrap_drop(y, base, cand, resamples=300, confidence=0.95, seed=7)
    b = paired_bootstrap_drop(y, base, cand, resamples=300, confidence=0.95, seed=7)
    assert a == b


def test_bootstrap_differs_with_other_seed() -> None:
    y, base, cand = _boot_data()
    a = paired_bootstrap_drop(y, base, cand, resamples=300, confidence=0.95, seed=7)
    b = paired_bootstrap_drop(y, base, cand, resamples=300, confidence=0.95, seed=8)
    assert a.estimate == b.estimate
    assert (a.low, a.high) != (b.low, b.high)


def test_bootstrap_interval_contains_estimate() -> None:
    y, base, cand = _boot_data()
    est = float((y == base).mean() - (y == cand).mean())
    for seed in range(5):
        iv = paired_bootstrap_drop(y, base, cand, resamples=200, confidence=0.9, seed=seed)
        assert iv.estimate == pytest.approx(est)
        assert iv.low < iv.estimate < iv.high
        assert iv.confidence == 0.9


def test_bootstrap_wider_at_higher_confidence() -> None:
    y, base, cand = _boot_data()
    narrow = paired_bootstrap_drop(y, base, cand, resamples=500, confidence=0.6, seed=0)
    wide = paired_bootstrap_drop(y, base, cand, resamples=500, confidence=0.99, seed=0)
    assert wide.low <= narrow.low and wide.high >= narrow.high
    assert wide.high - wide.low > narrow.high - narrow.low


def test_bootstrap_zero_resamples_is_degenerate() -> None:
    y, base, cand = _boot_data()
    iv = paired_bootstrap_drop(y, base, cand, resamples=0, confidence=0.95, seed=0)
    assert iv.low == iv.estimate == iv.high
    assert iv.estimate == pytest.approx(float((y == base).mean() - (y == cand).mean()))


def test_bootstrap_identical_predictions_is_zero() -> None:
    y, base, _ = _boot_data()
    iv = paired_bootstrap_drop(y, base, base.copy(), resamples=100, confidence=0.95, seed=0)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)


def test_bootstrap_empty_input() -> None:
    e = np.array([], dtype=int)
    iv = paired_bootstrap_drop(e, e, e, resamples=100, confidence=0.95, seed=0)
    assert math.isnan(iv.estimate) and math.isnan(iv.high)


def test_paired_bootstrap_is_scipys_percentile_interval() -> None:
    from scipy.stats import bootstrap

    y, base, cand = _boot_data()
    diff = (y == base).astype(float) - (y == cand).astype(float)
    ours = paired_bootstrap_drop(y, base, cand, resamples=300, confidence=0.9, seed=5)
    ref = bootstrap(
        (diff,), np.mean, n_resamples=300, confidence_level=0.9, method="percentile", rng=np.random.default_rng(5)
    )
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)
    assert ours.nan_draws == 0 and ours.resamples == 300 and not ours.flagged


def test_paired_bootstrap_counts_and_flags_nan_draws() -> None:
    def stat(idx: np.ndarray) -> np.ndarray:
        first = idx[:, 0].astype(float)
        few = np.where(first < 2, np.nan, first)  # undefined on ~20% of resamples (10 rows)
        rare = np.where(first < 1, np.nan, first)  # undefined on ~10%
        return np.stack([few, rare, first])

    a, b, c = paired_bootstrap(10, stat, [1.0, 1.0, 1.0], resamples=400, confidence=0.95, seed=0)
    assert 40 < a.nan_draws < 120 and a.flagged and a.resamples == 400
    assert b.nan_draws == int(np.sum(np.random.default_rng(0).integers(0, 10, (400, 10))[:, 0] < 1))
    assert b.flagged == (b.nan_draws > 40)
    assert c.nan_draws == 0 and not c.flagged
    assert a.low >= 2 and np.isfinite(a.high)  # percentiles of the finite draws only


def test_every_known_metric_has_a_definition() -> None:
    from quantgate.evaluate.catalog import DEFINITIONS, KNOWN_METRICS

    assert set(DEFINITIONS) == set(KNOWN_METRICS)


def test_bootstrap_in_batches_gives_the_same_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large evaluation sets are resampled in batches (memory O(batch * n)); a seed still gives
    the same draws, so the verdict does not depend on the batch size."""
    from quantgate.evaluate import metrics as m

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.5 + rng.random(500) * 0.6, 0, 1)
    q = np.clip(p + rng.normal(0, 0.1, 500), 0, 1)
    base, cand = np.stack([1 - p, p], 1), np.stack([1 - q, q], 1)
    groups = pd.DataFrame({"g": rng.choice(["a", "b"], 500)})
    whole = m.compare_proba(y, base, cand, groups=groups, sensitive=["g"], resamples=50).intervals
    monkeypatch.setattr(m, "BOOTSTRAP_CELLS", 500 * 7)  # 7 resamples per call
    batched = m.compare_proba(y, base, cand, groups=groups, sensitive=["g"], resamples=50).intervals
    assert whole.keys() == batched.keys() and len(whole) > 5
    for key in whole:
        # the same draws; sums over a batch may round in a different order (1e-15)
        assert (batched[key].low, batched[key].high) == pytest.approx((whole[key].low, whole[key].high), abs=1e-12), key
