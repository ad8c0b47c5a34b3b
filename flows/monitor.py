"""Prefect flow: one monitoring run for a deployed quantized model (scheduled in prefect.yaml)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from quantgate.settings import configure_environment


@flow(name="monitor-model", log_prints=True)
def monitor_model(model: str, window: str | None = None) -> dict[str, Any]:
    """Score the window, log inferences, run Evidently drift, alert and emit an event on drift."""
    from quantgate.monitor.job import run_monitor

    configure_environment()
    out = run_monitor(model, window=window)
    log = get_run_logger()
    log.info(
        "%s v%s (%s): drifted share %.2f -> %s",
        out.model,
        out.version,
        out.alias,
        out.drift["drifted_share"],
        "DRIFT" if out.drifted else "no drift",
    )
    return {
        "model": out.model,
        "version": out.version,
        "alias": out.alias,
        "rows": out.rows,
        "drift": out.drifted,
        "drifted_share": out.drift["drifted_share"],
        "drifted_columns": out.drift.get("drifted_columns", []),
        "run_id": out.run_id,
        "deliveries": out.deliveries,
    }
