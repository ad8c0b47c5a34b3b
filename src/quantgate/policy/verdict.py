"""Gate a candidate: policy rules applied to a Comparison, rule by rule, with evidence (pure)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from quantgate.evaluate.lm import LMEvaluation, LMFigures
from quantgate.evaluate.metrics import MIN_FINITE_SHARE, Comparison, Interval
from quantgate.policy.schema import LMRule, Policy, Rule

#: "not measured": the rule needs a value or an interval bound the evaluation could not produce.
#: Never a pass; a blocking rule that is not measured fails the gate (a warning rule does not).
Outcome = Literal["pass", "warn", "fail", "n/a", "not measured"]
NOT_MEASURED: Outcome = "not measured"
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
    batch_size: int | None = None
    """the served batch size whose comparison decided this rule (None: the evaluation's batching)"""


@dataclass
class Verdict:
    model: str
    policy_name: str
    policy_digest: str
    results: list[RuleResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed_rules

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"

    @property
    def failed_rules(self) -> list[str]:
        """Rules that fail the gate: failed ones, and blocking ones that could not be measured."""
        return [r.rule_id for r in self.results if _fails_gate(r)]

    @property
    def unmeasured_rules(self) -> list[str]:
        return [r.rule_id for r in self.results if r.outcome == NOT_MEASURED]

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


def _fails_gate(r: RuleResult) -> bool:
    return r.outcome == "fail" or (r.outcome == NOT_MEASURED and r.severity == "block")


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


def _missing(
    rule: Rule, what: str, observed: float = float("nan"), interval: tuple[float, float] | None = None
) -> RuleResult:
    """The rule could not be measured: never a pass; fails the gate when blocking."""
    effect = "fails the gate" if rule.severity == "block" else "warning"
    return _result(rule, NOT_MEASURED, observed, f"could not be measured: {what} ({effect})", interval)


def _usable_bound(m: str, iv: Interval | None) -> str | None:
    """Why the upper bound of ``iv`` cannot be judged on, or None when it can."""
    if iv is None:
        return f"no bootstrap interval was computed for {m} (judge it with judge_on: estimate)"
    if math.isnan(iv.high):
        return f"the interval bound of {m} is undefined{_draws(iv)}"
    if iv.flagged:
        finite = iv.resamples - iv.nan_draws
        return (
            f"the interval of {m} rests on {finite} of {iv.resamples} bootstrap draws "
            f"(fewer than {100 * MIN_FINITE_SHARE:g}% finite)"
        )
    return None


def _draws(iv: Interval) -> str:
    return f" ({iv.nan_draws} of {iv.resamples} bootstrap draws undefined)" if iv.nan_draws else ""


def _judge_change(rule: Rule, cmp: Comparison) -> RuleResult:
    """max_drop / max_increase: the change that makes the candidate worse, positive = worse."""
    m = rule.metric
    if m in FAIRNESS_GAPS and not cmp.sensitive:
        return _result(rule, "n/a", float("nan"), "not applicable: the model declares no sensitive attributes")
    if m not in cmp.baseline or m not in cmp.candidate or math.isnan(cmp.baseline[m]) or math.isnan(cmp.candidate[m]):
        return _missing(rule, f"{m} was not measured")
    change = cmp.baseline[m] - cmp.candidate[m] if rule.kind == "max_drop" else cmp.candidate[m] - cmp.baseline[m]
    word = "drop" if rule.kind == "max_drop" else "increase"
    iv = cmp.intervals.get(m)
    use_bound = rule.judge_on == "upper_bound"
    if use_bound and (why := _usable_bound(m, iv)) is not None:
        shown = (iv.low, iv.high) if iv is not None else None
        return _missing(rule, f"{word} {change:+.4f} but {why}", change, shown)
    if rule.judge_on == "significant":
        return _judge_change_significant(rule, cmp, change, word, iv)
    judged = iv.high if use_bound and iv is not None else change
    if iv is not None and not math.isnan(iv.high):
        ev = (
            f"{word} {change:+.4f} ({100 * iv.confidence:g}% CI {iv.low:+.4f}..{iv.high:+.4f}{_draws(iv)}), "
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


def _significance(change: float, iv: Interval | None, threshold: float) -> str:
    """How a change stands under ``judge_on: significant``: "within" (estimate <= threshold),
    "real" (over it, interval excludes 0), "noise" (over it, interval includes 0) or
    "unmeasured" (over it, no usable interval to tell)."""
    if _le(change, threshold):
        return "within"
    if iv is None or math.isnan(iv.low) or iv.flagged:
        return "unmeasured"
    return "real" if iv.low > 0 else "noise"


def _significant_outcome(rule: Rule, state: str) -> Outcome:
    """real -> the rule's severity; noise -> a warning, never a block; within -> pass."""
    if state == "real":
        return _outcome(False, rule)
    return "warn" if state == "noise" else "pass"


def _judge_change_significant(rule: Rule, cmp: Comparison, change: float, word: str, iv: Interval | None) -> RuleResult:
    m = rule.metric
    state = _significance(change, iv, rule.threshold)
    shown = (iv.low, iv.high) if iv is not None else None
    if state == "unmeasured":
        why_not = _usable_bound(m, iv)
        return _missing(rule, f"{word} {change:+.4f} is over {rule.threshold:g}, but {why_not}", change, shown)
    ci = f" ({100 * iv.confidence:g}% CI {iv.low:+.4f}..{iv.high:+.4f}{_draws(iv)})" if iv is not None else ""
    why = {
        "within": f"within {rule.threshold:g}",
        "real": f"over {rule.threshold:g} and the interval excludes 0",
        "noise": f"over {rule.threshold:g} but the interval includes 0: not shown to be real (warning)",
    }[state]
    return _result(
        rule,
        _significant_outcome(rule, state),
        change,
        f"{word} {change:+.4f}{ci}, {why}; fp32 {cmp.baseline[m]:.4f} -> {cmp.candidate[m]:.4f}",
        shown,
    )


def _judge_groups(rule: Rule, cmp: Comparison, min_group_size: int = 1) -> RuleResult:
    """The worst group decides. Groups under ``min_group_size`` rows are not judged (the
    evaluation normally leaves them out already). On ``upper_bound`` a group whose bound is
    unusable is not measured: the rule fails if a measured group fails, else it is not measured."""
    if not cmp.groups:
        return _missing(rule, "no groups were evaluated (no sensitive attributes?)")
    judged_groups = [g for g in cmp.groups if g.n >= min_group_size]
    small = len(cmp.groups) - len(judged_groups)
    note = f"; {small} group(s) under min_group_size={min_group_size} not judged" if small else ""
    if not judged_groups:
        return _missing(rule, f"no group has at least min_group_size={min_group_size} rows")
    if rule.judge_on == "significant":
        return _judge_groups_significant(rule, cmp, judged_groups, note)

    def key(g: Any) -> str:
        return f"group:{g.attribute}={g.group}"

    on_bound = rule.judge_on == "upper_bound"
    unmeasured = [g for g in judged_groups if on_bound and _usable_bound(key(g), cmp.intervals.get(key(g))) is not None]
    measured = [g for g in judged_groups if g not in unmeasured]

    def judged(g: Any) -> float:
        iv = cmp.intervals.get(key(g))
        return iv.high if (on_bound and iv is not None) else g.drop

    worst = max(measured, key=judged) if measured else None
    if unmeasured and (worst is None or _le(judged(worst), rule.threshold)):
        names = ", ".join(f"{g.attribute}={g.group}" for g in unmeasured[:5])
        more = f" and {len(unmeasured) - 5} more" if len(unmeasured) > 5 else ""
        return _missing(rule, f"no usable interval bound for group(s) {names}{more}")
    assert worst is not None
    iv = cmp.intervals.get(key(worst))
    ci = f" (CI {iv.low:+.4f}..{iv.high:+.4f}{_draws(iv)})" if iv is not None else ""
    return _result(
        rule,
        _outcome(_le(judged(worst), rule.threshold), rule),
        worst.drop,
        f"worst group {worst.attribute}={worst.group} (n={worst.n}): "
        f"{worst.baseline_accuracy:.4f} -> {worst.candidate_accuracy:.4f}, drop {worst.drop:+.4f}{ci}{note}",
        (iv.low, iv.high) if iv is not None else None,
    )


def _judge_groups_significant(rule: Rule, cmp: Comparison, groups: list[Any], note: str) -> RuleResult:
    """``judge_on: significant``: a group breaks the rule when its drop is over the threshold
    *and* its paired interval excludes 0. Real drops decide first (the largest shown), then drops
    over the threshold whose interval cannot tell (not measured), then noisy ones (a warning)."""
    states = {}
    for g in groups:
        iv = cmp.intervals.get(f"group:{g.attribute}={g.group}")
        states[(g.attribute, g.group)] = (_significance(g.drop, iv, rule.threshold), iv)

    def pick(state: str) -> list[Any]:
        return sorted((g for g in groups if states[(g.attribute, g.group)][0] == state), key=lambda g: -g.drop)

    real, unmeasured, noise = pick("real"), pick("unmeasured"), pick("noise")

    def describe(g: Any) -> str:
        iv = states[(g.attribute, g.group)][1]
        ci = f" (CI {iv.low:+.4f}..{iv.high:+.4f}{_draws(iv)})" if iv is not None and not math.isnan(iv.low) else ""
        return (
            f"{g.attribute}={g.group} (n={g.n}): {g.baseline_accuracy:.4f} -> {g.candidate_accuracy:.4f}, "
            f"drop {g.drop:+.4f}{ci}"
        )

    def others(rest: list[Any], what: str) -> str:
        return f"; {len(rest)} more {what}: " + ", ".join(f"{g.attribute}={g.group}" for g in rest[:5]) if rest else ""

    if real:
        g = real[0]
        iv = states[(g.attribute, g.group)][1]
        return _result(
            rule,
            _outcome(False, rule),
            g.drop,
            f"{describe(g)}: over {rule.threshold:g} and the interval excludes 0"
            f"{others(real[1:], 'group(s) with a real drop')}{note}",
            (iv.low, iv.high) if iv is not None else None,
        )
    if unmeasured:
        g = unmeasured[0]
        return _missing(rule, f"{describe(g)} is over {rule.threshold:g} but has no usable interval{note}", g.drop)
    worst = max(groups, key=lambda x: x.drop)
    iv = states[(worst.attribute, worst.group)][1]
    shown = (iv.low, iv.high) if iv is not None else None
    if noise:
        g = noise[0]
        iv = states[(g.attribute, g.group)][1]
        return _result(
            rule,
            "warn",
            g.drop,
            f"{describe(g)}: over {rule.threshold:g} but the interval includes 0, so the drop is not shown to be "
            f"real (warning, not a block){others(noise[1:], 'such group(s)')}{note}",
            (iv.low, iv.high) if iv is not None else None,
        )
    return _result(rule, "pass", worst.drop, f"worst group {describe(worst)}: within {rule.threshold:g}{note}", shown)


def _judge(rule: Rule, cmp: Comparison, extra: dict[str, float], min_group_size: int = 1) -> RuleResult:
    if rule.kind in ("max_drop", "max_increase"):
        return _judge_change(rule, cmp)
    if rule.kind == "max_group_drop":
        return _judge_groups(rule, cmp, min_group_size)
    values = {**cmp.candidate, **extra}
    if rule.metric not in values or math.isnan(float(values[rule.metric])):
        return _missing(rule, f"{rule.metric} was not measured")
    v = float(values[rule.metric])
    ok = _le(rule.threshold, v) if rule.kind == "min" else _le(v, rule.threshold)
    return _result(rule, _outcome(ok, rule), v, f"{rule.metric} = {v:.4f}")


#: outcome order when the same rule is judged at several batchings: the worst one decides
_SEVERITY = {"fail": 4, NOT_MEASURED: 3, "warn": 2, "pass": 1, "n/a": 0}


def served_rule(rule: Rule) -> bool:
    """Rules judged at every served batch size as well: those on accuracy (overall and by group)."""
    return rule.metric == "accuracy"


def _badness(rule: Rule, r: RuleResult) -> float:
    """How far from passing a result is (higher is worse), to break ties between batchings."""
    value = r.interval[1] if rule.judge_on == "upper_bound" and r.interval is not None else r.observed
    if math.isnan(value):
        return math.inf
    return -value if rule.kind == "min" else value


def _worst_batching(rule: Rule, judged: list[RuleResult]) -> RuleResult:
    """The worst of the same rule judged at the evaluation's batching and each served batch size;
    its evidence names the batching that decided and lists the others."""
    worst = max(judged, key=lambda r: (_SEVERITY.get(r.outcome, 0), _badness(rule, r)))

    def where(r: RuleResult) -> str:
        return "evaluation batching" if r.batch_size is None else f"batch {r.batch_size}"

    def short(r: RuleResult) -> str:
        ub = f", upper bound {r.interval[1]:+.4f}" if r.interval is not None else ""
        return f"{where(r)}: {r.outcome} ({r.observed:+.4f}{ub})"

    others = "; ".join(short(r) for r in judged)
    worst.evidence = f"[decided at {where(worst)}; {others}] {worst.evidence}"
    return worst


def gate_candidate(
    model: str,
    policy: Policy,
    cmp: Comparison,
    extra: dict[str, float] | None = None,
    served: dict[int, Comparison] | None = None,
) -> Verdict:
    """Apply every rule (with the model's overrides); ``extra`` holds speedup / size_ratio /
    max_flip_ratio. Group rules judge only groups of at least ``policy.min_group_size`` rows.

    ``served`` holds the comparison at each served batch size (``policy.serving``): every rule on
    accuracy must then hold at the evaluation's batching and at each of them, and the worst
    result decides (its ``batch_size`` and evidence say which batching that was)."""
    v = Verdict(model, policy.name, policy.digest)
    for rule in policy.rules_for(model):
        result = _judge(rule, cmp, extra or {}, policy.min_group_size)
        if served and served_rule(rule):
            at = []
            for b, c in sorted(served.items()):
                r = _judge(rule, c, extra or {}, policy.min_group_size)
                r.batch_size = b
                at.append(r)
            result = _worst_batching(rule, [result, *at])
        v.results.append(result)
    return v


# --- language models (policy.lm_rules on an LMEvaluation) ---------------------------------------

#: classifier-rule metrics that apply to any model (measured outside the LM evaluation, passed as ``extra``)
MODEL_AGNOSTIC = frozenset({"speedup", "size_ratio"})


def _lm_figure_key(rule: LMRule) -> str:
    return "perplexity_ratio" if rule.kind == "max_ratio" else rule.metric


def _lm_result(
    rule: LMRule, outcome: Outcome, observed: float, evidence: str, interval: tuple[float, float] | None = None
) -> RuleResult:
    return RuleResult(
        rule.id, rule.kind, rule.metric, rule.severity, outcome, observed, rule.threshold, interval, evidence
    )


def _lm_missing(rule: LMRule, what: str, observed: float = float("nan")) -> RuleResult:
    effect = "fails the gate" if rule.severity == "block" else "warning"
    return _lm_result(rule, NOT_MEASURED, observed, f"could not be measured: {what} ({effect})")


def _lm_outcome(ok: bool, rule: LMRule) -> Outcome:
    if ok:
        return "pass"
    return "fail" if rule.severity == "block" else "warn"


def _lm_judge_value(
    rule: LMRule, fig: LMFigures, where: str, bound: float, *, no_change: float, real_above: float | None = None
) -> RuleResult:
    """One figure of one population against ``bound``: ``max`` kinds pass at or below it, ``min``
    at or above it. ``no_change`` is the value of an unchanged candidate (ratio 1, increase 0), the
    line a ``significant`` judgment needs the interval to clear (``real_above`` overrides it)."""
    key = _lm_figure_key(rule)
    est = fig.value(key)
    if math.isnan(est):
        return _lm_missing(rule, f"{key} was not measured on {where}")
    iv = fig.intervals.get(key)
    shown = (iv.low, iv.high) if iv is not None else None
    lower_better = rule.kind != "min"
    ci = f" ({100 * iv.confidence:g}% CI {iv.low:.5g}..{iv.high:.5g}{_draws(iv)})" if iv is not None else ""
    base = f"{where}: {key} {est:.5g}{ci}"
    if rule.kind == "max_ratio":
        base += f"; perplexity fp32 {fig.baseline_perplexity:.4g} -> {fig.candidate_perplexity:.4g}"
    if rule.judge_on == "interval":
        why = _usable_bound(key, iv)
        if why is not None:
            return _lm_missing(rule, f"{base}, but {why}", est)
        assert iv is not None
        judged = iv.high if lower_better else iv.low
        ok = _le(judged, bound) if lower_better else _le(bound, judged)
        side = "upper" if lower_better else "lower"
        return _lm_result(rule, _lm_outcome(ok, rule), est, f"{base}, judged on the {side} bound vs {bound:.5g}", shown)
    ok = _le(est, bound) if lower_better else _le(bound, est)
    if rule.judge_on == "estimate" or ok:
        return _lm_result(rule, _lm_outcome(ok, rule), est, f"{base}, judged on the estimate vs {bound:.5g}", shown)
    line = no_change if real_above is None else real_above
    if iv is None or math.isnan(iv.low) or iv.flagged:
        return _lm_missing(rule, f"{base} is over {bound:.5g}, but no usable interval tells whether it is real", est)
    if iv.low > line:
        return _lm_result(
            rule, _lm_outcome(False, rule), est, f"{base}: over {bound:.5g} and the interval is above {line:.5g}", shown
        )
    return _lm_result(
        rule,
        "warn",
        est,
        f"{base}: over {bound:.5g} but the interval reaches {line:.5g}, so it is not shown to be real (warning)",
        shown,
    )


def _lm_no_change(rule: LMRule) -> float:
    return 1.0 if rule.kind == "max_ratio" else 0.0


def _lm_worst(rule: LMRule, judged: list[tuple[str, RuleResult]], note: str) -> RuleResult:
    """The worst of a rule judged on every slice: outcome first, then how far from passing."""

    def badness(r: RuleResult) -> float:
        value = r.observed
        if math.isnan(value):
            return math.inf
        return -value if rule.kind == "min" else value

    name, worst = max(judged, key=lambda x: (_SEVERITY.get(x[1].outcome, 0), badness(x[1])))
    bad = [n for n, r in judged if r.outcome in ("fail", NOT_MEASURED, "warn") and n != name]
    more = f"; also {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}" if bad else ""
    worst.evidence = f"worst slice {name} of {len(judged)}{more}{note}: {worst.evidence}"
    return worst


def _judge_lm(rule: LMRule, ev: LMEvaluation) -> RuleResult:
    small = len(ev.small_slices)
    note = f"; {small} slice(s) under {ev.min_slice_size} passages not judged" if small else ""
    if rule.kind == "max_slice_excess":
        overall = ev.overall.nll_increase
        if math.isnan(overall):
            return _lm_missing(rule, "the overall nll_increase was not measured")
        if not ev.slices:
            return _lm_missing(rule, f"no slice of at least {ev.min_slice_size} passages was evaluated{note}")
        allowed = max(rule.threshold * max(overall, 0.0), rule.floor or 0.0)
        judged = [
            (
                s.name,
                _lm_judge_value(
                    rule, s.figures, s.name, allowed, no_change=0.0, real_above=max(overall, rule.floor or 0.0)
                ),
            )
            for s in ev.slices
        ]
        res = _lm_worst(rule, judged, note)
        res.evidence += (
            f" (allowed {allowed:.5g} = max({rule.threshold:g} x overall {overall:.5g}, floor {rule.floor or 0:g}))"
        )
        return res
    if rule.judged_scope == "worst_slice":
        if not ev.slices:
            return _lm_missing(rule, f"no slice of at least {ev.min_slice_size} passages was evaluated{note}")
        judged = [
            (s.name, _lm_judge_value(rule, s.figures, s.name, rule.threshold, no_change=_lm_no_change(rule)))
            for s in ev.slices
        ]
        return _lm_worst(rule, judged, note)
    everything = "all prompts" if rule.metric.startswith("generation_") else "all passages"
    return _lm_judge_value(rule, ev.overall, everything, rule.threshold, no_change=_lm_no_change(rule))


def gate_lm_candidate(
    model: str,
    policy: Policy,
    ev: LMEvaluation,
    *,
    weight_bits: int,
    extra: dict[str, float] | None = None,
) -> Verdict:
    """Judge a language-model candidate: every ``lm_rules`` entry on the evaluation (a rule for
    other weight bits is ``n/a``), and the policy's ``rules`` on metrics that apply to any model
    (``speedup``, ``size_ratio``, from ``extra``; not measured when absent). The classifier rules
    (accuracy, groups, fairness, flips) are ``n/a`` for a language model, and say so.

    A policy without ``lm_rules`` cannot judge a language model: that is an error, never a pass."""
    from quantgate.errors import ConfigError

    if not policy.lm_rules:
        raise ConfigError(
            f"policy {policy.name} has no lm_rules: it cannot judge a language model",
            "use policies/generative.yaml or add lm_rules to the policy",
        )
    v = Verdict(model, policy.name, policy.digest)
    values = extra or {}
    for rule in policy.rules_for(model):
        if rule.metric in MODEL_AGNOSTIC and rule.kind in ("min", "max"):
            v.results.append(_judge(rule, Comparison(0, {}, {}), values))
        else:
            v.results.append(
                _result(
                    rule, "n/a", float("nan"), f"not applicable: {rule.metric} is a classifier metric (see lm_rules)"
                )
            )
    for lm_rule in policy.lm_rules:
        if not lm_rule.applies_to(weight_bits):
            bits = "/".join(map(str, lm_rule.weight_bits or []))
            v.results.append(
                _lm_result(
                    lm_rule,
                    "n/a",
                    float("nan"),
                    f"not applicable: the rule is for {bits}-bit candidates; this one stores {weight_bits}-bit weights",
                )
            )
            continue
        v.results.append(_judge_lm(lm_rule, ev))
    return v
