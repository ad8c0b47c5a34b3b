"""Post-deployment monitoring's engine: the inference log, delayed labels, Evidently drift, and the
statistics of the production checks. A monitoring run is steps over it: :mod:`quantgate.monitoring`.

Names are resolved lazily (PEP 562) so ``import quantgate.monitor`` costs nothing; pandas and
Evidently load only when a function that needs them is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate._lazy import lazy_exports

if TYPE_CHECKING:
    from quantgate.monitor.drift import ColumnDrift, DriftResult, detect_drift
    from quantgate.monitor.inference_log import append_inferences, read_inferences

_EXPORTS: dict[str, str] = {
    "ColumnDrift": "quantgate.monitor.drift",
    "DriftResult": "quantgate.monitor.drift",
    "detect_drift": "quantgate.monitor.drift",
    "append_inferences": "quantgate.monitor.inference_log",
    "read_inferences": "quantgate.monitor.inference_log",
}

__all__ = [
    "ColumnDrift",
    "DriftResult",
    "append_inferences",
    "detect_drift",
    "read_inferences",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
