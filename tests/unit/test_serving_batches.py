"""Issue 11, pure parts: the policy's serving batch sizes and target, the gate at every served batch
size (the worst decides and says which), batch dependence, the speed-ratio plausibility check, the
search's judge and the serving start-up line. No timing is asserted."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from quantgate.errors import ConfigError
from quantgate.evaluate.batching import changed_share, sample_rows
from quantgate.evaluate.metrics import Comparison, Interval
from quantgate.evaluate.runtime import speed_ratio
from quantgate.onboarding import ModelConfig
from quantgate.policy.schema import Policy, Rule, parse_policy
from quantgate.policy.verdict import gate_candidate

RULES = "rules:\n  - {id: acc, kind: max_drop, metric: accuracy, threshold: 0.01}\n"


def _cmp(drop: float, high: float, f1: float = 0.5) -> Comparison:
    return Comparison(
        n=100,
        baseline={"accuracy": 0.9, "f1": f1},
        candidate={"accuracy": 0.9 - drop, "f1": f1},
        intervals={"accuracy": Interval(drop, drop - 0.002, high, 0.95)},
    )


# --- policy ------------------------------------------------------------------------------------


def test_serving_defaults_to_batch_1_and_32_with_a_sample_and_no_target() -> None:
    p = parse_policy("name: p\n" + RULES)
    assert p.serving.batch_sizes == [1, 32] and p.serving.max_rows == 2000 and p.target is None


def test_serving_and_target_are_read_and_checked() -> None:
    p = parse_policy("name: p\ntarget: avx2\nserving: {batch_sizes: [8, 64], max_rows: null}\n" + RULES)
    assert p.serving.batch_sizes == [8, 64] and p.serving.max_rows is None and p.target == "avx2"
    with pytest.raises(ConfigError, match=r"serving\.batch_sizes: 0 is not a batch size"):
        parse_policy("name: p\nserving: {batch_sizes: [0, 32]}\n" + RULES)
    with pytest.raises(ConfigError, match="listed twice"):
        parse_policy("name: p\nserving: {batch_sizes: [32, 32]}\n" + RULES)
    with pytest.raises(ConfigError, match=r"serving\.batch: unknown key"):
        parse_policy("name: p\nserving: {batch: [1]}\n" + RULES)
    with pytest.raises(ConfigError, match="target"):
        parse_policy("name: p\ntarget: sse4\n" + RULES)


def test_the_onboarding_target_wins_over_the_policy_default() -> None:
    base = {"name": "m", "label": "y", "calibration_data": "c", "evaluation_data": "e"}
    assert ModelConfig.model_validate(base).target_for("avx2") == "avx2"
    assert ModelConfig.model_validate(base).target_for(None) == "auto"
    assert ModelConfig.model_validate({**base, "target": "arm64"}).target_for("avx2") == "arm64"


# --- the gate at served batch sizes --------------------------------------------------------------


def _policy(*rules: Rule) -> Policy:
    return Policy(name="p", rules=list(rules), digest="sha256:x")


def test_the_worst_served_batch_size_decides_and_is_named() -> None:
    policy = _policy(Rule(id="acc", kind="max_drop", metric="accuracy", threshold=0.01))
    main = _cmp(0.002, 0.006)
    served = {1: _cmp(0.006, 0.014), 32: _cmp(0.002, 0.007)}
    v = gate_candidate("m", policy, main, served=served)
    (r,) = v.results
    assert r.outcome == "fail" and r.batch_size == 1 and v.failed_rules == ["acc"]
    assert r.evidence.startswith("[decided at batch 1;") and "evaluation batching: pass" in r.evidence
    assert "batch 32: pass" in r.evidence and r.interval == pytest.approx((0.004, 0.014))
    # without the served comparisons the same evaluation passes: the batching is what failed it
    assert gate_candidate("m", policy, main).passed


def test_when_every_batching_passes_the_largest_bound_is_reported() -> None:
    policy = _policy(Rule(id="acc", kind="max_drop", metric="accuracy", threshold=0.01))
    v = gate_candidate("m", policy, _cmp(0.001, 0.004), served={1: _cmp(0.001, 0.003), 32: _cmp(0.003, 0.008)})
    assert v.passed and v.results[0].batch_size == 32


def test_rules_on_other_metrics_are_judged_at_the_evaluation_batching_only() -> None:
    policy = _policy(Rule(id="f1", kind="max_drop", metric="f1", threshold=0.01))
    served = {1: Comparison(100, {"f1": 0.9}, {"f1": 0.5}, intervals={"f1": Interval(0.4, 0.4, 0.4, 0.95)})}
    main = Comparison(100, {"f1": 0.9}, {"f1": 0.9}, intervals={"f1": Interval(0, 0, 0, 0.95)})
    v = gate_candidate("m", policy, main, served=served)
    assert v.passed and v.results[0].batch_size is None


# --- batch dependence ----------------------------------------------------------------------------


def test_sample_rows_is_seeded_ordered_and_complete_when_small() -> None:
    assert sample_rows(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    assert sample_rows(5, None, 0).tolist() == [0, 1, 2, 3, 4]
    a, b = sample_rows(1000, 50, 3), sample_rows(1000, 50, 3)
    assert a.tolist() == b.tolist() and len(set(a)) == 50 and (np.diff(a) > 0).all()
    assert a.tolist() != sample_rows(1000, 50, 4).tolist()


def test_changed_share_counts_predicted_classes_that_differ() -> None:
    a = np.array([[0.9, 0.1], [0.4, 0.6], [0.51, 0.49], [0.2, 0.8]])
    b = np.array([[0.9, 0.1], [0.4, 0.6], [0.49, 0.51], [0.25, 0.75]])
    share, biggest = changed_share(a, b)
    assert share == 0.25 and biggest == pytest.approx(0.05)
    assert all(math.isnan(x) for x in changed_share(np.zeros((0, 2)), np.zeros((0, 2))))


# --- speed ratio plausibility ----------------------------------------------------------------------


def test_a_steady_ratio_is_reliable() -> None:
    r = speed_ratio([2.0, 2.1, 1.9, 2.0, 2.2, 2.0], [1.0, 1.0, 0.95, 1.05, 1.1, 1.0], floor_ms=1e-4)
    assert r.reliable and r.value == pytest.approx(2.0) and r.spread < 0.2 and r.reason == ""


def test_a_ratio_whose_rounds_disagree_is_not_measured() -> None:
    # the host's load changed halfway: the baseline took 50x longer in some rounds
    r = speed_ratio([0.05, 2.5, 0.05, 2.6, 0.06, 2.4, 0.05, 2.5], [0.04] * 8, floor_ms=1e-4)
    assert not r.reliable and math.isnan(r.value) and r.measured > 1 and "spread" in r.reason


def test_a_call_below_the_timer_resolution_is_not_measured() -> None:
    r = speed_ratio([0.01] * 10, [0.00001] * 10, floor_ms=1e-4)
    assert not r.reliable and math.isnan(r.value) and "below the timer" in r.reason
    assert r.measured == pytest.approx(1000.0)


def test_too_few_rounds_or_none_is_not_measured() -> None:
    assert not speed_ratio([1.0, 1.0], [0.5, 0.5], floor_ms=1e-4).reliable
    assert speed_ratio([], [], floor_ms=1e-4).reason == "no timed rounds"


# --- serving warns on another ISA ----------------------------------------------------------------


def test_the_serving_start_up_line_warns_when_the_host_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantgate import hardware
    from quantgate.serve.server import hardware_line

    host = {"isa": "avx2", "cpu_model": "Some CPU"}
    monkeypatch.setattr(hardware, "host_info", lambda: host)
    line = hardware_line("avx512_vnni")
    assert line.startswith("warning:") and "avx512_vnni" in line and "avx2" in line
    assert hardware_line("avx2") == "hardware: gated for avx2, host avx2"
    assert hardware_line("") == "hardware: gated for an unrecorded target, host avx2"
    assert hardware_line("any") == "hardware: gated for any ISA, host avx2"


# --- the search judges as the gate does ------------------------------------------------------------


def test_gate_judge_refuses_a_drop_whose_upper_bound_exceeds_the_tolerance() -> None:
    import pandas as pd

    from quantgate.policy.schema import parse_policy
    from quantgate.steps.quantize import gate_judge

    cfg = ModelConfig(name="m", label="y", calibration_data="c", evaluation_data="e")
    policy = parse_policy("name: p\nbootstrap: {resamples: 200, seed: 0}\n" + RULES)
    y = np.ones(200, int)
    base = np.tile([0.2, 0.8], (200, 1))
    cand = base.copy()
    cand[0] = [0.8, 0.2]  # one row of 200 flips to wrong: drop 0.005, within the 0.01 tolerance
    ok, why, served = gate_judge(cfg, policy)(y, base, cand, pd.DataFrame({"x": np.zeros(200)}))
    assert not ok and "acc fail" in why and "judged on upper bound" in why
    ok, why, served = gate_judge(cfg, policy)(y, base, base, pd.DataFrame({"x": np.zeros(200)}))
    assert ok and "acc pass" in why
    # without the trial's model no served batching is scored, and the reason says so (never a pass)
    assert served is None and "served batch sizes not judged" in why
    # a policy whose only accuracy rule is a warning gives the search nothing to block on
    warn = parse_policy("name: p\n" + RULES.replace("threshold: 0.01}", "threshold: 0.01, severity: warn}"))
    assert gate_judge(cfg, warn)(y, base, cand, pd.DataFrame({"x": np.zeros(200)}))[0]


def test_gate_judge_corrects_for_the_search_picking_among_its_trials() -> None:
    """A drop whose 95% upper bound is within the tolerance, but not at the search's Bonferroni
    level over its trial budget: the gate alone would pass it, the search does not keep it."""
    import pandas as pd

    from quantgate.policy.schema import parse_policy
    from quantgate.steps.quantize import gate_judge, search_confidence

    cfg = ModelConfig(name="m", label="y", calibration_data="c", evaluation_data="e")
    policy = parse_policy("name: p\nbootstrap: {resamples: 200, seed: 0}\nsearch: {budget_trials: 8}\n" + RULES)
    conf, resamples = search_confidence(policy)
    assert conf == pytest.approx(1 - 0.05 / 8) and resamples >= 10 / ((1 - conf) / 2)
    n = 1000
    y = np.ones(n, int)
    base = np.tile([0.2, 0.8], (n, 1))
    base[:100] = [0.8, 0.2]
    cand = base.copy()
    cand[100:105] = [0.8, 0.2]  # 5 of 1,000 rows flip to wrong: drop 0.005
    rows = pd.DataFrame({"x": np.zeros(n)})
    from quantgate.steps.evaluate import policy_compare

    at_95 = policy_compare(cfg, policy, rows, [])(y, base, cand, np.arange(n)).intervals["accuracy"]
    assert at_95.high <= 0.01  # the gate's own level passes it
    ok, why, _ = gate_judge(cfg, policy)(y, base, cand, rows)
    assert not ok and "Bonferroni over 8 trials" in why and "acc fail" in why
    ok, why, _ = gate_judge(cfg, policy, correct_for_search=False)(y, base, cand, rows)  # the gate's own level
    assert ok and "at 95% confidence" in why and "Bonferroni" not in why
    one = parse_policy("name: p\nbootstrap: {resamples: 200, seed: 0}\nsearch: {budget_trials: 1}\n" + RULES)
    assert gate_judge(cfg, one)(y, base, cand, rows)[0]  # one trial: nothing to correct for


def test_the_tuner_refuses_a_trial_the_judge_refuses() -> None:
    import pandas as pd
    import torch

    from quantgate.models.wrapped import WrappedModel
    from quantgate.quantize.torch_backend import DynamicInt8Recipe
    from quantgate.quantize.tuner import tune

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model = WrappedModel(module, {"task": "tensor-classification", "feature_columns": list("abcd"), "classes": [0, 1]})
    rows = pd.DataFrame(np.random.default_rng(0).normal(size=(64, 4)), columns=list("abcd"))
    rows["y"] = model.predict_proba(rows).argmax(1)
    seen: list[int] = []

    def refuse(
        y: np.ndarray, base: np.ndarray, cand: np.ndarray, df: pd.DataFrame, candidate: WrappedModel
    ) -> tuple[bool, str, None]:
        seen.append(len(y))
        assert candidate.module is not model.module  # the trial's own model, to score at served batch sizes
        return False, "gate rules on the search rows: acc fail: made up", None

    common: dict[str, Any] = {"tolerance_overall": 1.0, "candidates": [DynamicInt8Recipe()], "budget_trials": 1}
    res = tune(model, rows, "y", judge=refuse, **common)
    assert res.best is None and seen == [64] and "acc fail: made up" in res.trace[0].reason
    res = tune(model, rows, "y", judge=lambda *a: (True, "gate rules on the search rows: acc pass", None), **common)
    assert res.best is not None and res.trace[0].reason.startswith("gate rules on the search rows: acc pass")
