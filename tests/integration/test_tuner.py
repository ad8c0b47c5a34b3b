"""The tuner on the real Adult MLP: with a tight tolerance the naive recipe fails, and the tuner
falls back the most sensitive layer to fp32; the trace shows the failing trial and why."""

from __future__ import annotations

import json

import torch

from quantgate.models.wrapped import WrappedModel
from quantgate.quantize.recipes import DynamicInt8Recipe, recipe_from_dict
from quantgate.quantize.tuner import tune


def _adult() -> tuple[WrappedModel, object, list[tuple[torch.Tensor, ...]]]:
    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC, load_adult
    from quantgate.models.tabular import TabularPreprocessor, train_mlp

    torch.set_num_threads(2)
    train, test = load_adult()
    train, test = train.sample(3000, random_state=0), test.sample(2000, random_state=0)
    pre = TabularPreprocessor.fit(train, ADULT_NUMERIC, ADULT_CATEGORICAL)
    module = train_mlp(pre.transform(train), train[ADULT_LABEL].to_numpy(), seed=0)
    spec = {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]}
    model = WrappedModel(module, spec)
    return model, test, model.batches(train.head(512), 64)


def test_tight_tolerance_picks_a_fallback_and_the_trace_says_why() -> None:
    model, test, calib = _adult()
    res = tune(
        model,
        test,  # type: ignore[arg-type]
        "income",
        ["sex", "race"],
        tolerance_overall=0.01,
        tolerance_group=0.02,
        max_flip_rate=0.006,
        candidates=[DynamicInt8Recipe()],
        calibration=calib,
        budget_trials=6,
        budget_seconds=120,
    )
    assert res.best is not None and res.module is not None
    assert res.best.exclude, "the naive recipe should not have passed"
    # the excluded layer is the most sensitive one
    top = next(iter(res.sensitivity))
    assert res.best.exclude[0] == top
    first, last = res.trace[0], res.trace[-1]
    assert first.label == "dynamic-int8" and not first.passed and "flip rate" in first.reason
    assert last.passed and "fallback of 1 most sensitive" in last.reason
    assert last.kept_float == 1 and last.quantized == 2
    assert last.group_check == "passed" and res.group_check == "passed"
    # the trace is JSON for the model card, and its recipes round-trip
    dumped = json.loads(json.dumps(res.trace_dicts()))
    assert recipe_from_dict(dumped[-1]["recipe"]) == res.best
    for t in dumped:
        assert {"accuracy", "accuracy_drop", "worst_group_drop", "p50_ms", "bytes"} <= set(t["metrics"])


def test_default_candidates_search_all_and_respect_budget() -> None:
    model, test, calib = _adult()
    res = tune(
        model,
        test,  # type: ignore[arg-type]
        "income",
        ["sex"],
        tolerance_overall=0.02,
        calibration=calib,
        budget_trials=3,
        budget_seconds=120,
    )
    assert len(res.trace) <= 3
    assert res.best is not None  # at a 2-point tolerance something passes
    # the lossless runtime change first (it spends no accuracy), then the fastest int8
    assert [t.label for t in res.trace[:2]] == ["ort-fp32", "ort-dynamic-int8"]
    assert res.trace[0].passed and res.trace[0].metrics["accuracy_drop"] == 0.0
    assert res.trace[0].metrics["param_share"] == 0.0


def test_lossless_recipe_that_meets_the_speed_objective_ends_the_search() -> None:
    from quantgate.quantize.onnx_backend import OrtFp32Recipe

    model, test, calib = _adult()
    res = tune(
        model,
        test,  # type: ignore[arg-type]
        "income",
        tolerance_overall=0.0,
        candidates=[OrtFp32Recipe(), DynamicInt8Recipe()],
        calibration=calib,
        min_speedup=0.0,
        budget_trials=4,
        budget_seconds=120,
    )
    first = res.trace[0]
    if first.metrics["speedup_reliable"]:
        assert res.best == OrtFp32Recipe() and len(res.trace) == 1
        assert "no accuracy spent" in res.chosen_because
    else:  # a speedup not measured reliably (a loaded host) never meets the objective: the search goes on
        assert first.passed and "speed not measured reliably" in first.reason and len(res.trace) > 1
        assert first.metrics["speedup"] != first.metrics["speedup"]  # NaN


def test_group_check_that_could_not_run_is_not_a_pass() -> None:
    model, test, _ = _adult()
    res = tune(
        model,
        test,  # type: ignore[arg-type]
        "income",
        ["sex", "race"],
        tolerance_overall=0.05,
        tolerance_group=0.0001,
        min_group_rows=10**6,  # no group is this large
        candidates=[DynamicInt8Recipe()],
        budget_trials=2,
        budget_seconds=60,
    )
    assert res.trace, "one trial at least"
    for t in res.trace:
        assert t.group_check == "not run (no group with >= 1000000 rows)"
        assert t.metrics["worst_group_drop"] is None
        assert "group check not run" in t.reason or not t.passed
    assert res.best is not None and res.group_check_not_run
    dumped = json.loads(json.dumps(res.trace_dicts()))
    assert dumped[0]["group_check"].startswith("not run") and dumped[0]["metrics"]["worst_group_drop"] is None


def test_impossible_tolerance_returns_no_recipe_with_a_full_trace() -> None:
    model, test, _ = _adult()
    res = tune(
        model,
        test,  # type: ignore[arg-type]
        "income",
        tolerance_overall=-1.0,
        candidates=[DynamicInt8Recipe()],
        budget_trials=10,
        budget_seconds=60,
    )
    assert res.best is None and res.module is None
    assert all(not t.passed for t in res.trace) and len(res.trace) == 3  # full + fallback of 1 and 2
