"""Gate a regressor's candidate: ``regression_rules`` on a RegressionComparison, with evidence (pure).

The judging modes are those of the classifier rules (:mod:`quantgate.policy.verdict`): the upper
bound of the paired-bootstrap interval of the change, the estimate, or ``significant`` (over the
threshold and the interval excludes 0; over it with an interval including 0 is a warning at most).
A ``relative`` rule divides the change and its interval by fp32's value (of the whole evaluation,
or of the group). A policy without ``regression_rules`` cannot judge a regressor: an error, never
a pass; the classifier rules are ``n/a`` for a regressor, except the model-agnostic ``speedup`` and
``size_ratio`` bounds.
"""

from __future__ import annotations

import math
from dataclasses import replace

from quantgate.errors import ConfigError
from quantgate.evaluate.metrics import Comparison, Interval
from quantgate.evaluate.regression import RegressionComparison
from quantgate.policy.schema import Policy, RegressionRule
from quantgate.policy.verdict import (
    MODEL_AGNOSTIC,
    NOT_MEASURED,
    Outcome,
    RuleResult,
    Verdict,
    _draws,
    _judge,
    _le,
    _result,
    _significance,
    _usable_bound,
)

_NAN = float("nan")
_RANK = {"fail": 4, NOT_MEASURED: 3, "warn": 2, "pass": 1, "n/a": 0}


def _res(
    rule: RegressionRule, outcome: Outcome, observed: float, evidence: str, iv: Interval | None = None
) -> RuleResult:
    interval = (iv.low, iv.high) if iv is not None and not math.isnan(iv.low) else None
    return RuleResult(
        rule.id, rule.kind, rule.metric, rule.severity, outcome, observed, rule.threshold, interval, evidence
    )


def _fail_or_warn(rule: RegressionRule) -> Outcome:
    return "fail" if rule.severity == "block" else "warn"


def _missing(rule: RegressionRule, what: str, observed: float = _NAN, iv: Interval | None = None) -> RuleResult:
    effect = "fails the gate" if rule.severity == "block" else "warning"
    return _res(rule, NOT_MEASURED, observed, f"could not be measured: {what} ({effect})", iv)


def _scaled(iv: Interval | None, scale: float) -> Interval | None:
    if iv is None or scale == 1.0:
        return iv
    return replace(iv, estimate=iv.estimate / scale, low=iv.low / scale, high=iv.high / scale)


def _judge_one(rule: RegressionRule, change: float, iv: Interval | None, baseline: float, what: str) -> RuleResult:
    """One change (overall, or one group's), positive = worse, against the rule's threshold."""
    if math.isnan(change):
        return _missing(rule, f"the change of {what} was not measured")
    scale = 1.0
    if rule.relative:
        if not baseline > 0:
            return _missing(rule, f"{what}: fp32's value {baseline:.4g} cannot scale a relative threshold", change)
        scale = baseline
    c, siv = change / scale, _scaled(iv, scale)
    unit = " of fp32's" if rule.relative else ""
    shown = f"{c:+.4f}{unit}"
    ci = f" ({100 * siv.confidence:g}% CI {siv.low:+.4f}..{siv.high:+.4f}{_draws(siv)})" if siv is not None else ""
    if rule.judge_on == "significant":
        state = _significance(c, siv, rule.threshold)
        if state == "unmeasured":
            return _missing(rule, f"{what} {shown} is over {rule.threshold:g}, but {_usable_bound(what, siv)}", c, siv)
        outcome: Outcome = {"real": _fail_or_warn(rule), "noise": "warn", "within": "pass"}[state]  # type: ignore[assignment]
        why = {
            "within": f"within {rule.threshold:g}",
            "real": f"over {rule.threshold:g} and the interval excludes 0",
            "noise": f"over {rule.threshold:g} but the interval includes 0: not shown to be real (warning)",
        }[state]
        return _res(rule, outcome, c, f"{what} {shown}{ci}, {why}", siv)
    if rule.judge_on == "upper_bound":
        why_not = _usable_bound(what, siv)
        if why_not is not None:
            return _missing(rule, f"{what} {shown} but {why_not}", c, siv)
        assert siv is not None
        judged, on = siv.high, "upper bound"
    else:
        judged, on = c, "estimate"
    outcome = "pass" if _le(judged, rule.threshold) else _fail_or_warn(rule)
    return _res(rule, outcome, c, f"{what} {shown}{ci}, judged on {on}", siv)


