"""Regression metrics, large deviations, the regression rules and the onboarding of a regressor (pure code)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, r2_score, root_mean_squared_error

from quantgate.errors import ConfigError
from quantgate.evaluate.regression import (
    REGRESSION_METRICS,
    _draws,
    compare_regression,
    large_deviations,
    regression_metrics,
)
from quantgate.policy.regression import gate_regression_candidate
from quantgate.policy.schema import parse_policy

RULES = """
name: t
rules:
  - {id: size, kind: max, metric: size_ratio, threshold: 1.0, severity: warn}
  - {id: acc, kind: max_drop, metric: accuracy, threshold: 0.01}
regression_rules:
"""


def _data(n: int = 400, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(50, 300, n)
    base = y + rng.normal(0, 20, n)
    cand = base + rng.normal(0, noise, n) if noise else base.copy()
    groups = pd.DataFrame(
        {"sex": rng.choice(["1", "2"], n), "age": rng.choice(["young", "old", "tiny"], n, p=[0.5, 0.47, 0.03])}
    )
    return y, base, cand, groups


def test_metrics_are_sklearns() -> None:
    y, base, _, _ = _data()
    m = regression_metrics(y, base)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, base))
    assert m["rmse"] == pytest.approx(root_mean_squared_error(y, base))
    assert m["r2"] == pytest.approx(r2_score(y, base))
    assert m["mean_relative_error"] == pytest.approx(mean_absolute_percentage_error(y, base))
    assert all(np.isnan(v) for v in regression_metrics(np.array([]), np.array([])).values())


def test_bootstrap_statistic_on_the_identity_resample_is_the_estimate() -> None:
    """The vectorised draws use the same formulas as sklearn: on the rows themselves they give the changes."""
    y, base, cand, _ = _data(noise=5.0)
    idx = np.arange(len(y))[None, :]
    draws = _draws(y, base, cand, idx)[:, 0]
    b, c = regression_metrics(y, base), regression_metrics(y, cand)
    expected = [
        c["mae"] - b["mae"],
        c["rmse"] - b["rmse"],
        b["r2"] - c["r2"],
        c["mean_relative_error"] - b["mean_relative_error"],
    ]
    assert draws == pytest.approx(expected)


def test_identical_predictions_change_nothing() -> None:
    y, base, cand, groups = _data()
    cmp = compare_regression(y, base, cand, groups=groups, sensitive=["sex", "age"], resamples=50)
    for m in REGRESSION_METRICS:
        iv = cmp.intervals[m]
        assert iv.estimate == 0 and iv.low == 0 and iv.high == 0
    assert cmp.deviations is not None and cmp.deviations.count == 0 and cmp.deviations.max_ratio == 1.0


def test_noisy_candidate_is_worse_with_an_interval_and_groups() -> None:
    y, base, cand, groups = _data(noise=15.0)
    cmp = compare_regression(y, base, cand, groups=groups, sensitive=["sex", "age"], min_group_size=30, resamples=100)
    iv = cmp.intervals["mae"]
    assert iv.estimate == pytest.approx(cmp.candidate["mae"] - cmp.baseline["mae"])
    assert iv.low <= iv.estimate <= iv.high and iv.estimate > 0
    names = {(g.attribute, g.group) for g in cmp.groups}
    assert ("sex", "1") in names and ("sex&age", "1&young") in names
    assert not any(g.group == "tiny" for g in cmp.groups), "a group under min_group_size is not judged"
    g = cmp.groups[0]
    assert g.interval is not None and g.interval.estimate == pytest.approx(g.increase)


def test_large_deviations_and_where_they_concentrate() -> None:
    base = np.full(300, 100.0)
    cand = base.copy()
    table = pd.DataFrame({"g": ["a"] * 100 + ["b"] * 200})
    cand[:30] = 120.0  # 30 rows moved by 20% of fp32's value, all in group a
    d = large_deviations(base, cand, tolerance=0.05, relative=True, table=table, min_group_size=30)
    assert d.count == 30 and d.share == pytest.approx(0.1)
    a = next(x for x in d.groups if x.group == "a")
    assert a.significant and a.ratio == pytest.approx(3.0) and d.max_ratio == pytest.approx(3.0)
    absolute = large_deviations(base, cand, tolerance=25.0, relative=False)
    assert absolute.count == 0 and np.isnan(absolute.max_ratio)


def _policy(rules: str):
    return parse_policy(RULES + rules, "t.yaml")


def test_gate_passes_a_lossless_candidate_and_fails_a_noisy_one() -> None:
    pol = _policy(
        "  - {id: mae, kind: max_increase, metric: mae, threshold: 0.02, relative: true}\n"
        "  - {id: grp, kind: max_group_increase, metric: mae, threshold: 0.05, relative: true, judge_on: significant}\n"
        "  - {id: dev, kind: max, metric: large_deviation_share, threshold: 0.05}\n"
    )
    y, base, cand, groups = _data()
    same = compare_regression(y, base, cand, groups=groups, sensitive=["sex"], resamples=50)
    v = gate_regression_candidate("m", pol, same, {"size_ratio": 0.5, "speedup": 1.0})
    assert v.status == "pass", v.to_json()
    outcomes = {r.rule_id: r.outcome for r in v.results}
    assert outcomes["acc"] == "n/a" and outcomes["size"] == "pass"
    y, base, cand, groups = _data(noise=30.0)
    worse = compare_regression(y, base, cand, groups=groups, sensitive=["sex"], resamples=50)
    v = gate_regression_candidate("m", pol, worse, {"size_ratio": 0.5})
    assert set(v.failed_rules) >= {"mae", "dev"}
    mae = next(r for r in v.results if r.rule_id == "mae")
    assert "of fp32's" in mae.evidence and mae.interval is not None


def test_a_policy_without_regression_rules_cannot_judge_a_regressor() -> None:
    pol = parse_policy(RULES.replace("regression_rules:\n", ""), "t.yaml")
    y, base, cand, _ = _data()
    with pytest.raises(ConfigError, match="has no regression_rules"):
        gate_regression_candidate("m", pol, compare_regression(y, base, cand, resamples=10))


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("{id: x, kind: max_increase, metric: mea, threshold: 0.1}", "regression_rules.0.metric"),
        ("{id: x, kind: max_drop, metric: mae, threshold: 0.1}", "max_drop is judged on r2"),
        ("{id: x, kind: max, metric: mae, threshold: 1, relative: true}", "relative: true applies"),
        ("{id: x, kind: max, metric: large_deviation_share, threshold: 2}", "impossible for a share"),
        ("{id: x, kind: max_increase, metric: mae, threshold: 0.1, tolerance: 1}", "tolerance: unknown key"),
        ("{id: size, kind: max_increase, metric: mae, threshold: 0.1}", "duplicate rule id"),
    ],
)
def test_regression_rules_are_strict(rule: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        _policy(f"  - {rule}\n")


def test_shipped_regression_policy_validates() -> None:
    from pathlib import Path

    from quantgate.policy import load_policy

    pol = load_policy(Path(__file__).parents[2] / "policies" / "regression.yaml")
    assert pol.regression_rules and pol.calibration.label_share_bounds is None


def test_a_regressor_has_no_classes() -> None:
    from quantgate.onboarding import ModelConfig

    base = {"name": "m", "label": "y", "calibration_data": "c", "evaluation_data": "e"}
    assert ModelConfig.model_validate({**base, "task": "tabular-regression"}).is_regression
    with pytest.raises(ValueError, match="has no classes"):
        ModelConfig.model_validate({**base, "task": "tensor-regression", "classes": [0, 1]})


def test_card_renders_the_regression_sections() -> None:
    """The regression card from a context as steps.regression_card builds it (pure: no MLflow)."""
    from huggingface_hub import ModelCard

    from quantgate.cards.regression_card import regression_card_json, render_regression_card
    from quantgate.policy.regression import gate_regression_candidate
    from quantgate.steps.regression import RegressionEvaluation, regression_card_section

    y, base, cand, groups = _data(noise=3.0)
    cmp = compare_regression(y, base, cand, groups=groups, sensitive=["sex"], resamples=50)
    ev = RegressionEvaluation(
        cmp,
        {"baseline_p50_ms": 1.0, "candidate_p50_ms": 0.5, "speedup": 2.0},
        {"baseline_bytes": 2000, "candidate_bytes": 1000},
    )
    pol = _policy("  - {id: mae, kind: max_increase, metric: mae, threshold: 0.02, relative: true}\n")
    verdict = gate_regression_candidate("m", pol, cmp, {"size_ratio": 0.5})
    ctx = {
        "name": "m-quantized",
        "source": {"name": "m", "version": "1", "description": "", "tags": {}},
        "config": {"task": "tabular-regression", "description": "Predicts y. Not for pricing."},
        "recipe": {
            "label": "dynamic-int8",
            "type": "dynamic-int8",
            "backend": "torch",
            "summary": "int8",
            "json": {},
            "digest": "sha256:x",
        },
        "quantized_modules": ["fc"],
        "float_modules": [],
        "coverage": {},
        "hardware": {},
        "metrics": {"n": cmp.n, "baseline": cmp.baseline, "candidate": cmp.candidate},
        "groups": [],
        "regression": regression_card_section(ev),
        "min_group_size": 30,
        "reading": {"rows": 128, "tolerance": 0.01, "max_proba_diff": 0.0},
        "warnings": [],
        "runtime": ev.runtime,
        "sizes": ev.sizes,
        "verdict": verdict.to_dict(),
        "validation": {"passed": True, "checks": 3, "failed": []},
        "data": {"paths": {"evaluation": "e.parquet"}, "digests": {"evaluation": "sha256:e"}},
        "policy": {"name": "t", "digest": "sha256:p"},
        "environment": {"python": "3.11"},
    }
    md, twin = render_regression_card(ctx)
    for heading in ("### Overall", "### By group", "### Large deviations", "## Verdict, rule by rule", "Out of scope"):
        assert heading in md, heading
    assert "| mae |" in md and "| sex | 1 |" in md
    assert ModelCard(md).data.to_dict()["base_model"] == "m/1"
    assert twin["regression"]["overall"][0]["metric"] == "mae"
    assert json_loads_strict(regression_card_json(ctx))["card"]["uses"]["out_of_scope"] == ["Not for pricing."]


def json_loads_strict(text: str) -> dict:
    import json

    return json.loads(text)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["a", "b", "c", "d"], "not numbers"),
        ([1.0, np.nan, 3.0, np.inf], "2 of the 4 evaluation rows have a NaN or infinite target"),
        ([0, 1, 1, 0], "the classes of a classifier"),
    ],
)
def test_targets_a_regressor_cannot_be_judged_on(target: list, message: str) -> None:
    from quantgate.errors import DataError
    from quantgate.onboarding import ModelConfig
    from quantgate.steps.context import Datasets
    from quantgate.steps.regression import check_targets

    cfg = ModelConfig(name="m", task="tabular-regression", label="y", calibration_data="c", evaluation_data="e")
    ev = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": target})
    good = pd.DataFrame({"x": [1.0], "y": [2.5]})
    with pytest.raises(DataError, match=message):
        check_targets(cfg, Datasets(calibration=good, evaluation=ev, reference=good))
    check_targets(cfg, Datasets(calibration=good, evaluation=ev.assign(y=[1.5, 2.0, 3.0, 7.0]), reference=good))
