"""Prefect flow: the nightly sweep. Every onboarded model's versions that have no governed
quantized child yet are quantized, each in its own subflow run (a failure in one model does
not stop the others).

Scale out: with a Dask scheduler's address (the ``dask_address`` parameter, or
``QUANTGATE_DASK_ADDRESS``) each source version is a task on prefect-dask's ``DaskTaskRunner``,
governed on a Dask worker. The workers must see the same MLflow store, ``QUANTGATE_HOME`` and
project as the flow (start them with the same environment); a worker that does not is refused by
name, never left to write to another store."""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate.errors import ConfigError, SweepIncomplete
from quantgate.flows.quantize import quantize_model
from quantgate.settings import configure_environment, get_settings

#: how long the sweep waits for the Dask scheduler to answer before failing
DASK_CONNECT_TIMEOUT = "15s"


@task(name="discover-ungoverned", cache_policy=NO_CACHE)
def discover_ungoverned(models: list[str] | None = None) -> list[str]:
    from quantgate.pipeline import ungoverned_versions

    return ungoverned_versions(models)


def _where() -> dict[str, Any]:
    """Where this code runs: the Dask worker's address (or ``None`` outside one), pid, stores."""
    try:
        from distributed import get_worker

        worker: str | None = get_worker().address
    except (ImportError, ValueError):
        worker = None
    s = get_settings()
    return {
        "dask_worker": worker,
        "pid": os.getpid(),
        "tracking_uri": s.tracking_uri,
        "home": str(s.home_abs),
        "project_dir": str(s.project_dir.resolve()),
    }


@task(name="govern-version", cache_policy=NO_CACHE)
def govern_version(ref: str, expected: dict[str, Any] | None = None) -> dict[str, Any]:
    """One source version governed in its own subflow run. ``expected``: the sweep's stores; a
    Dask worker configured for other ones refuses the version (named in the result), since it
    would register the candidate somewhere nobody looks."""
    configure_environment()
    here = _where()
    wrong = [k for k in ("tracking_uri", "home", "project_dir") if expected and here[k] != expected[k]]
    if wrong:
        detail = "; ".join(f"{k} is {here[k]!r} here, {expected[k]!r} in the sweep" for k in wrong)
        return {
            "model": ref,
            "verdict": "error",
            "error": f"Dask worker {here['dask_worker']} is not configured like the sweep ({detail}): "
            "start the workers with the flow's MLFLOW_TRACKING_URI, QUANTGATE_HOME and QUANTGATE_PROJECT_DIR",
            "ran_on": here,
        }
    state = quantize_model(ref, return_state=True)
    out = state.result() if state.is_completed() else {"model": ref, "verdict": "error", "error": state.message}
    return {**out, "ran_on": here}


@flow(name="govern-on-dask", log_prints=True)
def _fan_out(refs: list[str], expected: dict[str, Any]) -> list[dict[str, Any]]:
    futures = [govern_version.submit(ref, expected) for ref in refs]
    return [f.result() for f in futures]


def _dask_runner(address: str, timeout: str = DASK_CONNECT_TIMEOUT) -> Any:
    """prefect-dask's runner on the scheduler at ``address``, after checking that it answers within
    ``timeout`` and has a worker (a clear error instead of a flow stuck on a connection)."""
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    try:
        with Client(address, timeout=timeout) as client:
            workers = len(client.scheduler_info().get("workers", {}))
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address!r} ({exc}): start one (`dask scheduler`, then "
            "`dask worker ADDRESS` with the flow's environment) or unset QUANTGATE_DASK_ADDRESS"
        ) from exc
    if not workers:
        raise ConfigError(f"the Dask scheduler at {address!r} has no worker: start one with `dask worker {address}`")
    return DaskTaskRunner(address=address)


@flow(name="govern-registry", log_prints=True)
def govern_registry(models: list[str] | None = None, dask_address: str | None = None) -> list[dict[str, Any]]:
    """Govern every ungoverned source version of ``models`` (default: every onboarded model), one
    after another, or fanned out to the Dask scheduler at ``dask_address`` (default
    ``QUANTGATE_DASK_ADDRESS``)."""
    configure_environment()
    log = get_run_logger()
    todo = discover_ungoverned(models)
    log.info("%d version(s) without a governed quantized child: %s", len(todo), ", ".join(todo) or "none")
    address = dask_address or get_settings().dask_address
    if address and todo:
        runner = _dask_runner(address)
        log.info("fanning %d version(s) out to the Dask scheduler at %s", len(todo), address)
        results = _fan_out.with_options(task_runner=runner)(todo, _where())
    else:
        results = [govern_version(ref) for ref in todo]
    errors = [r for r in results if r.get("verdict") == "error"]
    for r in errors:
        log.error("%s: %s", r["model"], r.get("error"))
    if errors:  # the others were governed; the run still fails, so the schedule shows it
        raise SweepIncomplete(
            f"{len(errors)} of {len(results)} version(s) could not be governed: "
            + "; ".join(f"{r['model']}: {str(r.get('error'))[:200]}" for r in errors),
            "see each version's flow run; the sweep governs them again on its next run",
        )
    return results
