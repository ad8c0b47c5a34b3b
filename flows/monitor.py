"""Prefect flow: one monitoring run for a deployed quantized model (scheduled in prefect.yaml).

Thin orchestration over :mod:`quantgate.monitoring`: each step is a task (retries only where a
retry can help: registry reads), so the Prefect UI shows where a run stopped and why, and each
task logs its step's own line.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate.monitoring.alert import Alerted, send_alerts
from quantgate.monitoring.checks import ProductionChecks, run_checks
from quantgate.monitoring.drift import DriftCheck, check_drift
from quantgate.monitoring.record import Recorded, record_monitoring
from quantgate.monitoring.resolve import Served, resolve_served
from quantgate.monitoring.run import MonitorOutcome
from quantgate.monitoring.score import Scored, score_window
from quantgate.monitoring.window import Window, read_window
from quantgate.settings import configure_environment
from quantgate.transient import retry_condition


def _logged(result: Any) -> Any:
    for line in str(result.line).splitlines():
        get_run_logger().info(line)
    return result


@task(
    name="resolve-served", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_condition, cache_policy=NO_CACHE
)
def resolve(model: str) -> Served:
    return _logged(resolve_served(model))


@task(name="read-window", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_condition, cache_policy=NO_CACHE)
def window_of(served: Served, window: str | None, log_hours: float | None) -> Window:
    return _logged(read_window(served, window=window, log_hours=log_hours))


@task(name="score-window", cache_policy=NO_CACHE)
def score(served: Served, win: Window) -> Scored:
    return _logged(score_window(served, win))


@task(name="drift", cache_policy=NO_CACHE)
def drift(served: Served, scored: Scored) -> DriftCheck:
    return _logged(check_drift(served, scored))


@task(name="production-checks", cache_policy=NO_CACHE)
def checks(served: Served, win: Window, scored: Scored) -> ProductionChecks:
    return _logged(run_checks(served, win, scored))


@task(name="record", cache_policy=NO_CACHE)
def record(served: Served, win: Window, scored: Scored, drifted: DriftCheck, checked: ProductionChecks) -> Recorded:
    return _logged(record_monitoring(served, win, scored, drifted, checked))


@task(name="alert", cache_policy=NO_CACHE)
def alert(served: Served, recorded: Recorded, drifted: DriftCheck, checked: ProductionChecks) -> Alerted:
    return _logged(send_alerts(served, recorded, drifted, [*drifted.notices, *checked.notices]))


@flow(name="monitor-model", log_prints=True)
def monitor_model(model: str, window: str | None = None, log_hours: float | None = None) -> dict[str, Any]:
    """resolve -> window -> score -> drift -> checks -> record -> alert, on the spec's alias (@champion).

    ``window``: a file to score now; ``log_hours``: the window is the inference log's last that many
    hours (see :func:`quantgate.monitoring.run.run_monitor`)."""
    configure_environment()
    served = resolve(model)
    win = window_of(served, window, log_hours)
    scored = score(served, win)
    drifted = drift(served, scored)
    checked = checks(served, win, scored)
    recorded = record(served, win, scored, drifted, checked)
    alerted = alert(served, recorded, drifted, checked)
    return MonitorOutcome.from_steps(served, win, drifted, checked, recorded, alerted).summary()
