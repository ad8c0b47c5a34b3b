"""Gate a candidate: policy rules applied to a Comparison, rule by rule, with evidence (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from quantgate.evaluate.metrics import Comparison
from quantgate.policy.schema import Policy, Rule

Outcome = Literal["pass", "warn", "fail", "n/a"]
FAIRNESS_GAPS = frozenset({"dp_difference", "eo_difference"})


@dataclass
class RuleResult:
    rule_id: str
    kind: str
    metric: str
    severity: str
    outcome: Outcome
    observed: float
    bound: float
    interval: tuple[float, float] | None = None
    evidence: str = ""


@dataclass
class Verdict:
    model: str
    policy_name: str
    policy_digest: str
    results: list[RuleResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(r.outcome == "fail" for r in self.results)

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"

    @property
    def failed_rules(self) -> list[str]:
        return [r.rule_id for r in self.results if r.outcome == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "status": self.status,
            "policy": self.policy_name,
            "policy_digest": self.policy_digest,
            "rules": [asdict(r) for r in self.results],
        }

    def to_json(self) -> str:
        """Strict JSON: an unmeasured value (NaN) is written as null."""
        return json.dumps(_nan_to_none(self.to_dict()), indent=2, allow_nan=False)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def _le(a: float, b: float) -> bool:
    """a <= b, forgiving float noise (0.90 - 0.89 is 0.010000000000000009)."""
    return a <= b + 1e-12


def _outcome(ok: bool, rule: Rule) -> Outcome:
    if ok:
        return "pass"
    return "fail" if rule.severity == "block" else "warn"


def _result(
    rule: Rule, outcome: Outcome, observed: float, evidence: str, interval: tuple[float, float] | None = None
) -> RuleResult:
    return RuleResult(
        rule.id, rule.kind, rule.metric, rule.severity, outcome, observed, rule.threshold, interval, evidence
    )


def _missing(rule: Rule, what: str) -> RuleResult:
    return _result(rule, _outcome(False, rule), float("nan"), f"{what} was not measured")


def _judge_change(rule: Rule, cmp: Comparison) -> RuleResult:
    """max_drop / max_increase: the change that makes the candidate worse, positive = worse."""
    m = rule.metric
    if m in FAIRNESS_GAPS and not cmp.sensitive:
        return _result(rule, "n/a", float("nan"), "not applicable: the model declares no sensitive attributes")
    if m not in cmp.baseline or m not in cmp.candidate or math.isnan(cmp.baseline[m]) or math.isnan(cmp.candidate[m]):
        return _missing(rule, m)
    change = cmp.baseline[m] - cmp.candidate[m] if rule.kind == "max_drop" else cmp.candidate[m] - cmp.baseline[m]
    word = "drop" if rule.kind == "max_drop" else "increase"
    iv = cmp.intervals.get(m)
    use_bound = rule.judge_on == "upper_bound" and iv is not None and not math.isnan(iv.high)
    judged = iv.high if use_bound and iv is not None else change
    if iv is not None and not math.isnan(iv.high):
        ev = (
            f"{word} {change:+.4f} ({100 * iv.confidence:g}% CI {iv.low:+.4f}..{iv.high:+.4f}), "
            f"judged on {'upper bound' if use_bound else 'estimate'}"
        )
    else:
        ev = f"{word} {change:+.4f}"
    return _result(
        rule,
        _outcome(_le(judged, rule.threshold), rule),
        change,
        f"{ev}; fp32 {cmp.baseline[m]:.4f} -> {cmp.candidate[m]:.4f}",
        (iv.low, iv.high) if iv is not None else None,
    )


def _judge_groups(rule: Rule, cmp: Comparison) -> RuleResult:
    if not cmp.groups:
        return _result(rule, _outcome(False, rule), float("nan"), "no groups were evaluated (no sensitive attributes?)")

    def judged(g: Any) -> float:
        iv = cmp.intervals.get(f"group:{g.attribute}={g.group}")
        return iv.high if (rule.judge_on == "upper_bound" and iv is not None) else g.drop

    worst = max(cmp.groups, key=judged)
    iv = cmp.intervals.get(f"group:{worst.attribute}={worst.group}")
    ci = f" (CI {iv.low:+.4f}..{iv.high:+.4f})" if iv is not None else ""
    return _result(
        rule,
        _outcome(_le(judged(worst), rule.threshold), rule),
        worst.drop,
        f"worst group {worst.attribute}={worst.group} (n={worst.n}): "
        f"{worst.baseline_accuracy:.4f} -> {worst.candidate_accuracy:.4f}, drop {worst.drop:+.4f}{ci}",
        (iv.low, iv.high) if iv is not None else None,
    )


def _judge(rule: Rule, cmp: Comparison, extra: dict[str, float]) -> RuleResult:
    if rule.kind in ("max_drop", "max_increase"):
        return _judge_change(rule, cmp)
    if rule.kind == "max_group_drop":
        return _judge_groups(rule, cmp)
    values = {**cmp.candidate, **extra}
    if rule.metric not in values or math.isnan(float(values[rule.metric])):
        return _missing(rule, rule.metric)
    v = float(values[rule.metric])
    ok = _le(rule.threshold, v) if rule.kind == "min" else _le(v, rule.threshold)
    return _result(rule, _outcome(ok, rule), v, f"{rule.metric} = {v:.4f}")


def gate_candidate(model: str, policy: Policy, cmp: Comparison, extra: dict[str, float] | None = None) -> Verdict:
    """Apply every rule (with the model's overrides); ``extra`` holds speedup / size_ratio."""
    v = Verdict(model, policy.name, policy.digest)
    v.results = [_judge(r, cmp, extra or {}) for r in policy.rules_for(model)]
    return v
