"""Policy schema: YAML reviewed like code, validated strictly.

A typo in a policy is an error that names the key, never a silent default: every model here
forbids extra keys and is frozen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantgate.errors import ConfigError, read_config_text
from quantgate.evaluate.catalog import (
    GROUP_METRICS,
    HIGHER_IS_BETTER,
    KNOWN_METRICS,
    LOWER_IS_BETTER,
    RATES,
)
from quantgate.evaluate.lm import LM_HIGHER_IS_BETTER, LM_LOWER_IS_BETTER, LM_METRICS, LM_RATES
from quantgate.validate.schema import CalibrationPolicy

RuleKind = Literal["max_drop", "max_increase", "max_group_drop", "min", "max"]
Severity = Literal["block", "warn"]
JudgeOn = Literal["upper_bound", "estimate", "significant"]


class _Strict(BaseModel):
    # NaN or inf as a threshold would make every comparison false: refused by the schema
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Rule(_Strict):
    """One gate rule.

    - ``max_drop``: baseline - candidate <= threshold, for a higher-is-better metric.
    - ``max_increase``: candidate - baseline <= threshold, for a lower-is-better metric
      (calibration error, log loss, fairness gaps).
    - ``max_group_drop``: accuracy drop of every group (and intersection) <= threshold.
    - ``min`` / ``max``: the candidate's value against an absolute bound.

    Relative rules are judged on the upper bound of the paired-bootstrap interval of the change
    (non-inferiority) unless ``judge_on: estimate`` (the point estimate) or ``judge_on:
    significant``: the change must be both large (point estimate over the threshold) and real
    (the paired interval excludes 0, i.e. its lower bound is above 0) to break the rule; a large
    change whose interval still includes 0 is only a warning, whatever the severity. This is the
    form for per-group rules, where a small group's wide interval alone must not block.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: RuleKind
    metric: str
    threshold: float
    severity: Severity = "block"
    judge_on: JudgeOn = "upper_bound"
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.metric not in KNOWN_METRICS:
            raise ValueError(f"unknown metric '{self.metric}' in rule '{self.id}'; known: {', '.join(KNOWN_METRICS)}")
        if self.judge_on == "significant" and self.kind not in ("max_drop", "max_increase", "max_group_drop"):
            raise ValueError(f"rule '{self.id}': judge_on: significant applies to relative rules (max_drop, ...)")
        if self.kind == "max_group_drop" and self.metric != "accuracy":
            raise ValueError(f"rule '{self.id}': max_group_drop is evaluated on per-group accuracy only")
        if self.kind in ("max_drop", "max_group_drop", "max_increase") and self.threshold < 0:
            raise ValueError(f"rule '{self.id}': threshold of a {self.kind} rule must be >= 0")
        if self.kind in ("max_drop", "max_group_drop") and self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"rule '{self.id}': a drop rule needs a higher-is-better metric")
        if self.kind == "max_increase" and self.metric not in LOWER_IS_BETTER:
            raise ValueError(f"rule '{self.id}': an increase rule needs a lower-is-better metric")
        if self.metric in RATES and not (0.0 <= self.threshold <= 1.0):
            raise ValueError(f"rule '{self.id}': threshold {self.threshold} is impossible for a rate (0..1)")
        return self


class RuleOverride(_Strict):
    threshold: float | None = None
    severity: Severity | None = None


class Bootstrap(_Strict):
    resamples: int = Field(default=200, ge=0, le=100_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    seed: int = 0


class Search(_Strict):
    """How the accuracy-aware recipe search runs when a model's recipe is ``auto``."""

    objective: Literal["latency", "size"] = "latency"
    budget_trials: int = Field(default=8, ge=1, le=100)
    budget_seconds: float = Field(default=600.0, gt=0)
    certify: int = Field(
        default=2,
        ge=1,
        le=10,
        description="how many of the search's passing candidates the gate may certify on the evaluation rows, "
        "best first, until one passes; each is judged at 1 - (1 - confidence) / certify (Bonferroni)",
    )


class Serving(_Strict):
    """How the model will be served: the gate judges accuracy at each of these batchings, since
    dynamic int8 computes activation scales per batch (a prediction can depend on the other rows
    of its batch)."""

    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 32],
        min_length=1,
        description="batch sizes the model is served at; the accuracy rules must hold at every one",
    )
    max_rows: int | None = Field(
        default=2000,
        ge=1,
        description="evaluation rows scored at each served batch size (a seeded sample, the same rows "
        "for every size; batch 1 is one call per row); null = all rows",
    )

    @model_validator(mode="after")
    def _check(self) -> Serving:
        bad = [b for b in self.batch_sizes if b < 1]
        if bad:
            raise ValueError(f"serving.batch_sizes: {bad[0]} is not a batch size (>= 1)")
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ValueError("serving.batch_sizes: a batch size is listed twice")
        return self


