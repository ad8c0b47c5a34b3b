"""Issue 11 on a real model: a small Adult MLP, its torch dynamic-int8 candidate (activation scales
computed per batch), evaluated by the real evaluation step at the policy's served batch sizes; the
gate judges the accuracy rule at each and names the batching that decided; the card shows the
batch dependence."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from helpers import ROOT

from quantgate.onboarding import ModelConfig
from quantgate.policy.schema import parse_policy

POLICY = """name: served
bootstrap: {resamples: 100, seed: 0}
serving: {batch_sizes: [32, 1], max_rows: 200}
rules:
  - {id: accuracy-drop, kind: max_drop, metric: accuracy, threshold: 0.02}
  - {id: group-drop, kind: max_group_drop, metric: accuracy, threshold: 0.05, severity: warn}
"""


@pytest.fixture(scope="module")
def adult() -> tuple[Any, Any, Any]:
    import torch

    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC, load_adult
    from quantgate.models.tabular import TabularPreprocessor, train_mlp
    from quantgate.models.wrapped import WrappedModel
    from quantgate.quantize.torch_backend import DynamicInt8Recipe
    from quantgate.steps.quantize import quantize_candidate

    torch.set_num_threads(2)
    train, test = load_adult()
    train = train.sample(1000, random_state=0)
    pre = TabularPreprocessor.fit(train, ADULT_NUMERIC, ADULT_CATEGORICAL)
    module = train_mlp(pre.transform(train), train[ADULT_LABEL].to_numpy(), seed=0, epochs=3)
    model = WrappedModel(module, {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]})
    candidate, _ = quantize_candidate(model, DynamicInt8Recipe())
    return model, candidate, test.sample(400, random_state=1).reset_index(drop=True)


def test_gate_at_served_batch_sizes_and_batch_dependence_on_the_card(settings: Any, adult: Any) -> None:
    from quantgate.cards.card import render_model_card
    from quantgate.steps.context import Datasets
    from quantgate.steps.evaluate import evaluate_candidate
    from quantgate.steps.gate import gate

    model, candidate, rows = adult
    cfg = ModelConfig(
        name="adult-income",
        label="income",
        calibration_data="-",
        evaluation_data="-",
        sensitive_attributes=["sex"],
    )
    policy = parse_policy(POLICY)
    ev = evaluate_candidate(cfg, policy, model, candidate, Datasets(rows.head(100), rows, rows))
    served = ev.served
    assert served is not None and served.batch_sizes == [1, 32]
    assert (served.rows, served.of_rows, served.sampled) == (200, 400, True)
    assert set(served.comparisons) == {1, 32} and all(c.n == 200 for c in served.comparisons.values())

    # batch 1 really is one row per call: the same as scoring each sampled row alone
    from quantgate.evaluate.batching import sample_rows

    pos = sample_rows(400, 200, policy.bootstrap.seed)
    alone = np.concatenate([candidate.predict_proba(rows.iloc[[i]]) for i in pos[:20]])
    assert np.allclose(candidate.predict_proba_served(rows.iloc[pos[:20]], 1), alone, atol=1e-6)
    # per-batch activation scales: batch 1 and batch 32 give different probabilities
    assert served.changed_between == (1, 32) and 0.0 <= served.changed_share <= 1.0
    assert served.max_proba_change > 0.0
    p1, p32 = candidate.predict_proba_served(rows.iloc[pos], 1), candidate.predict_proba_served(rows.iloc[pos], 32)
    assert served.changed_share == pytest.approx(float((p1.argmax(1) != p32.argmax(1)).mean()))

    verdict = gate(cfg, policy, ev)
    acc = next(r for r in verdict.results if r.rule_id == "accuracy-drop")
    assert acc.evidence.startswith("[decided at ") and "batch 1: " in acc.evidence and "batch 32: " in acc.evidence
    drops = {b: c.drop("accuracy") for b, c in served.comparisons.items()}
    if acc.batch_size is not None:  # the decisive batching's own figures are the ones reported
        assert acc.observed == pytest.approx(drops[acc.batch_size])
    group = next(r for r in verdict.results if r.rule_id == "group-drop")
    assert "evaluation batching" in group.evidence

    # the card shows the served table and the batch dependence
    spec = importlib.util.spec_from_file_location("card_fixture", ROOT / "tests" / "unit" / "test_cards.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ctx = mod.make_context()
    ctx["served"] = served.to_dict()
    md, twin = render_model_card(ctx, settings)
    assert "Batch dependence: **" in md and "between batch 1 and batch 32" in md
    assert "seeded sample of 200 of the 400 evaluation rows" in md
    assert f"{100 * served.changed_share:.2f}%" in md
    assert twin["served"]["by_batch_size"][0]["batch_size"] == 1


def test_the_search_judges_each_trial_at_the_served_batch_sizes(adult: Any) -> None:
    """The search's judge scores a trial at each served batch size with the gate's batching code,
    and the worst batching decides: here the served sample holds the hard rows, so a minimum
    accuracy between the two passes at the search's batching and fails at the served ones."""
    from quantgate.evaluate.batching import sample_rows
    from quantgate.models.outputs import class_index
    from quantgate.quantize.torch_backend import DynamicInt8Recipe
    from quantgate.quantize.tuner import tune
    from quantgate.steps.quantize import gate_judge

    model, candidate, rows = adult
    cfg = ModelConfig(name="adult-income", label="income", calibration_data="-", evaluation_data="-")
    y = class_index(rows["income"], model.classes)
    wrong = candidate.predict_proba(rows).argmax(1) != y
    # put the rows the candidate gets wrong where the served sample (seed 0, 200 of 400) is drawn
    pos = sample_rows(len(rows), 200, 0)
    rest = np.setdiff1d(np.arange(len(rows)), pos)
    ranked = np.argsort(~wrong, kind="stable")  # wrong rows first
    order = np.empty(len(rows), int)
    order[pos], order[rest] = ranked[: len(pos)], ranked[len(pos) :]
    rows = rows.iloc[order].reset_index(drop=True)
    y = y[order]
    everywhere = float((candidate.predict_proba(rows).argmax(1) == y).mean())
    served_acc = {
        b: float((candidate.predict_proba_served(rows.iloc[pos], b).argmax(1) == y[pos]).mean()) for b in (1, 32)
    }
    assert max(served_acc.values()) < everywhere  # the sample holds the hard rows

    def search(threshold: float) -> Any:
        policy = parse_policy(
            f"name: served\nbootstrap: {{resamples: 50, seed: 0}}\nserving: {{batch_sizes: [32, 1], max_rows: 200}}\n"
            f"rules:\n  - {{id: min-accuracy, kind: min, metric: accuracy, threshold: {threshold}}}\n"
        )
        res = tune(
            model,
            rows,
            "income",
            tolerance_overall=1.0,
            candidates=[DynamicInt8Recipe()],
            budget_trials=1,
            judge=gate_judge(cfg, policy),
        )
        return res.trace[0]

    between = (max(served_acc.values()) + everywhere) / 2
    trial = search(between)
    assert not trial.passed and "min-accuracy fail" in trial.reason
    assert "[decided at batch " in trial.reason and "evaluation batching: pass" in trial.reason
    # the trial was scored at each served batch size, on the same 200 rows, as the gate scores them
    by = {d["batch_size"]: d for d in trial.served["by_batch_size"]}
    assert set(by) == {1, 32} and all(d["n"] == 200 for d in by.values())
    for b, acc in served_acc.items():
        assert by[b]["candidate_accuracy"] == pytest.approx(acc)
    assert trial.served["changed_between"] == [1, 32]

    # below every batching's accuracy the same trial passes, its served record kept
    trial = search(min(served_acc.values()) - 0.05)
    assert trial.passed and "at served batch 1, 32" in trial.reason and len(trial.served["by_batch_size"]) == 2
