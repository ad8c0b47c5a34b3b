"""Monitoring as steps, one module each, orchestrator-agnostic (like :mod:`quantgate.steps`):
``quantgate.flows.monitor`` wraps each as a Prefect task and runs them in sequence;
:func:`~quantgate.monitoring.run.run_monitor` runs the same sequence without Prefect.

resolve (the spec -> the served version, named once) -> window (a file scored now, or the
inference log) -> score (the reference scored by the served version, the delayed labels joined)
-> drift (Evidently) -> checks (disagreement with fp32, labelled and estimated accuracy) -> record
(the only writer: MLflow run, metrics, version tags, the inference log rows of a scored file, the
Evidently workspace) -> alert (every notice the steps asked for, the drift event).

Each step takes values and returns a frozen dataclass with its ``line`` (what the flow logs) and,
where it can find something wrong, ``notices`` (the alerts it asks for). A check that did not run
alerts too: drift with no column compared, a production check that crashed.
The engine the steps use (inference log, drift, statistics, labels) is :mod:`quantgate.monitor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate._lazy import lazy_exports

if TYPE_CHECKING:
    from quantgate.monitoring.run import MonitorOutcome, run_monitor
    from quantgate.monitoring.spec import MonitorSpec, load_monitor_spec

_EXPORTS: dict[str, str] = {
    "MonitorOutcome": "quantgate.monitoring.run",
    "run_monitor": "quantgate.monitoring.run",
    "MonitorSpec": "quantgate.monitoring.spec",
    "load_monitor_spec": "quantgate.monitoring.spec",
}

__all__ = ["MonitorOutcome", "MonitorSpec", "load_monitor_spec", "run_monitor"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
