"""The shipped default policy blocks what a governance team would block, and nothing else.

- a group's accuracy drop that is large (estimate over 3 pt) and real (paired interval excludes 0)
  blocks; a large drop whose interval includes 0 warns; a group under ``min_group_size`` is not
  judged; flips significantly concentrated in a group (Holm-adjusted) block;
- ``policies/permissive.yaml`` reports the same findings as warnings.

The comparisons are computed from prediction arrays by the real evaluation code (``compare``,
``flip_audit``), so the intervals are the paired-bootstrap ones the gate sees in production.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.errors import ConfigError
from quantgate.evaluate.audit import flip_audit
from quantgate.evaluate.metrics import Comparison, GroupMetric, Interval, compare
from quantgate.policy.schema import Policy, Rule, load_policy, parse_policy
from quantgate.policy.verdict import gate_candidate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def default() -> Policy:
    return load_policy(ROOT / "policies" / "default.yaml")


@pytest.fixture(scope="module")
def permissive() -> Policy:
    return load_policy(ROOT / "policies" / "permissive.yaml")


def _rows(sizes: dict[str, int], worse: dict[str, int], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Labels, fp32 and candidate predictions, group column: fp32 is right on 90% of each group;
    the candidate equals fp32 except on ``worse[g]`` rows of group g that fp32 got right."""
    rng = np.random.default_rng(seed)
    ys, bs, cs, gs = [], [], [], []
    for g, n in sizes.items():
        y = rng.integers(0, 2, n)
        base = y.copy()
        wrong = rng.choice(n, n // 10, replace=False)
        base[wrong] = 1 - base[wrong]
        cand = base.copy()
        right = np.setdiff1d(np.arange(n), wrong)
        hurt = rng.choice(right, worse.get(g, 0), replace=False)
        cand[hurt] = 1 - cand[hurt]
        ys.append(y)
        bs.append(base)
        cs.append(cand)
        gs += [g] * n
    return np.concatenate(ys), np.concatenate(bs), np.concatenate(cs), np.array(gs)


def _gate(policy: Policy, sizes: dict[str, int], worse: dict[str, int]) -> tuple[object, Comparison]:
    y, base, cand, g = _rows(sizes, worse)
    b = policy.bootstrap
    cmp = compare(
        y,
        base,
        cand,
        groups=pd.DataFrame({"grp": g}),
        min_group_size=policy.min_group_size,
        resamples=b.resamples,
        confidence=b.confidence,
        seed=b.seed,
    )
    # only the group rule is under test here: the overall rule is judged on its own in test_verdict
    only = policy.model_copy(update={"rules": [r for r in policy.rules if r.id == "group-accuracy-drop"]})
    return gate_candidate("m", only, cmp), cmp


def test_default_blocks_a_large_and_real_group_drop(default: Policy) -> None:
    # group b (n=2000) loses 100 correct predictions: 5 pt, interval well above 0
    v, cmp = _gate(default, {"a": 4000, "b": 2000}, {"b": 100})
    iv = cmp.intervals["group:grp=b"]
    assert iv.estimate == pytest.approx(0.05) and iv.low > 0
    r = v.results[0]
    assert r.outcome == "fail" and not v.passed
    assert "grp=b" in r.evidence and "excludes 0" in r.evidence


def test_default_warns_on_a_large_drop_whose_interval_includes_zero(default: Policy) -> None:
    # group b has 40 rows (>= min_group_size 30) and loses 3: 7.5 pt, but its paired interval reaches 0
    v, cmp = _gate(default, {"a": 4000, "b": 40}, {"b": 3})
    iv = cmp.intervals["group:grp=b"]
    assert iv.estimate == pytest.approx(0.075) and iv.low <= 0 < iv.high
    r = v.results[0]
    assert r.outcome == "warn" and v.passed
    assert "includes 0" in r.evidence and "grp=b" in r.evidence


def test_default_does_not_judge_a_group_under_min_group_size(default: Policy) -> None:
    # group b has 20 rows and loses 10 of them (50 pt): below min_group_size, not evaluated, no block
    v, cmp = _gate(default, {"a": 4000, "b": 20}, {"b": 10})
    assert [g.group for g in cmp.groups] == ["a"]
    assert v.results[0].outcome == "pass" and v.passed


def test_group_under_min_group_size_is_skipped_by_the_gate_itself(default: Policy) -> None:
    """Even when the evaluation kept a small group (computed with a lower minimum), the policy's
    min_group_size decides what the group rule judges."""
    groups = [GroupMetric("g", "big", 500, 0.9, 0.9), GroupMetric("g", "tiny", 12, 0.9, 0.5)]
    cmp = Comparison(
        512,
        {"accuracy": 0.9},
        {"accuracy": 0.89},
        groups,
        {"group:g=big": Interval(0.0, 0.0, 0.0, 0.95), "group:g=tiny": Interval(0.4, 0.2, 0.6, 0.95)},
    )
    only = default.model_copy(update={"rules": [r for r in default.rules if r.id == "group-accuracy-drop"]})
    r = gate_candidate("m", only, cmp).results[0]
    assert r.outcome == "pass" and "1 group(s) under min_group_size=30 not judged" in r.evidence


def test_permissive_only_warns_on_the_same_real_drop(permissive: Policy) -> None:
    v, _ = _gate(permissive, {"a": 4000, "b": 2000}, {"b": 100})
    assert v.results[0].outcome == "warn" and v.passed


def _flips(concentrated: bool) -> tuple[float, object]:
    """10 groups of 300 rows. Concentrated: 80 of 100 flips in g0 (10% of the rows). Not: 6 of
    20 flips in g0, which is p < 0.05 for g0 alone but not after Holm over the 10 groups."""
    rng = np.random.default_rng(1)
    groups = np.repeat([f"g{i}" for i in range(10)], 300)
    y = rng.integers(0, 2, 3000)
    p = np.where(y == 1, 0.8, 0.2)
    base = np.column_stack([1 - p, p])
    cand = base.copy()
    in_g0, rest = np.flatnonzero(groups == "g0"), np.flatnonzero(groups != "g0")
    k0, k_rest = (80, 20) if concentrated else (6, 14)
    flip = np.r_[rng.choice(in_g0, k0, replace=False), rng.choice(rest, k_rest, replace=False)]
    cand[flip] = cand[flip][:, ::-1]
    audit = flip_audit(pd.DataFrame({"grp": groups}), y, base, cand, group_columns=["grp"], min_group_size=30)
    return audit.max_ratio, audit


def test_default_blocks_significantly_concentrated_flips(default: Policy) -> None:
    ratio, audit = _flips(concentrated=True)
    g0 = next(g for g in audit.groups if g.group == "g0")
    assert g0.ratio == pytest.approx(8.0) and g0.p_adjusted < 0.05
    only = default.model_copy(update={"rules": [r for r in default.rules if r.id == "flips-concentrated"]})
    v = gate_candidate("m", only, _cmp_stub(), {"max_flip_ratio": ratio})
    assert v.results[0].outcome == "fail" and v.failed_rules == ["flips-concentrated"]


def test_a_few_flips_in_one_group_of_many_do_not_block(default: Policy) -> None:
    ratio, audit = _flips(concentrated=False)
    g0 = next(g for g in audit.groups if g.group == "g0")
    assert g0.ratio == pytest.approx(3.0) and g0.p_value < 0.05 <= g0.p_adjusted  # chance, after 10 tests
    assert ratio == 1.0 and audit.over_represented == []
    only = default.model_copy(update={"rules": [r for r in default.rules if r.id == "flips-concentrated"]})
    assert gate_candidate("m", only, _cmp_stub(), {"max_flip_ratio": ratio}).passed


def _cmp_stub() -> Comparison:
    return Comparison(100, {"accuracy": 0.9}, {"accuracy": 0.9}, intervals={"accuracy": Interval(0, 0, 0, 0.95)})


def test_significant_on_an_overall_rule() -> None:
    rule = Rule(id="r", kind="max_drop", metric="accuracy", threshold=0.01, judge_on="significant")
    policy = Policy(name="p", rules=[rule])

    def outcome(low: float, high: float, est: float = 0.02) -> str:
        cmp = Comparison(
            1000, {"accuracy": 0.9}, {"accuracy": 0.9 - est}, intervals={"accuracy": Interval(est, low, high, 0.95)}
        )
        return gate_candidate("m", policy, cmp).results[0].outcome

    assert outcome(0.005, 0.035) == "fail"  # large and real
    assert outcome(-0.004, 0.044) == "warn"  # large, interval includes 0
    assert outcome(-0.01, 0.03, est=0.01) == "pass"  # at the threshold
    assert outcome(float("nan"), float("nan")) == "not measured"


def test_significant_is_refused_on_absolute_rules() -> None:
    with pytest.raises(ConfigError, match="judge_on: significant"):
        parse_policy(
            "name: p\nrules:\n  - {id: f, kind: max, metric: flip_rate, threshold: 0.1, judge_on: significant}\n"
        )


def test_shipped_default_blocks_group_and_flip_rules(default: Policy) -> None:
    rules = {r.id: r for r in default.rules}
    assert rules["group-accuracy-drop"].severity == "block"
    assert rules["group-accuracy-drop"].judge_on == "significant"
    assert rules["group-accuracy-drop"].threshold == 0.03
    assert rules["flips-concentrated"].severity == "block"
    assert default.min_group_size == 30