LMRuleKind = Literal["max_ratio", "max", "min", "max_slice_excess"]
LMScope = Literal["overall", "worst_slice"]
LMJudgeOn = Literal["interval", "estimate", "significant"]
#: figures a language-model ``max`` rule may bound (the ratio has its own kind, ``max_ratio``)
LM_MAX_METRICS = frozenset(LM_LOWER_IS_BETTER - {"perplexity_ratio"})
#: figures with a paired-bootstrap interval that can tell "really worse than fp32" (for judge_on: significant)
LM_CHANGE_METRICS = frozenset({"nll_increase", "bits_per_byte_increase"})


class LMRule(_Strict):
    """One gate rule for a language model (``lm_rules``), judged on the figures of
    :mod:`quantgate.evaluate.lm` (fp32 vs the candidate, teacher-forced on held-out passages).

    - ``max_ratio``: candidate perplexity / fp32 perplexity <= threshold (metric ``perplexity``).
    - ``max`` / ``min``: a figure of the candidate against a bound (``kl_mean``, ``kl_p99``,
      ``nll_increase``, ... / ``top1_agreement``, ``generation_agreement``, ...).
    - ``max_slice_excess``: no slice's loss increase (``nll_increase``) may exceed ``threshold``
      times the overall one; an increase up to ``floor`` nats per token passes whatever the multiple
      (so a near-lossless candidate is not blocked by noise). Judged over slices only.

    ``scope: worst_slice`` judges the rule on every slice of at least ``min_group_size`` passages
    and the worst decides (``max_slice_excess`` is always per slice). ``weight_bits`` limits the
    rule to candidates whose recipe stores weights in those bits (e.g. ``[4]``), so one policy
    holds the 8-bit and the 4-bit thresholds; unset, it applies to every candidate.

    ``judge_on``: ``interval`` (default) the unfavourable end of the paired-bootstrap interval
    (upper for max/max_ratio, lower for min: non-inferiority); ``estimate`` the point estimate;
    ``significant`` (ratio, slice-excess and ``*_increase`` rules) over the threshold *and* really
    worse (the interval's lower end above no change, or above the overall increase for a slice),
    else a warning at most.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: LMRuleKind
    metric: str
    threshold: float
    severity: Severity = "block"
    scope: LMScope | None = Field(default=None, description="overall (default) or worst_slice")
    judge_on: LMJudgeOn = "interval"
    weight_bits: list[int] | None = Field(
        default=None, description="the rule applies to candidates with these weight bits only (unset: all)"
    )
    floor: float | None = Field(default=None, description="max_slice_excess: increases up to this (nats) pass")
    description: str | None = None

    @property
    def judged_scope(self) -> str:
        return self.scope or ("worst_slice" if self.kind == "max_slice_excess" else "overall")

    @model_validator(mode="after")
    def _check(self) -> LMRule:
        m, k, t = self.metric, self.kind, self.threshold
        if m not in LM_METRICS:
            raise ValueError(f"unknown language-model metric '{m}' in rule '{self.id}'; known: {', '.join(LM_METRICS)}")
        if k == "max_ratio" and m != "perplexity":
            raise ValueError(f"rule '{self.id}': max_ratio is judged on perplexity (candidate / fp32)")
        if k == "max_ratio" and t < 1:
            raise ValueError(f"rule '{self.id}': a perplexity ratio threshold below 1 would block fp32 itself")
        if k == "max" and m not in LM_MAX_METRICS:
            raise ValueError(f"rule '{self.id}': max needs one of {', '.join(sorted(LM_MAX_METRICS))}")
        if k == "min" and m not in LM_HIGHER_IS_BETTER:
            raise ValueError(f"rule '{self.id}': min needs one of {', '.join(sorted(LM_HIGHER_IS_BETTER))}")
        if m in LM_RATES and not (0.0 <= t <= 1.0):
            raise ValueError(f"rule '{self.id}': threshold {t} is impossible for a rate (0..1)")
        if k == "max_slice_excess":
            if m != "nll_increase":
                raise ValueError(f"rule '{self.id}': max_slice_excess compares slices' nll_increase")
            if t < 1:
                raise ValueError(
                    f"rule '{self.id}': a slice excess threshold is a multiple of the overall increase (>= 1)"
                )
            if self.scope == "overall":
                raise ValueError(f"rule '{self.id}': max_slice_excess is judged per slice (scope: worst_slice)")
        if self.floor is not None and (k != "max_slice_excess" or self.floor < 0):
            raise ValueError(f"rule '{self.id}': floor (>= 0) applies to max_slice_excess only")
        if self.judge_on == "significant" and not (
            k in ("max_ratio", "max_slice_excess") or (k == "max" and m in LM_CHANGE_METRICS)
        ):
            raise ValueError(
                f"rule '{self.id}': judge_on: significant applies to max_ratio, max_slice_excess and "
                f"max on {', '.join(sorted(LM_CHANGE_METRICS))}"
            )
        if self.weight_bits is not None and (not self.weight_bits or any(not 1 <= b <= 32 for b in self.weight_bits)):
            raise ValueError(f"rule '{self.id}': weight_bits lists bit widths between 1 and 32")
        return self

    def applies_to(self, weight_bits: int) -> bool:
        return self.weight_bits is None or weight_bits in self.weight_bits


class LMEvaluationSettings(_Strict):
    """How a language model is evaluated for the ``lm_rules`` (the same settings for fp32 and the candidate)."""

    max_passages: int | None = Field(default=200, ge=1, description="held-out passages scored (seeded); null = all")
    max_tokens: int = Field(default=256, ge=8, le=32_768, description="tokens per passage (longer ones are cut)")
    prompt_tokens: int = Field(default=32, ge=1, description="tokens of a passage's start used as a prompt")
    new_tokens: int = Field(default=16, ge=1, le=1024, description="greedy tokens compared per prompt (N)")
    max_prompts: int = Field(default=64, ge=0, description="prompts for the generation agreement (0: none)")


RegressionRuleKind = Literal["max_increase", "max_drop", "max_group_increase", "max", "min"]
#: errors a regression increase rule judges (lower is better), and the figure a drop rule judges
REGRESSION_ERRORS = ("mae", "rmse", "mean_relative_error")


class RegressionRule(_Strict):
    """One gate rule for a regressor (``regression_rules``), judged on the figures of
    :mod:`quantgate.evaluate.regression` (fp32 vs the candidate on the evaluation rows).

    - ``max_increase``: the rise of ``mae``, ``rmse`` or ``mean_relative_error`` <= threshold; with
      ``relative: true`` the rise as a share of fp32's value (0.02 = 2% worse).
    - ``max_drop``: the fall of ``r2`` <= threshold.
    - ``max_group_increase``: the MAE rise of every group (and intersection of sensitive attributes)
      of at least ``min_group_size`` rows <= threshold (``relative`` as above, of the group's fp32 MAE).
    - ``max`` / ``min``: a candidate figure against a bound (``large_deviation_share``,
      ``max_deviation_ratio``, ``mae``, ``rmse``, ``mean_relative_error`` / ``r2``).

    ``judge_on`` works as for ``rules``: the upper bound of the paired-bootstrap interval of the change
    (default), the ``estimate``, or ``significant`` (over the threshold *and* the interval excludes 0;
    over it with an interval including 0 is a warning at most).
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: RegressionRuleKind
    metric: Literal["mae", "rmse", "r2", "mean_relative_error", "large_deviation_share", "max_deviation_ratio"]
    threshold: float
    relative: bool = Field(default=False, description="the threshold is a share of fp32's value (change rules only)")
    severity: Severity = "block"
    judge_on: JudgeOn = "upper_bound"
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> RegressionRule:
        k, m, t = self.kind, self.metric, self.threshold
        if k == "max_increase" and m not in REGRESSION_ERRORS:
            raise ValueError(f"rule '{self.id}': max_increase needs one of {', '.join(REGRESSION_ERRORS)}")
        if k == "max_drop" and m != "r2":
            raise ValueError(f"rule '{self.id}': max_drop is judged on r2 (higher is better)")
        if k == "max_group_increase" and m != "mae":
            raise ValueError(f"rule '{self.id}': max_group_increase is judged on per-group mae")
        if k == "min" and m != "r2":
            raise ValueError(f"rule '{self.id}': min bounds r2 (use max for errors and deviations)")
        if k == "max" and m == "r2":
            raise ValueError(f"rule '{self.id}': max bounds an error or a deviation figure, not r2")
        if k in ("max_increase", "max_drop", "max_group_increase") and t < 0:
            raise ValueError(f"rule '{self.id}': threshold of a {k} rule must be >= 0")
        if self.relative and k not in ("max_increase", "max_group_increase"):
            raise ValueError(f"rule '{self.id}': relative: true applies to max_increase and max_group_increase")
        if m == "large_deviation_share" and not (0.0 <= t <= 1.0):
            raise ValueError(f"rule '{self.id}': threshold {t} is impossible for a share (0..1)")
        if self.judge_on == "significant" and k not in ("max_increase", "max_drop", "max_group_increase"):
            raise ValueError(f"rule '{self.id}': judge_on: significant applies to change rules (max_increase, ...)")
        return self


class RegressionSettings(_Strict):
    """How a regressor's predictions are compared with fp32's (the large-deviation audit)."""

    deviation_tolerance: float = Field(
        default=0.05,
        gt=0,
        description="a candidate prediction further than this from fp32's is a large deviation",
    )
    deviation_relative: bool = Field(
        default=True, description="the tolerance is a share of |fp32's prediction| (false: in the target's units)"
    )


class Policy(_Strict):
    name: str
    description: str | None = None
    bootstrap: Bootstrap = Bootstrap()
    min_group_size: int = Field(default=30, ge=1, description="groups smaller than this are not evaluated")
    slices: list[str] = Field(
        default_factory=list,
        description="extra evaluation-data columns to report and gate per group (added to the model's own slices)",
    )
    search: Search = Search()
    serving: Serving = Serving()
    target: Literal["auto", "avx2", "avx512", "avx512_vnni", "arm64"] | None = Field(
        default=None,
        description="hardware target for models whose onboarding names none (see quantgate.hardware); "
        "unset = auto, the host's ISA",
    )
    calibration: CalibrationPolicy = Field(default_factory=CalibrationPolicy)
    rules: list[Rule] = Field(min_length=1)
    lm_rules: list[LMRule] = Field(
        default_factory=list,
        description="rules for language models (perplexity, divergence, agreement, per slice); see LMRule",
    )
    lm_evaluation: LMEvaluationSettings = Field(default_factory=LMEvaluationSettings)
    regression_rules: list[RegressionRule] = Field(
        default_factory=list,
        description="rules for regressors (errors, R², per-group MAE, large deviations); see RegressionRule",
    )
    regression: RegressionSettings = Field(default_factory=RegressionSettings)
    overrides: dict[str, dict[str, RuleOverride]] = Field(default_factory=dict)
    digest: str = Field(default="", description="sha256 of the policy file, set on load")

    @model_validator(mode="after")
    def _unique(self) -> Policy:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule id(s): {', '.join(dupes)}")
        for model, over in self.overrides.items():
            unknown = sorted(set(over) - set(ids))
            if unknown:
                raise ValueError(f"overrides.{model}: no rule named {', '.join(unknown)}")
            self.rules_for(model)  # an override must satisfy the same checks as the rule itself
        return self

    @model_validator(mode="after")
    def _unique_lm(self) -> Policy:
        ids = [r.id for r in self.rules] + [r.id for r in self.lm_rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule id(s) across rules and lm_rules: {', '.join(dupes)}")
        ids += [r.id for r in self.regression_rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule id(s) across rules, lm_rules and regression_rules: {', '.join(dupes)}")
        return self

    def search_tolerances(self, model: str) -> tuple[float, float | None]:
        """(overall accuracy drop, group accuracy drop) the search must meet: the thresholds of
        the model's blocking accuracy rules; 0.01 overall when the policy has none."""
        rules = [r for r in self.rules_for(model) if r.severity == "block" and r.metric == "accuracy"]
        overall = min((r.threshold for r in rules if r.kind == "max_drop"), default=0.01)
        group = min((r.threshold for r in rules if r.kind == "max_group_drop"), default=None)
        return overall, group

    def group_blocks(self, model: str) -> list[Rule]:
        """This model's blocking rules measured over groups (sensitive attributes and slices):
        with no group named, no candidate can pass them (a rule not measured fails the gate).
        Fairness gaps are not among them: without sensitive attributes they are "n/a"."""
        return [
            r
            for r in self.rules_for(model)
            if r.severity == "block" and (r.kind == "max_group_drop" or r.metric in GROUP_METRICS)
        ]

    def rules_for(self, model: str) -> list[Rule]:
        """The rules with this model's overrides applied."""
        over = self.overrides.get(model, {})
        out = []
        for r in self.rules:
            o = over.get(r.id)
            if o is None:
                out.append(r)
                continue
            patch = {k: v for k, v in o.model_dump().items() if v is not None}
            try:
                out.append(Rule.model_validate({**r.model_dump(), **patch}))
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"overrides.{model}.{r.id}: {msg}") from None
        return out


def _format_error(exc: ValidationError, source: str) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}")
    return f"invalid policy {source}: " + "; ".join(parts)


def parse_policy(text: str, source: str = "<string>") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy {source} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"policy {source} must be a YAML mapping with 'name' and 'rules'")
    if "digest" in data:
        raise ConfigError(f"invalid policy {source}: digest: unknown key", "remove it; it is computed")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source), "see `quantgate policy schema`") from None
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return policy.model_copy(update={"digest": digest})


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"policy file not found: {p}", "pass an existing YAML file with --policy")
    return parse_policy(read_config_text(p, "policy file"), str(p))


