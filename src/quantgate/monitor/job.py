"""Kept for the imports that name it (``quantgate.monitor.job.run_monitor``, ``MonitorSpec``, ...).

A monitoring run is now steps, one module each, in :mod:`quantgate.monitoring`: resolve -> window
-> score -> drift -> checks -> record -> alert. Names resolve lazily (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate._lazy import lazy_exports

if TYPE_CHECKING:
    from quantgate.monitoring.run import MonitorOutcome, run_monitor
    from quantgate.monitoring.spec import DRIFT_EVENT, EXPERIMENT, MonitorSpec, load_monitor_spec, spec_log_target
    from quantgate.registry.contract import TAG_LAST_MONITOR_AT

_EXPORTS: dict[str, str] = {
    "MonitorOutcome": "quantgate.monitoring.run",
    "run_monitor": "quantgate.monitoring.run",
    "DRIFT_EVENT": "quantgate.monitoring.spec",
    "EXPERIMENT": "quantgate.monitoring.spec",
    "TAG_LAST_MONITOR_AT": "quantgate.registry.contract",
    "MonitorSpec": "quantgate.monitoring.spec",
    "load_monitor_spec": "quantgate.monitoring.spec",
    "spec_log_target": "quantgate.monitoring.spec",
}

__all__ = [
    "DRIFT_EVENT",
    "EXPERIMENT",
    "TAG_LAST_MONITOR_AT",
    "MonitorOutcome",
    "MonitorSpec",
    "load_monitor_spec",
    "run_monitor",
    "spec_log_target",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
