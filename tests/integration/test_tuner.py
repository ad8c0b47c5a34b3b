"""The tuner on the real Adult MLP: with a tight tolerance the naive recipe fails, and the tuner
falls back the most sensitive layer to fp32; the trace shows the failing trial and why."""

from __future__ import annotations

import json

import pytest
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


def _tied(modules: dict[str, torch.nn.Module], batch: object, **_: object) -> dict[str, list[float]]:
    """A host whose timing cannot separate the passing modules: every module, every round, the same."""
    return {name: [1.0] * 12 for name in modules}


def test_pick_prefers_the_quantized_recipe_over_ort_fp32_when_timings_tie() -> None:
    from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe

    model, test, calib = _adult()
    res = tune(
        model,
        test,  # type: ignore[arg-type]
        "income",
        tolerance_overall=0.05,
        candidates=[OrtFp32Recipe(), OrtDynamicInt8Recipe()],
        calibration=calib,
        budget_trials=2,
        budget_seconds=120,
        pick_timer=_tied,
    )
    fp32, int8 = res.trace
    assert fp32.passed and int8.passed, [t.reason for t in res.trace]
    assert int8.metrics["bytes"] < fp32.metrics["bytes"] and int8.metrics["compute_param_share"] == 1.0
    assert res.best is not None and res.best.TYPE == "ort-dynamic-int8"
    assert [r[2].label for r in res.ranked] == ["ort-dynamic-int8", "ort-fp32"]
    assert res.chosen_because == int8.pick and int8.pick.startswith("#1: ort-dynamic-int8, speed tied (")
    assert "within the timing noise of ort-fp32 (1.00x" in int8.pick and "vs ort-fp32 (" in int8.pick
    assert fp32.pick.startswith("#2: ort-fp32")
    assert json.loads(json.dumps(res.trace_dicts()))[1]["pick"] == int8.pick  # the card's search table


def test_the_search_screens_and_the_gate_certifies_on_the_evaluation_rows() -> None:
    """search_recipe ranks the trials that pass the screen on the calibration rows; certify runs the
    real evaluation and gate steps on the evaluation rows, best first, at the corrected confidence."""
    import numpy as np
    import pandas as pd
    from torch import nn

    from quantgate.onboarding import ModelConfig
    from quantgate.policy.schema import parse_policy
    from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe
    from quantgate.steps.context import Datasets
    from quantgate.steps.evaluate import evaluate_candidate
    from quantgate.steps.gate import gate
    from quantgate.steps.quantize import certify, certify_confidence, search_recipe

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    module = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(module.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(module(torch.from_numpy(x[:600])), torch.from_numpy(y[:600])).backward()
        opt.step()
    features = [f"f{i}" for i in range(8)]
    df = pd.DataFrame(x, columns=features).assign(y=y)
    model = WrappedModel(module, {"task": "tensor-classification", "feature_columns": features, "classes": [0, 1]})
    cfg = ModelConfig(name="mlp", task="tensor-classification", label="y", calibration_data="c", evaluation_data="e")
    data = Datasets(calibration=df.iloc[:600], evaluation=df.iloc[600:], reference=df.iloc[:600])
    policy = parse_policy(
        "name: certify\nbootstrap: {resamples: 200, confidence: 0.95, seed: 0}\n"
        "search: {budget_trials: 4, budget_seconds: 300, certify: 2}\nserving: {batch_sizes: [1, 32], max_rows: 200}\n"
        "rules:\n  - {id: accuracy-drop, kind: max_drop, metric: accuracy, threshold: 0.05}\n",
        "certify.yaml",
    )
    found = search_recipe(
        cfg, policy, model, data, candidates=[OrtFp32Recipe(), OrtDynamicInt8Recipe(), DynamicInt8Recipe()]
    )
    assert all(t["passed"] for t in found.trace), [t["reason"] for t in found.trace]
    assert all(t["reason"].startswith("screen: gate rules on the search rows at 95% confidence") for t in found.trace)
    assert [found.trace[pos]["pick"][:3] for *_, pos in found.ranked] == ["#1:", "#2:", "#3:"]
    conf, resamples = certify_confidence(policy, len(found.ranked))
    assert conf == pytest.approx(0.975) and resamples >= 800
    cert = certify(
        policy,
        found,
        lambda judged, cand: evaluate_candidate(cfg, judged, model, cand, data),
        lambda judged, ev: gate(cfg, judged, ev),
    )
    assert cert.verdict.passed and cert.recipe == found.ranked[0][0]
    assert cert.evaluation.comparison.intervals["accuracy"].confidence == pytest.approx(0.975)
    first = found.trace[found.ranked[0][3]]
    assert first["certified"] == {"order": 1, "of": 2, "confidence": conf, "status": "pass", "failed_rules": []}
    assert first["pick"].endswith("certified 1/2 on the evaluation rows at 97.50%: pass")
    assert all(found.trace[pos]["pick"].endswith("; not certified") for *_, pos in found.ranked[1:])
    search = cert.candidate.spec["quantization"]["search"]
    assert search["summary"] == cert.summary and "certified " + cert.recipe.label in cert.summary