def policy_json_schema() -> str:
    schema = Policy.model_json_schema()
    schema["properties"].pop("digest", None)
    return json.dumps(schema, indent=2, sort_keys=True)


def explain(policy: Policy) -> list[str]:
    """Each rule in plain words."""
    lines = []
    for r in policy.rules:
        on = {
            "upper_bound": "upper CI bound",
            "estimate": "point estimate",
            "significant": "point estimate, and only when the interval excludes 0",
        }[r.judge_on]
        what = {
            "max_drop": f"{r.metric} may drop by at most {r.threshold:g} vs fp32 ({on})",
            "max_increase": f"{r.metric} may rise by at most {r.threshold:g} vs fp32 ({on})",
            "max_group_drop": f"{r.metric} of every group of at least {policy.min_group_size} rows may drop by at "
            f"most {r.threshold:g} vs fp32 ({on})",
            "min": f"{r.metric} must be at least {r.threshold:g}",
            "max": f"{r.metric} must be at most {r.threshold:g}",
        }[r.kind]
        lines.append(f"[{r.severity}] {r.id}: {what}")
    return lines + explain_lm(policy) + explain_regression(policy)


def explain_regression(policy: Policy) -> list[str]:
    """Each regression rule in plain words."""
    lines = []
    for r in policy.regression_rules:
        on = {
            "upper_bound": "upper CI bound",
            "estimate": "point estimate",
            "significant": "point estimate, and only when the interval excludes 0",
        }[r.judge_on]
        by = f"{100 * r.threshold:g}% of fp32's value" if r.relative else f"{r.threshold:g} vs fp32"
        what = {
            "max_increase": f"{r.metric} may rise by at most {by} ({on})",
            "max_drop": f"{r.metric} may fall by at most {r.threshold:g} vs fp32 ({on})",
            "max_group_increase": f"mae of every group of at least {policy.min_group_size} rows may rise by at most "
            f"{by} ({on})",
            "max": f"{r.metric} must be at most {r.threshold:g}",
            "min": f"{r.metric} must be at least {r.threshold:g}",
        }[r.kind]
        lines.append(f"[{r.severity}] {r.id}: {what}")
    return lines


def explain_lm(policy: Policy) -> list[str]:
    """Each language-model rule in plain words."""
    lines = []
    for r in policy.lm_rules:
        on = {
            "interval": "unfavourable end of the CI",
            "estimate": "point estimate",
            "significant": "point estimate, and only when the interval shows it is really worse",
        }[r.judge_on]
        every = "prompts" if r.metric.startswith("generation_") else "passages"
        where = "every slice (worst decides)" if r.judged_scope == "worst_slice" else f"all {every}"
        what = {
            "max_ratio": f"perplexity may be at most {r.threshold:g}x fp32's",
            "max": f"{r.metric} must be at most {r.threshold:g}",
            "min": f"{r.metric} must be at least {r.threshold:g}",
            "max_slice_excess": f"no slice's nll_increase may exceed {r.threshold:g}x the overall one"
            + (f" (increases up to {r.floor:g} nats pass)" if r.floor else ""),
        }[r.kind]
        bits = f", {'/'.join(map(str, r.weight_bits))}-bit candidates" if r.weight_bits else ""
        lines.append(f"[{r.severity}] {r.id}: {what}, over {where} ({on}{bits})")
    return lines
