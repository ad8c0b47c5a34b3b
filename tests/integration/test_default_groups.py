"""Default groups per class (issue 28): a classifier whose onboarding names no sensitive attribute
or slice is governed by the default policy, its group rules judged per class (the label column as
the group), the verdict saying so, and the demographic rules ``n/a`` without demographic columns.

A real small torch classifier (three classes), the shipped default policy, and the real steps:
search, evaluate, gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from quantgate.models.wrapped import WrappedModel
from quantgate.onboarding import ModelConfig
from quantgate.policy import load_policy
from quantgate.steps.context import Datasets, group_columns

pytestmark = pytest.mark.integration

FEATURES = [f"f{i}" for i in range(10)]
DEFAULT_POLICY = "policies/default.yaml"


def _world(settings: Any) -> tuple[ModelConfig, Any, WrappedModel, Datasets]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 10)).astype(np.float32)
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1] - 0.3 * x[:, 2], [-0.6, 0.6])  # classes 0, 1, 2
    module = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.Adam(module.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(module(torch.from_numpy(x[:600])), torch.from_numpy(y[:600])).backward()
        opt.step()
    df = pd.DataFrame(x, columns=FEATURES).assign(kind=y)
    model = WrappedModel(
        module.eval(), {"task": "tensor-classification", "feature_columns": FEATURES, "classes": [0, 1, 2]}
    )
    cfg = ModelConfig(
        name="no-groups", task="tensor-classification", label="kind", calibration_data="c", evaluation_data="e"
    )
    policy = load_policy(settings.path(DEFAULT_POLICY))
    policy = policy.model_copy(update={"search": policy.search.model_copy(update={"budget_trials": 3})})
    data = Datasets(calibration=df.iloc[:600], evaluation=df.iloc[600:], reference=df.iloc[:600])
    return cfg, policy, model, data


def test_a_classifier_without_groups_is_governed_per_class(settings: Any) -> None:
    from quantgate.steps.evaluate import evaluate_candidate
    from quantgate.steps.gate import check_measurable, gate
    from quantgate.steps.quantize import search_recipe

    cfg, policy, model, data = _world(settings)
    assert group_columns(cfg, policy) == ["kind"]
    check_measurable(cfg, policy, DEFAULT_POLICY)  # no refusal up front
    # the search judges the same per-class groups as the gate
    found = search_recipe(cfg, policy, model, data)
    # (a group's estimate over the tolerance is recorded and left to the policy's own group rule, the screen's judge)
    assert all(
        t["group_check"] == "passed" or t["group_check"].startswith("estimate over tolerance (kind=")
        for t in found.trace
        if t["metrics"]
    ), found.trace
    ev = evaluate_candidate(cfg, policy, model, found.candidate, data)
    groups = {(g.attribute, str(g.group)) for g in ev.comparison.groups}
    assert groups == {("kind", "0"), ("kind", "1"), ("kind", "2")}
    assert not ev.comparison.sensitive  # no demographic columns
    # the gate-time scores keep the label once, as the class index monitoring reads
    assert ev.scores is not None and "kind" not in ev.scores.columns
    assert ev.scores["label"].tolist() == data.evaluation["kind"].tolist()

    verdict = gate(cfg, policy, ev)
    rules = {r.rule_id: r for r in verdict.results}
    note = "groups are the classes of 'kind' (the default: the onboarding names no sensitive attribute or slice)"
    for rid in ("group-accuracy-drop", "flips-concentrated"):
        assert rules[rid].outcome in ("pass", "warn", "fail"), rules[rid]  # measured, not "not measured"
        assert rules[rid].evidence.startswith(note + ": "), rules[rid].evidence
    assert "worst group kind=" in rules["group-accuracy-drop"].evidence
    for rid in ("demographic-parity-gap", "equalized-odds-gap"):
        assert rules[rid].outcome == "n/a"
        assert rules[rid].evidence.startswith("not applicable: the model declares no sensitive attributes")
        assert "which are not demographic groups" in rules[rid].evidence
    assert verdict.unmeasured_rules == []
    # the other rules read as before
    assert note not in rules["accuracy-drop"].evidence


def test_declared_groups_replace_the_per_class_default(settings: Any) -> None:
    from quantgate.steps.evaluate import evaluate_candidate
    from quantgate.steps.gate import gate
    from quantgate.steps.quantize import quantize_candidate, resolve_recipe

    cfg, policy, model, data = _world(settings)
    data.evaluation["half"] = np.where(data.evaluation["f3"] > 0, "a", "b")
    sliced = cfg.model_copy(update={"slices": ["half"]})
    assert group_columns(sliced, policy) == ["half"]
    recipe = resolve_recipe("dynamic-int8", sliced, policy)
    assert recipe is not None
    candidate, _ = quantize_candidate(model, recipe, data)
    ev = evaluate_candidate(sliced, policy, model, candidate, data)
    assert {g.attribute for g in ev.comparison.groups} == {"half"}
    verdict = gate(sliced, policy, ev)
    assert all("classes of" not in r.evidence for r in verdict.results)
