"""Prefect sub-flow: govern one causal language model version (``task: text-generation``) up to a
registered candidate. ``quantize_model`` dispatches here for such a model; the steps are
``quantgate.steps.lm``, each a task so the Prefect UI shows where a run stopped and why."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate.faults import fault_point
from quantgate.flows.recording import announce, run_builder
from quantgate.steps import lm as steps
from quantgate.steps.context import Source
from quantgate.transient import retry_condition


@task(name="load-text", cache_policy=NO_CACHE)
def load_data(source: Source) -> steps.LMData:
    return steps.load_lm_datasets(source.config)


@task(
    name="load-source-lm", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_condition, cache_policy=NO_CACHE
)
def load_source(source: Source) -> Any:
    return steps.load_lm_source(source)


@task(name="check-faithful-reading", cache_policy=NO_CACHE)
def check_faithful(source: Source, lm: Any, data: steps.LMData) -> dict[str, Any]:
    return steps.check_lm_source_faithful(source, lm, data)


@task(name="validate-text", cache_policy=NO_CACHE)
def validate(source: Source, lm: Any, data: steps.LMData, policy: Any) -> dict[str, Any]:
    return steps.validate_lm_data(source.config, lm, data, policy)


@task(name="quantize-lm", cache_policy=NO_CACHE)
def quantize(lm: Any, recipe: Any) -> Any:
    return steps.quantize_lm(lm, recipe)


@task(name="choose-lm-recipe", cache_policy=NO_CACHE)
def choose(source: Source, policy: Any, lm: Any, data: steps.LMData) -> steps.LMChoice:
    return steps.choose_lm_recipe(source.config, policy, lm, data)


@task(name="evaluate-lm", cache_policy=NO_CACHE)
def evaluate(source: Source, policy: Any, lm: Any, cand: Any, data: steps.LMData) -> Any:
    return steps.evaluate_lm_candidate(source.config, policy, lm, cand, data.data.evaluation, data.prompts)


@task(name="gate-lm", cache_policy=NO_CACHE)
def gate(source: Source, policy: Any, ev: Any, res: Any, size: dict[str, float]) -> Any:
    return steps.gate_lm(source.config, policy, ev, res, size)


@task(name="record-and-register", cache_policy=NO_CACHE)
def record(**kwargs: Any) -> Any:
    return steps.record_lm_candidate(**kwargs)


@flow(name="quantize-language-model", log_prints=True)
def quantize_lm_model(model: str, policy_path: str, recipe: str | None = None) -> dict[str, Any]:
    """Validate -> quantize -> evaluate per slice -> gate -> card -> sign -> register, for a causal
    LM; ``model`` is the resolved source version (NAME/VERSION)."""

    from quantgate.policy import load_policy
    from quantgate.steps.discover import discover_source

    log = get_run_logger()
    source = discover_source(model)
    cfg = source.config
    pol = load_policy(policy_path)
    rec = steps.resolve_lm_recipe(recipe, cfg)
    log.info("language model %s, policy %s, recipe %s", source.ref, pol.name, rec.label if rec else "auto")
    data = load_data(source)
    lm = load_source(source)
    reading = check_faithful(source, lm, data)
    log.info("reading of %s reproduces the model's next-token distributions on %d texts", source.ref, reading["texts"])
    validation = validate(source, lm, data, pol)
    fault_point("validate")
    log.info("text checks: %s", validation["summary"])
    trials: list[dict[str, Any]] = []
    if rec is None:
        chosen = choose(source, pol, lm, data)
        rec, cand, res, trials = chosen.recipe, chosen.candidate, chosen.result, chosen.trials
        log.info("auto chose %s after %d trial(s)", rec.label, len(trials))
    else:
        cand, res = quantize(lm, rec)
    log.info("quantized %d layers, kept %d in float", len(res.quantized), len(res.kept_float))
    fault_point("quantize")
    size = steps.sizes(lm, res)
    ev = evaluate(source, pol, lm, cand, data)
    verdict = gate(source, pol, ev, res, size)
    fault_point("evaluate")
    log.info("verdict: %s %s", verdict.status, ",".join(verdict.failed_rules))
    ctx = steps.lm_card_context(
        source, lm, rec, res, ev, verdict, validation, data.data, pol, size, reading, trials=trials
    )
    run_id, builder = run_builder()
    mv = record(
        source=source,
        candidate=cand,
        recipe=rec,
        verdict=verdict,
        card_ctx=ctx,
        prompts=data.prompts,
        flow_run=run_id,
        policy_path=policy_path,
        builder=builder,
    )
    announce(mv, verdict, source.ref, rec.label, log)
    o = ev.overall
    return {
        "model": source.ref,
        "task": "text-generation",
        "recipe": rec.label,
        "verdict": verdict.status,
        "failed_rules": verdict.failed_rules,
        "perplexity_fp32": o.baseline_perplexity,
        "perplexity_quantized": o.candidate_perplexity,
        "perplexity_ratio": o.perplexity_ratio,
        "size_fp32_mb": size["baseline_bytes"] / 1e6,
        "size_quantized_mb": size["candidate_bytes"] / 1e6,
        "registered": f"{mv.name}/{mv.version}",
        "aliases": list(mv.aliases or []),
        "run_id": mv.run_id,
        "verdict_rules": verdict.to_dict()["rules"],
    }