def _judge_regression(rule: RegressionRule, cmp: RegressionComparison, min_group_size: int) -> RuleResult:
    m = rule.metric
    if rule.kind in ("max", "min"):
        v = cmp.value(m)
        if math.isnan(v):
            why = "no group was audited (none named, or all under min_group_size)" if m == "max_deviation_ratio" else ""
            return _missing(rule, f"{m} was not measured{': ' + why if why else ''}")
        ok = _le(rule.threshold, v) if rule.kind == "min" else _le(v, rule.threshold)
        extra = ""
        if m == "large_deviation_share" and cmp.deviations is not None:
            d = cmp.deviations
            tol = f"{100 * d.tolerance:g}% of |fp32|" if d.relative else f"{d.tolerance:g}"
            extra = f" ({d.count} of {d.n} predictions moved more than {tol})"
        return _res(rule, "pass" if ok else _fail_or_warn(rule), v, f"{m} = {v:.4f}{extra}")
    if rule.kind in ("max_increase", "max_drop"):
        word = "drop" if rule.kind == "max_drop" else "increase"
        r = _judge_one(rule, cmp.change(m), cmp.intervals.get(m), cmp.baseline[m], f"{m} {word}")
        r.evidence += f"; fp32 {cmp.baseline[m]:.4f} -> {cmp.candidate[m]:.4f}"
        return r
    # max_group_increase: every judged group, the worst decides
    groups = [g for g in cmp.groups if g.n >= min_group_size]
    if not groups:
        return _missing(rule, f"no group has at least min_group_size={min_group_size} rows (none named?)")
    judged = [
        (
            g,
            _judge_one(
                rule,
                g.increase,
                g.interval,
                g.baseline_mae,
                f"mae increase of {g.attribute}={g.group} (n={g.n}, {g.baseline_mae:.4f} -> {g.candidate_mae:.4f})",
            ),
        )
        for g in groups
    ]
    worst = max(judged, key=lambda t: (_RANK[t[1].outcome], t[1].observed if t[1].observed == t[1].observed else 0))
    r = worst[1]
    bad = [g for g, x in judged if x.outcome == r.outcome and g is not worst[0]]
    if bad and r.outcome != "pass":
        r.evidence += f"; {len(bad)} more group(s) {r.outcome}: " + ", ".join(
            f"{g.attribute}={g.group}" for g in bad[:5]
        )
    r.evidence = f"worst of {len(groups)} group(s): {r.evidence}"
    return r


def gate_regression_candidate(
    model: str, policy: Policy, cmp: RegressionComparison, extra: dict[str, float] | None = None
) -> Verdict:
    """Judge a regressor's candidate: every ``regression_rules`` entry on ``cmp``, and the policy's
    ``rules`` on the model-agnostic figures (``speedup``, ``size_ratio`` from ``extra``); the other
    classifier rules are ``n/a`` and say so. A policy without ``regression_rules`` is an error."""
    require_regression_rules(policy, model)
    v = Verdict(model, policy.name, policy.digest)
    values = extra or {}
    for rule in policy.rules_for(model):
        if rule.metric in MODEL_AGNOSTIC and rule.kind in ("min", "max"):
            v.results.append(_judge(rule, Comparison(0, {}, {}), values))
        else:
            v.results.append(
                _result(
                    rule,
                    "n/a",
                    _NAN,
                    f"not applicable: {rule.metric} is a classifier metric; a regressor is judged by regression_rules",
                )
            )
    for rrule in policy.regression_rules:
        v.results.append(_judge_regression(rrule, cmp, policy.min_group_size))
    return v


def require_regression_rules(policy: Policy, model: str, policy_path: str | None = None) -> None:
    """A policy with no ``regression_rules`` cannot judge a regressor: refused, never passed."""
    if not policy.regression_rules:
        where = f" ({policy_path})" if policy_path else ""
        raise ConfigError(
            f"policy '{policy.name}'{where} has no regression_rules: it cannot judge the regressor '{model}' "
            "(its rules need classes)",
            f"gate it with policies/regression.yaml (policy: in registry/models/{model}.yaml, or --policy), or add "
            "regression_rules to the policy",
        )
