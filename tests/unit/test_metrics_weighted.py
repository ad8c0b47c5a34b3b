"""The bootstrap scores resamples with weighted forms of the metrics; each must equal the library
definition (sklearn / fairlearn / our ECE) called on the resampled rows themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantgate.evaluate.metrics import BOOTSTRAPPED, _counts, _WeightedModel, proba_metrics


def _case(k: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y = rng.choice(k, n, p=np.r_[np.full(k - 1, 0.9 / (k - 1)), 0.1])  # last class rare
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.0
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    proba = np.round(proba, 2)  # ties in the scores
    proba[:, -1] = 1 - proba[:, :-1].sum(1)
    proba = np.clip(proba, 0, 1)
    proba /= proba.sum(1, keepdims=True)
    sens = {"a": rng.choice(["x", "y", "z"], n, p=[0.5, 0.4, 0.1]), "b": rng.choice(["u", "v"], n)}
    return y, proba, sens


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@pytest.mark.parametrize(("k", "n", "min_group_size"), [(2, 300, 30), (3, 120, 15), (4, 80, 10)])
def test_weighted_forms_equal_library_metrics_on_resamples(k: int, n: int, min_group_size: int) -> None:
    y, proba, sens = _case(k, n, seed=k)
    rng = np.random.default_rng(0)
    idx = np.vstack([np.arange(n), rng.integers(0, n, (12, n))])  # identity + 12 resamples
    draws = _WeightedModel(y, proba, sens, min_group_size).metrics(_counts(idx, n))
    for b, rows in enumerate(idx):
        ref = proba_metrics(
            y[rows], proba[rows], sensitive={a: v[rows] for a, v in sens.items()}, min_group_size=min_group_size
        )
        for m in BOOTSTRAPPED:
            assert _same(float(draws[m][b]), ref[m]), (k, b, m, float(draws[m][b]), ref[m])


def test_weighted_roc_auc_is_nan_when_a_class_is_missing() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.full((6, 3), 1 / 3)
    idx = np.array([[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 4, 5]])  # first resample has no class 2
    draws = _WeightedModel(y, proba, {}, 30).metrics(_counts(idx, 6))
    assert math.isnan(draws["roc_auc"][0]) and draws["roc_auc"][1] == pytest.approx(0.5)
    assert math.isnan(draws["dp_difference"][1])  # no sensitive attribute: not measured
