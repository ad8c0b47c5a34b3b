"""Gate a candidate: policy rules applied to a Comparison, rule by rule, with evidence (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from quantgate.evaluate.metrics import Comparison
from quantgate.policy.schema import Policy, Rule

Outcome = Literal["pass", "warn", "fail"]


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


def _judge(rule: Rule, cmp: Comparison, extra: dict[str, float]) -> RuleResult:
    values = {**cmp.candidate, **extra}
    if rule.kind == "max_drop":
        if rule.metric not in cmp.baseline or rule.metric not in cmp.candidate:
            return RuleResult(
                rule.id,
                rule.kind,
                rule.metric,
                rule.severity,
                _outcome(False, rule),
                float("nan"),
                rule.threshold,
                evidence=f"{rule.metric} was not measured",
            )
        drop = cmp.drop(rule.metric)
        iv = cmp.intervals.get(rule.metric)
        judged = iv.high if iv is not None else drop
        ev = (
            f"drop {drop:+.4f} ({100 * iv.confidence:g}% CI {iv.low:+.4f}..{iv.high:+.4f}), judged on upper bound"
            if iv is not None
            else f"drop {drop:+.4f}"
        )
        return RuleResult(
            rule.id,
            rule.kind,
            rule.metric,
            rule.severity,
            _outcome(_le(judged, rule.threshold), rule),
            drop,
            rule.threshold,
            (iv.low, iv.high) if iv else None,
            f"{ev}; fp32 {cmp.baseline[rule.metric]:.4f} -> {cmp.candidate[rule.metric]:.4f}",
        )
    if rule.kind == "max_group_drop":
        if not cmp.groups:
            return RuleResult(
                rule.id,
                rule.kind,
                rule.metric,
                rule.severity,
                _outcome(False, rule),
                float("nan"),
                rule.threshold,
                evidence="no groups were evaluated (no sensitive attributes?)",
            )
        worst = max(cmp.groups, key=lambda g: g.drop)
        return RuleResult(
            rule.id,
            rule.kind,
            rule.metric,
            rule.severity,
            _outcome(_le(worst.drop, rule.threshold), rule),
            worst.drop,
            rule.threshold,
            evidence=f"largest group drop {worst.attribute}={worst.group} (n={worst.n}): "
            f"{worst.baseline_accuracy:.4f} -> {worst.candidate_accuracy:.4f}",
        )
    if rule.metric not in values:
        return RuleResult(
            rule.id,
            rule.kind,
            rule.metric,
            rule.severity,
            _outcome(False, rule),
            float("nan"),
            rule.threshold,
            evidence=f"{rule.metric} was not measured",
        )
    v = float(values[rule.metric])
    ok = _le(rule.threshold, v) if rule.kind == "min" else _le(v, rule.threshold)
    return RuleResult(
        rule.id,
        rule.kind,
        rule.metric,
        rule.severity,
        _outcome(ok, rule),
        v,
        rule.threshold,
        evidence=f"{rule.metric} = {v:.4f}",
    )


def gate_candidate(model: str, policy: Policy, cmp: Comparison, extra: dict[str, float] | None = None) -> Verdict:
    """Apply every rule (with the model's overrides); ``extra`` holds speedup / size_ratio."""
    v = Verdict(model, policy.name, policy.digest)
    v.results = [_judge(r, cmp, extra or {}) for r in policy.rules_for(model)]
    return v
