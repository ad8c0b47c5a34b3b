"""The regression branch of the quantize flow: a regressor governed end to end, up to a registered candidate.

``quantize_model`` hands a source onboarded as ``task: *-regression`` to :func:`govern_regression`,
which runs inside the same flow run: the same discover, load, faithful-reading, calibration,
quantize, sign and register steps as a classifier, with the regression evaluate, gate and card
(:mod:`quantgate.steps.regression`). The recipe is the one the onboarding (or ``--recipe``) names:
the recipe search judges classifiers only.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate import pipeline
from quantgate.faults import fault_point
from quantgate.flows.recording import announce, run_builder
from quantgate.policy import load_policy
from quantgate.settings import get_settings
from quantgate.steps import regression as reg
from quantgate.transient import retry_condition


@task(
    name="load-source-model",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def load_source(source: pipeline.Source, data: pipeline.Datasets) -> Any:
    return pipeline.load_source_model(source, data)


@task(name="check-faithful-reading", cache_policy=NO_CACHE)
def check_faithful(source: pipeline.Source, model: Any, data: pipeline.Datasets) -> pipeline.Faithfulness:
    return pipeline.check_source_faithful(source, model, data)


@task(name="validate-calibration", cache_policy=NO_CACHE)
def validate(source: pipeline.Source, model: Any, data: pipeline.Datasets, policy: Any) -> Any:
    return pipeline.validate_calibration(
        source.config,
        model,
        data,
        policy,
        profile=pipeline.stored_profile(source),
        signature=pipeline.signature_columns(source),
    )


@task(name="quantize", cache_policy=NO_CACHE)
def quantize(model: Any, recipe: Any, data: pipeline.Datasets) -> Any:
    return pipeline.quantize_candidate(model, recipe, data)


@task(name="evaluate-regression", cache_policy=NO_CACHE)
def evaluate(source: pipeline.Source, policy: Any, baseline: Any, candidate: Any, data: pipeline.Datasets) -> Any:
    return reg.evaluate_regression(source.config, policy, baseline, candidate, data)


@task(name="gate-regression", cache_policy=NO_CACHE)
def gate(source: pipeline.Source, policy: Any, ev: Any) -> Any:
    return reg.gate_regression(source.config, policy, ev)


@task(name="record-and-register", cache_policy=NO_CACHE)
def record(**kwargs: Any) -> Any:
    return pipeline.record_candidate(**kwargs)


def govern_regression(
    source: pipeline.Source, data: pipeline.Datasets, policy: str | None, recipe: str | None
) -> dict[str, Any]:
    """Load -> faithful -> validate -> quantize -> evaluate -> gate -> card -> register, for a regressor."""

    from quantgate.cards.regression_card import render_regression_card
    from quantgate.cards.trust import source_artifact_digest
    from quantgate.steps.regression_card import regression_card_context

    log = get_run_logger()
    cfg = source.config
    policy_path = get_settings().path(policy or cfg.policy)
    pol = load_policy(policy_path)
    reg.check_regression_policy(cfg, pol, str(policy or cfg.policy))
    rec = pipeline.resolve_recipe(recipe, cfg, pol)
    reg.check_recipe(cfg, rec)
    reg.check_targets(cfg, data)
    log.info("regressor %s, policy %s, recipe %s", source.ref, pol.name, rec.label)
    baseline = load_source(source, data)
    faithful = check_faithful(source, baseline, data)
    log.info("reading of %s reproduces the model on %d rows", source.ref, faithful.report["rows"])
    report = validate(source, baseline, data, pol)
    fault_point("validate")
    candidate, qres = quantize(baseline, rec, data)
    log.info("quantized %d modules, kept %d in float", qres.n_quantized, len(qres.kept_float))
    fault_point("quantize")
    ev = evaluate(source, pol, baseline, candidate, data)
    verdict = gate(source, pol, ev)
    fault_point("evaluate")
    log.info("verdict: %s %s", verdict.status, ",".join(verdict.failed_rules))
    reading = {**faithful.report, "warnings": faithful.warnings}
    reading |= {
        k: baseline.spec[k] for k in ("source_kind", "serialization_format", "output_note") if k in baseline.spec
    }
    ctx = regression_card_context(source, rec, qres, ev, verdict, report, data, pol, reading=reading)
    ctx["source"].update(source_artifact_digest(source.version.name, source.version.version))
    card_md, _ = render_regression_card(ctx)
    fault_point("card")
    run_id, builder = run_builder()
    mv = record(
        source=source,
        candidate=candidate,
        recipe=rec,
        ev=ev,
        verdict=verdict,
        report=report,
        card_md=card_md,
        card_ctx=ctx,
        data=data,
        flow_run=run_id,
        policy_path=str(policy_path),
        builder=builder,
    )
    announce(mv, verdict, source.ref, rec.label, log)
    cmp = ev.comparison
    return {
        "model": source.ref,
        "task": cfg.task,
        "recipe": rec.label,
        "verdict": verdict.status,
        "failed_rules": verdict.failed_rules,
        "mae_fp32": cmp.baseline["mae"],
        "mae_quantized": cmp.candidate["mae"],
        "size_fp32_mb": ev.sizes["baseline_bytes"] / 1e6,
        "size_quantized_mb": ev.sizes["candidate_bytes"] / 1e6,
        "speedup": ev.runtime["speedup"],
        "registered": f"{mv.name}/{mv.version}",
        "aliases": list(mv.aliases or []),
        "run_id": mv.run_id,
        "verdict_rules": verdict.to_dict()["rules"],
    }
