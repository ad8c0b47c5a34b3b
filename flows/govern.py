"""Prefect flow: the nightly sweep. Every onboarded model's versions that have no governed
quantized child yet are quantized, each in its own subflow run (a failure in one model does
not stop the others)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate.flows.quantize import quantize_model
from quantgate.settings import configure_environment


@task(name="discover-ungoverned", cache_policy=NO_CACHE)
def discover_ungoverned(models: list[str] | None = None) -> list[str]:
    from quantgate.pipeline import ungoverned_versions

    return ungoverned_versions(models)


@flow(name="govern-registry", log_prints=True)
def govern_registry(models: list[str] | None = None) -> list[dict[str, Any]]:
    configure_environment()
    log = get_run_logger()
    todo = discover_ungoverned(models)
    log.info("%d version(s) without a governed quantized child: %s", len(todo), ", ".join(todo) or "none")
    results = []
    for ref in todo:
        state = quantize_model(ref, return_state=True)
        if state.is_completed():
            results.append(state.result())
        else:
            log.error("%s: %s", ref, state.message)
            results.append({"model": ref, "verdict": "error", "error": state.message})
    return results
