"""Prefect flow: govern one source model version end to end, up to a registered candidate.

Thin orchestration over ``quantgate.pipeline``: each step is a task (with retries only where a
retry can help: registry reads), so the Prefect UI shows where a run stopped and why.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate import pipeline
from quantgate.faults import fault_point
from quantgate.flows.recording import announce, run_builder
from quantgate.notify.emit import gate_failed_hook
from quantgate.policy import load_policy
from quantgate.settings import configure_environment, get_settings
from quantgate.transient import retry_condition


@task(
    name="discover-source", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_condition, cache_policy=NO_CACHE
)
def discover(ref: str) -> pipeline.Source:
    return pipeline.discover_source(ref)


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(source: pipeline.Source) -> pipeline.Datasets:
    return pipeline.load_datasets(source.config)


@task(
    name="load-source-model",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def load_source(source: pipeline.Source, data: pipeline.Datasets):
    return pipeline.load_source_model(source, data)


@task(name="check-faithful-reading", cache_policy=NO_CACHE)
def check_faithful(source: pipeline.Source, model: Any, data: pipeline.Datasets) -> pipeline.Faithfulness:
    return pipeline.check_source_faithful(source, model, data)


@task(name="validate-calibration", cache_policy=NO_CACHE)
def validate(source: pipeline.Source, model: Any, data: pipeline.Datasets, policy: Any):
    return pipeline.validate_calibration(
        source.config,
        model,
        data,
        policy,
        profile=pipeline.stored_profile(source),
        signature=pipeline.signature_columns(source),
    )


@task(name="quantize", cache_policy=NO_CACHE)
def quantize(model: Any, recipe: Any, data: pipeline.Datasets):
    return pipeline.quantize_candidate(model, recipe, data)


@task(name="search-recipe", cache_policy=NO_CACHE)
def search(source: pipeline.Source, policy: Any, model: Any, data: pipeline.Datasets) -> pipeline.Search:
    return pipeline.search_recipe(source.config, policy, model, data)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(source: pipeline.Source, policy: Any, baseline: Any, candidate: Any, data: pipeline.Datasets):
    return pipeline.evaluate_candidate(source.config, policy, baseline, candidate, data)


@task(name="gate", cache_policy=NO_CACHE)
def gate(source: pipeline.Source, policy: Any, ev: pipeline.Evaluation):
    return pipeline.gate(source.config, policy, ev)


@task(name="record-and-register", cache_policy=NO_CACHE)
def record(**kwargs: Any):
    return pipeline.record_candidate(**kwargs)


def _reading(spec: dict[str, Any]) -> dict[str, Any]:
    keys = ("source_kind", "serialization_format", "output", "output_note", "classes", "input_shape")
    return {k: spec[k] for k in keys if k in spec}


@flow(name="quantize-model", log_prints=True, on_failure=[gate_failed_hook])
def quantize_model(model: str, policy: str | None = None, recipe: str | None = None) -> dict[str, Any]:
    """Validate -> quantize -> evaluate -> gate -> card -> register, for ``model`` (NAME[/VERSION|@ALIAS])."""

    from quantgate.cards.card import render_model_card
    from quantgate.cards.trust import source_artifact_digest

    configure_environment()
    log = get_run_logger()
    source = discover(model)
    fault_point("discover")
    cfg = source.config
    if cfg.is_regression:  # a regressor: its own evaluate, gate and card (flows/quantize_regression.py)
        from quantgate.flows.quantize_regression import govern_regression

        return govern_regression(source, load_data(source), policy, recipe)
    policy_path = get_settings().path(policy or cfg.policy)
    if cfg.task == "text-generation":  # a causal language model: its own sub-flow (quantgate.steps.lm)
        from quantgate.flows.quantize_lm import quantize_lm_model

        return quantize_lm_model(source.ref, str(policy_path), recipe)
    pol = load_policy(policy_path)
    rec = pipeline.resolve_recipe(recipe, cfg, pol)
    log.info("source %s, policy %s, recipe %s", source.ref, pol.name, rec.label if rec else "auto (search)")
    data = load_data(source)
    baseline = load_source(source, data)
    pipeline.check_measurable(cfg, pol, str(policy or cfg.policy))  # a model quantgate can read, first
    faithful = check_faithful(source, baseline, data)
    log.info("reading of %s reproduces the model on %d rows", source.ref, faithful.report["rows"])
    report = validate(source, baseline, data, pol)
    fault_point("validate")
    log.info(
        "calibration data: %d checks passed, %d not run",
        sum(ch.status == "passed" for ch in report.checks),
        sum(ch.status != "passed" for ch in report.checks),
    )
    if rec is None:
        found = search(source, pol, baseline, data)
        log.info("search: %s", found.search.get("summary", ""))
        fault_point("quantize")
        # the screen ranked the passing trials; the gate certifies them on the evaluation rows, best first
        cert = pipeline.certify(
            pol,
            found,
            lambda judged, cand: evaluate(source, judged, baseline, cand, data),
            lambda judged, evaluation: gate(source, judged, evaluation),
        )
        rec, candidate, qres, ev, verdict = cert.recipe, cert.candidate, cert.result, cert.evaluation, cert.verdict
        (log.warning if qres.n_quantized == 0 else log.info)("search: %s", cert.summary)
        log.info("quantized %d modules, kept %d in float", qres.n_quantized, len(qres.kept_float))
    else:
        candidate, qres = quantize(baseline, rec, data)
        log.info("quantized %d modules, kept %d in float", qres.n_quantized, len(qres.kept_float))
        fault_point("quantize")
        ev = evaluate(source, pol, baseline, candidate, data)
        verdict = gate(source, pol, ev)
    fault_point("evaluate")
    log.info("verdict: %s %s", verdict.status, ",".join(verdict.failed_rules))
    ctx = pipeline.card_context(
        source,
        rec,
        qres,
        ev,
        verdict,
        report,
        data,
        pol,
        search=candidate.spec["quantization"].get("search"),
        reading={
            **faithful.report,
            "warnings": faithful.warnings,
            "logged_accuracy": faithful.logged_accuracy,
            **_reading(baseline.spec),
        },
    )
    # the source's own artifact digest goes into the card and (reused) into the provenance
    ctx["source"].update(source_artifact_digest(source.version.name, source.version.version))
    card_md, _ = render_model_card(ctx)
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
        "recipe": rec.label,
        "verdict": verdict.status,
        "failed_rules": verdict.failed_rules,
        "accuracy_fp32": cmp.baseline["accuracy"],
        "accuracy_quantized": cmp.candidate["accuracy"],
        "size_fp32_mb": ev.sizes["baseline_bytes"] / 1e6,
        "size_quantized_mb": ev.sizes["candidate_bytes"] / 1e6,
        "speedup": ev.runtime["speedup"],
        "registered": f"{mv.name}/{mv.version}",
        "aliases": list(mv.aliases or []),
        "run_id": mv.run_id,
        "verdict_rules": verdict.to_dict()["rules"],
    }


if __name__ == "__main__":
    import sys

    print(quantize_model(sys.argv[1] if len(sys.argv) > 1 else "adult-income"))
