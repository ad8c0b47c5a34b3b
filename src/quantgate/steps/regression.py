"""The regression steps: check the targets, evaluate fp32 vs the candidate, gate, and the card's context.

A regressor (onboarding ``task: tabular-regression`` / ``tensor-regression``) goes through the same
discover, load, faithful-reading, calibration, quantize, record and register steps as a classifier;
these steps replace the classifier's evaluate and gate (:mod:`quantgate.evaluate.regression`,
:mod:`quantgate.policy.regression`) and shape what the card and the run record.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quantgate.errors import ConfigError, DataError, first_rows
from quantgate.onboarding import ModelConfig
from quantgate.steps.context import Datasets, declared_group_columns

if TYPE_CHECKING:
    from quantgate.evaluate.regression import RegressionComparison
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy import Policy, Verdict
    from quantgate.policy.verdict import RuleResult


@dataclass
class RegressionEvaluation:
    """What the regression gate judges, and what the card and the run record."""

    comparison: RegressionComparison
    runtime: dict[str, float]
    sizes: dict[str, int]
    #: per evaluation row: ``target``, ``fp32_prediction``, ``prediction`` (the candidate's), group columns
    scores: pd.DataFrame | None = None
    kind: str = "regression"
    audit: None = None  # no flip audit: large deviations are in ``comparison.deviations``
    served: None = None


def check_targets(cfg: ModelConfig, data: Datasets) -> None:
    """A regressor's label column must hold finite numbers with more than two values, in the
    evaluation and the calibration data: strings, NaN/inf, or two classes are refused by name."""
    for role, frame in (("evaluation", data.evaluation), ("calibration", data.calibration)):
        if cfg.label not in frame.columns:
            continue
        col = frame[cfg.label]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            shown = ", ".join(map(repr, pd.unique(col.dropna())[:3]))
            raise DataError(
                f"the label column '{cfg.label}' of the {role} data holds {col.dtype} values ({shown}), not numbers: "
                f"'{cfg.name}' is onboarded as {cfg.task}",
                f"point label: at the numeric target in registry/models/{cfg.name}.yaml, or for a classifier set "
                "task: to a *-classification kind",
            )
        values = col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{int(bad.sum())} of the {len(values)} {role} rows have a NaN or infinite target in '{cfg.label}' "
                f"(rows {first_rows(frame.index[bad])})",
                f"drop them from the {role} data: a regressor's error needs a target on every row",
            )
        if role == "evaluation" and col.nunique() <= 2:
            raise DataError(
                f"the label column '{cfg.label}' holds {col.nunique()} distinct value(s) "
                f"({', '.join(map(str, sorted(pd.unique(col))))}): the classes of a classifier, "
                "not a regression target",
                f"set task: to a *-classification kind in registry/models/{cfg.name}.yaml, or point label: at the "
                "continuous target",
            )


def check_regression_policy(cfg: ModelConfig, policy: Policy, policy_path: str) -> None:
    """Before any check or trial: the policy must hold regression_rules, and a blocking per-group
    rule needs groups (a regressor has no classes to fall back on). ``recipe: auto`` is not yet
    searched for a regressor: a recipe must be named."""
    from quantgate.policy.regression import require_regression_rules

    require_regression_rules(policy, cfg.name, policy_path)
    if not declared_group_columns(cfg, policy):
        group_rules = [
            r.id for r in policy.regression_rules if r.severity == "block" and r.kind == "max_group_increase"
        ]
        group_rules += [
            r.id for r in policy.regression_rules if r.severity == "block" and r.metric == "max_deviation_ratio"
        ]
        if group_rules:
            raise ConfigError(
                f"policy '{policy.name}' ({policy_path}) blocks on group rule(s) {', '.join(group_rules)}, and the "
                f"onboarding of '{cfg.name}' names no sensitive attributes or slices: no candidate could be measured "
                "against them",
                f"set sensitive_attributes: (or slices:) in registry/models/{cfg.name}.yaml, or make those rules "
                "severity: warn",
            )


def check_recipe(cfg: ModelConfig, recipe: Any) -> None:
    if recipe is None:
        raise ConfigError(
            f"'{cfg.name}' is a regressor and its recipe is auto: the recipe search judges classifiers only (yet)",
            f"name a recipe in registry/models/{cfg.name}.yaml (recipe: dynamic-int8, say) or pass --recipe",
        )


def evaluate_regression(
    cfg: ModelConfig, policy: Policy, baseline: WrappedModel, candidate: WrappedModel, data: Datasets
) -> RegressionEvaluation:
    """fp32 and candidate on the same held-out rows: errors with paired-bootstrap intervals on every
    change, per-group MAE (and intersections), large deviations; latency and size side by side."""

    from quantgate.evaluate.regression import compare_regression
    from quantgate.evaluate.runtime import artifact_size, side_by_side_latency
    from quantgate.settings import apply_torch_threads

    apply_torch_threads()
    ev = data.evaluation
    groups = declared_group_columns(cfg, policy)
    missing = [g for g in groups if g not in ev.columns]
    if missing:
        raise DataError(
            f"evaluation data for '{cfg.name}' has no column(s) {', '.join(missing)} named as sensitive attributes "
            "or slices",
            "add them to the data or fix the declaration",
        )
    y = ev[cfg.label].to_numpy(dtype=np.float64)
    base, cand = baseline.predict_values(ev), candidate.predict_values(ev)
    b, rs = policy.bootstrap, policy.regression
    cmp = compare_regression(
        y,
        base,
        cand,
        groups=ev[groups] if groups else None,
        sensitive=[a for a in cfg.sensitive_attributes if a in ev.columns],
        min_group_size=policy.min_group_size,
        resamples=b.resamples,
        confidence=b.confidence,
        seed=b.seed,
        deviation_tolerance=rs.deviation_tolerance,
        deviation_relative=rs.deviation_relative,
    )
    runtime = side_by_side_latency(baseline, candidate, ev, batch_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {
            "baseline_bytes": artifact_size(Path(baseline.save(Path(tmp) / "base")["module"])),
            "candidate_bytes": artifact_size(Path(candidate.save(Path(tmp) / "cand")["module"])),
        }
    scores = pd.DataFrame({"target": y, "fp32_prediction": base, "prediction": cand})
    for g in groups:
        scores[g] = ev[g].to_numpy()
    return RegressionEvaluation(cmp, runtime, sizes, scores)


def gate_regression(cfg: ModelConfig, policy: Policy, ev: RegressionEvaluation) -> Verdict:
    from quantgate.policy.regression import gate_regression_candidate

    extra = {
        "speedup": ev.runtime["speedup"],
        "size_ratio": ev.sizes["candidate_bytes"] / ev.sizes["baseline_bytes"],
    }
    return gate_regression_candidate(cfg.name, policy, ev.comparison, extra)


def regression_card_section(ev: RegressionEvaluation) -> dict[str, Any]:
    """The card's ``regression`` section: figures with intervals, groups, large deviations."""
    from quantgate.evaluate.regression import DEFINITIONS, REGRESSION_METRICS

    cmp = ev.comparison
    rows = []
    for m in REGRESSION_METRICS:
        iv = cmp.intervals.get(m)
        rows.append(
            {
                "metric": m,
                "baseline": cmp.baseline[m],
                "candidate": cmp.candidate[m],
                "change": cmp.change(m),
                "interval": [iv.low, iv.high] if iv is not None else None,
                "confidence": iv.confidence if iv is not None else None,
                "definition": DEFINITIONS[m],
            }
        )
    dev = cmp.deviations.to_dict() if cmp.deviations is not None else None
    return {
        "n": cmp.n,
        "overall": rows,
        "groups": [g.to_dict() for g in cmp.groups],
        "deviations": dev,
        "concentrated": [g for g in (dev or {}).get("groups", []) if g["significant"]],
        "sensitive": cmp.sensitive,
    }


def record_fields(ev: RegressionEvaluation) -> tuple[dict[str, float], dict[str, str]]:
    """(run metrics, result tags of the registered version) for a regressor's candidate."""
    cmp = ev.comparison
    metrics = {f"fp32_{k}": v for k, v in cmp.baseline.items()}
    metrics |= {f"quantized_{k}": v for k, v in cmp.candidate.items()}
    for m, iv in cmp.intervals.items():
        metrics[f"{m}_change"] = iv.estimate
        metrics[f"{m}_change_ci_high"] = iv.high
    if cmp.deviations is not None:
        metrics["large_deviation_share"] = cmp.deviations.share
    metrics |= {**ev.runtime, **{k: float(v) for k, v in ev.sizes.items()}}
    tags = {
        "quantgate.task": "regression",
        "quantgate.mae_fp32": f"{cmp.baseline['mae']:.6g}",
        "quantgate.mae_quantized": f"{cmp.candidate['mae']:.6g}",
    }
    return metrics, tags


def verdict_rows(results: list[RuleResult]) -> list[dict[str, Any]]:
    """The verdict as the flow returns it (one dict per rule)."""
    from dataclasses import asdict

    return [asdict(r) for r in results]
