"""Evaluate: fp32 and candidate side by side on the evaluation rows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.errors import DataError
from quantgate.onboarding import ModelConfig
from quantgate.settings import apply_torch_threads
from quantgate.steps.context import Datasets, Evaluation, group_columns

if TYPE_CHECKING:
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy import Policy


def evaluate_candidate(
    cfg: ModelConfig, policy: Policy, baseline: WrappedModel, candidate: WrappedModel, data: Datasets
) -> Evaluation:
    """fp32 and candidate on the same held-out rows: metrics with paired-bootstrap intervals,
    per-group and intersectional accuracy, fairness gaps, the flip audit; the candidate at each
    served batch size (``policy.serving``) and its batch dependence; latency side by side."""

    from quantgate.evaluate.audit import flip_audit
    from quantgate.evaluate.runtime import artifact_size, side_by_side_latency

    apply_torch_threads()
    ev = data.evaluation
    from quantgate.models.outputs import class_index

    y = class_index(ev[cfg.label], baseline.classes, what=f"evaluation labels (column '{cfg.label}')")
    base_proba, cand_proba = baseline.predict_proba(ev), candidate.predict_proba(ev)
    declared = group_columns(cfg, policy)
    missing = [g for g in declared if g not in ev.columns]
    if missing:
        raise DataError(
            f"evaluation data for '{cfg.name}' has no column(s) {', '.join(missing)} "
            "named as sensitive attributes or slices",
            "add them to the data or fix the declaration",
        )
    group_cols = declared
    b = policy.bootstrap
    compare = policy_compare(cfg, policy, ev, group_cols)
    cmp = compare(y, base_proba, cand_proba, slice(None))
    audit_cols = list(dict.fromkeys([*candidate.input_columns, *group_cols]))
    audit = flip_audit(
        ev[audit_cols],
        y,
        base_proba,
        cand_proba,
        group_columns=group_cols,
        min_group_size=policy.min_group_size,
        seed=b.seed,
    )
    served = served_for(policy, candidate, ev, y, base_proba, compare)
    runtime = side_by_side_latency(
        baseline, candidate, ev, batch_size=32, references=_runtime_references(baseline, candidate, ev)
    )
    with tempfile.TemporaryDirectory() as tmp:
        base_arts = baseline.save(Path(tmp) / "base")
        cand_arts = candidate.save(Path(tmp) / "cand")
        sizes = {
            "baseline_bytes": artifact_size(Path(base_arts["module"])),
            "candidate_bytes": artifact_size(Path(cand_arts["module"])),
        }
    scores = pd.DataFrame(cand_proba, columns=[f"proba_{i}" for i in range(cand_proba.shape[1])])
    scores.insert(0, "label", y)
    scores.insert(1, "fp32_pred", base_proba.argmax(axis=1))
    for g in group_cols:
        if g != cfg.label:  # per-class groups (the default): the label is stored above, as a class index
            scores[g] = ev[g].to_numpy()
    return Evaluation(cmp, runtime, sizes, audit, scores=scores, served=served)


def policy_compare(cfg: ModelConfig, policy: Policy, rows: pd.DataFrame, group_cols: list[str]) -> Any:
    """``compare(y, base_proba, cand_proba, pos) -> Comparison`` on the rows at positions ``pos``
    of ``rows``, with the model's groups and sensitive attributes and the policy's bootstrap: what
    the gate compares at each batching (the search's judge uses the same)."""
    from quantgate.evaluate.metrics import compare_proba

    b = policy.bootstrap
    sensitive = [a for a in cfg.sensitive_attributes if a in rows.columns]

    def compare_at(yy: Any, base: Any, cand: Any, pos: Any) -> Any:
        return compare_proba(
            yy,
            base,
            cand,
            groups=rows[group_cols].iloc[pos] if group_cols else None,
            sensitive=sensitive,
            min_group_size=policy.min_group_size,
            resamples=b.resamples,
            confidence=b.confidence,
            seed=b.seed,
        )

    return compare_at


def served_for(
    policy: Policy, candidate: WrappedModel, rows: pd.DataFrame, y: Any, base_proba: Any, compare: Any
) -> Any:
    """The candidate at the policy's served batch sizes on ``rows`` (a seeded sample of at most
    ``serving.max_rows``), each batching compared through ``compare`` (:func:`policy_compare`)."""
    from quantgate.evaluate.batching import served_batching

    return served_batching(
        candidate,
        rows,
        y,
        base_proba,
        batch_sizes=list(policy.serving.batch_sizes),
        max_rows=policy.serving.max_rows,
        seed=policy.bootstrap.seed,
        compare=compare,
    )


def _runtime_references(baseline: WrappedModel, candidate: WrappedModel, rows: Any) -> dict[str, WrappedModel]:
    """For an ONNX Runtime candidate, the same runtime in fp32 (the lossless ``ort-fp32`` export),
    timed side by side: the card then says how much of the speedup is the runtime and how much
    is precision."""
    from quantgate.quantize.recipes import apply_recipe, get_recipe

    rtype = str(candidate.spec.get("quantization", {}).get("recipe", {}).get("_type", ""))
    if not rtype.startswith("ort-") or rtype == "ort-fp32" or baseline.spec.get("source_kind") == "onnx":
        return {}
    ort_fp32 = apply_recipe(baseline.module, get_recipe("ort-fp32"), calibration=baseline.batches(rows.head(32), 32))
    return {"ort_fp32": baseline.with_module(ort_fp32.module)}
