"""Window: the rows this run judges, with what was served for each.

In order: a file (``--window``, or the spec's ``window:``), scored now by the served version (the
record step appends it to the inference log, so the next log window sees it); else the inference
log of what was served since the version's last monitored window (tag
``quantgate.last_monitor_at``), or its last ``log_hours`` hours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from quantgate.errors import DataError
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.spec import spec_log_target
from quantgate.registry.contract import TAG_LAST_MONITOR_AT
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

    from quantgate.monitor.inference_log import InferenceRecord

#: the served outputs the inference log keeps per row
OUTPUT_COLUMNS = ("label", "score", "probability")


@dataclass(frozen=True, eq=False)
class Window:
    #: the inputs, with ``request_id`` / ``request_row`` (how delayed labels find their row)
    rows: pd.DataFrame
    #: what was served for each row: ``label`` (and ``score`` / ``probability`` when logged)
    outputs: pd.DataFrame
    #: ``file <path>`` or ``inference log, <n> rows`` (the run's ``quantgate.window`` tag)
    source: str
    #: where this window ends: the next inference-log window starts there
    end: datetime
    #: a file scored now: the record step appends it to the inference log
    scored_now: InferenceRecord | None = None

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def line(self) -> str:
        logged = "; scored now, appended to the inference log when recorded" if self.scored_now is not None else ""
        return f"window: {self.source} ({self.n} rows, up to {self.end.isoformat(timespec='seconds')}){logged}"


def read_window(
    served: Served,
    *,
    window: str | None = None,
    log_hours: float | None = None,
    settings: Settings | None = None,
) -> Window:
    """The window of this run (see the module docstring); ``log_hours`` reads the log's last N
    hours whatever the spec's window file or the last-run mark say."""
    s = settings or get_settings()
    spec = served.spec
    file = window or (spec.window if log_hours is None else None)
    if file is not None:
        return _scored_file(served, file, s)
    last = served.tags.get(TAG_LAST_MONITOR_AT)
    hours = log_hours if log_hours is not None else (None if last else spec.log_hours)
    rows, end = served_window(served.name, served.version, last, hours, s, spec_log_target(spec, s))
    outputs = rows[[col for col in OUTPUT_COLUMNS if col in rows.columns]]
    return Window(rows, outputs, f"inference log, {len(rows)} rows", end)


def _scored_file(served: Served, file: str, settings: Settings) -> Window:
    from quantgate.data.datasets import read_table
    from quantgate.monitor.inference_log import InferenceRecord

    current = read_table(settings.path(file)).reset_index(drop=True)
    inputs = current[served.model.input_columns]
    outputs = served.model.predict(inputs).reset_index(drop=True)
    request_id = f"monitor-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    record = InferenceRecord(request_id, served.name, served.version, now, 0.0, inputs, outputs)
    rows = current.assign(request_id=request_id, request_row=range(len(current)))
    return Window(rows, outputs, f"file {file}", now, scored_now=record)


def served_window(
    name: str,
    version: str,
    last_run_at: str | None,
    hours: float | None,
    settings: Settings,
    target: str | Path | None = None,
) -> tuple[pd.DataFrame, datetime]:
    """What the served model saw: the inference log since the last run (or the last ``hours``).

    The log is ``target`` (the spec's ``inference_log``), else where ``quantgate serve`` writes by
    default (:func:`~quantgate.monitor.inference_log.log_target`): ``QUANTGATE_INFERENCE_LOG`` (a
    ``postgresql://`` URL or a directory), else ``$QUANTGATE_HOME/inference``. A database that
    cannot be read raises (ConfigError); an empty window raises (DataError).
    """
    from quantgate.monitor.inference_log import read_served

    now = datetime.now(UTC)
    if hours is not None or last_run_at is None:
        since = now - timedelta(hours=hours or 24.0)
    else:
        since = datetime.fromisoformat(last_run_at)
    logged, where = read_served(name, since=since, until=now, target=target, settings=settings)
    logged = logged[logged["version"] == version] if len(logged) else logged
    if logged.empty:
        raise DataError(
            f"the inference log of {name} v{version} ({where}) has no rows since {since.isoformat(timespec='seconds')}",
            "serve traffic first (quantgate serve), widen --log-hours, or pass --window FILE",
        )
    return logged.reset_index(drop=True), now
