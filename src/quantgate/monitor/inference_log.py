"""Inference log: what the served model saw and answered.

Two stores, one record shape (timestamp, model, version, request_id, request_row, latency_ms,
served_unapproved, then the input columns and the prediction columns; ``served_unapproved`` is
true on rows answered by a version served with ``quantgate serve --allow-unapproved``):

- **Parquet** (embedded default): ``$QUANTGATE_HOME/inference/model=<name>/hour=<YYYYMMDDHH>/``.
  Each write is its own file (``part-<UTC time>-<uuid>.parquet``) instead of an append to one
  file: Parquet files cannot be appended to, concurrent writers never collide, and a crash
  mid-write leaves at most a hidden temp file that readers skip.
- **PostgreSQL** (server mode): one table, inputs and outputs as JSONB because every model has
  its own columns (:class:`PostgresSink`).

The server logs through :class:`InferenceLogWriter`: a background thread with a bounded queue
that writes batches, so a request never waits on disk or database. The drift monitor reads a
time window of this log as its "current" data.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from quantgate.errors import ConfigError, DataError
from quantgate.pg import connect, fetch, is_pg_url, redact

if TYPE_CHECKING:
    from quantgate.settings import Settings

log = logging.getLogger(__name__)

#: columns that every row gets; inputs/predictions may not use these names
TIMESTAMP, MODEL, VERSION, REQUEST_ID = "timestamp", "model", "version", "request_id"
REQUEST_ROW, LATENCY_MS = "request_row", "latency_ms"
#: true on the rows a version served with ``--allow-unapproved`` answered (staging only)
SERVED_UNAPPROVED = "served_unapproved"
RESERVED = (TIMESTAMP, MODEL, VERSION, REQUEST_ID, REQUEST_ROW, LATENCY_MS, SERVED_UNAPPROVED)
_EXTRA_DTYPES = {REQUEST_ROW: "int64", LATENCY_MS: "float64", SERVED_UNAPPROVED: "bool"}
PART_GLOB = "part-*.parquet"


def _utc(ts: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so comparisons never mix naive and aware."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def append_inferences(
    path: Path,
    inputs: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    model: str,
    version: str,
    request_ids: Sequence[str] | None = None,
    timestamp: datetime | Sequence[datetime] | None = None,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Append one batch of (inputs, predictions) rows; returns the Parquet file written.

    Rows are matched by position. Every row gets a UTC ``timestamp`` (one for all rows, one per
    row, or now), ``model``, ``version`` and a ``request_id`` (a fresh UUID per row unless
    given, so ground truth can be joined later). ``extra`` adds reserved per-row columns
    (``request_row``, ``latency_ms``, ``served_unapproved``) that the server records.
    """
    if len(inputs) != len(predictions):
        raise DataError(
            f"inputs have {len(inputs)} rows but predictions have {len(predictions)}",
            "log one prediction row per input row",
        )
    clash = sorted(set(map(str, inputs.columns)) & set(map(str, predictions.columns)))
    if clash:
        raise DataError(
            f"inputs and predictions share column(s): {', '.join(clash)}",
            "rename the prediction columns (e.g. prediction, score)",
        )
    reserved = sorted(set(RESERVED) & (set(map(str, inputs.columns)) | set(map(str, predictions.columns))))
    if reserved:
        raise DataError(
            f"column name(s) reserved by the inference log: {', '.join(reserved)}",
            "rename them before logging",
        )
    n = len(inputs)
    if request_ids is not None and len(request_ids) != n:
        raise DataError(f"got {len(request_ids)} request_ids for {n} rows")
    unknown = sorted(set(extra or {}) - set(_EXTRA_DTYPES))
    if unknown:
        raise DataError(f"unknown inference log column(s): {', '.join(unknown)}")

    if timestamp is None or isinstance(timestamp, datetime):
        stamps = [_utc(timestamp or datetime.now(UTC))] * n
    else:
        stamps = [_utc(ts) for ts in timestamp]
        if len(stamps) != n:
            raise DataError(f"got {len(stamps)} timestamps for {n} rows")
    rows = pd.concat([inputs.reset_index(drop=True), predictions.reset_index(drop=True)], axis=1)
    rows.columns = [str(c) for c in rows.columns]
    rows.insert(0, TIMESTAMP, pd.Series(stamps, dtype="datetime64[us, UTC]"))
    rows.insert(1, MODEL, pd.Series([model] * n, dtype="string"))
    rows.insert(2, VERSION, pd.Series([version] * n, dtype="string"))
    ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in range(n)]
    rows.insert(3, REQUEST_ID, pd.Series(ids, dtype="string"))
    for i, (name, values) in enumerate((extra or {}).items()):
        if len(values) != n:
            raise DataError(f"got {len(values)} values of {name} for {n} rows")
        rows.insert(4 + i, name, pd.Series(list(values), dtype=_EXTRA_DTYPES[name]))

    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"inference log path is a file, not a directory: {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = directory / f"part-{stamp}-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{final.name}.tmp"
    try:
        rows.to_parquet(tmp, index=False)
        os.replace(tmp, final)  # readers see whole files only
    except BaseException:
        tmp.unlink(missing_ok=True)  # a disk that filled up keeps no half-written file to fill it more
        raise
    return final


def read_inferences(path: Path, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """All logged rows under ``path`` (timestamp in ``[since, until)`` when given), oldest first.

    ``path`` is a flat log directory or a partitioned one (``model=<name>/hour=<YYYYMMDDHH>/``,
    see :func:`partition_dir`); hour partitions wholly outside the window are not opened. A log
    that does not exist yet reads as empty, so a monitor started before the first request sees
    "no data" rather than an error. Files written with different input columns are unioned
    (missing values become NA).
    """
    directory = Path(path)
    empty = pd.DataFrame(
        {
            TIMESTAMP: pd.Series([], dtype="datetime64[us, UTC]"),
            MODEL: pd.Series([], dtype="string"),
            VERSION: pd.Series([], dtype="string"),
            REQUEST_ID: pd.Series([], dtype="string"),
        }
    )
    if not directory.exists():
        return empty
    if not directory.is_dir():
        raise DataError(f"inference log path is a file, not a directory: {directory}")
    lo = _utc(since).strftime(HOUR_FORMAT) if since is not None else None
    hi = _utc(until).strftime(HOUR_FORMAT) if until is not None else None
    files = [f for f in sorted(directory.rglob(PART_GLOB)) if _hour_in(f, directory, lo, hi)]
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty
    df = pd.concat(frames, ignore_index=True)
    if SERVED_UNAPPROVED in df.columns:  # files written before the column existed were all approved
        df[SERVED_UNAPPROVED] = df[SERVED_UNAPPROVED].astype("boolean").fillna(False).astype(bool)
    if since is not None:
        df = df[df[TIMESTAMP] >= pd.Timestamp(_utc(since))]
    if until is not None:
        df = df[df[TIMESTAMP] < pd.Timestamp(_utc(until))]
    return df.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)


HOUR_FORMAT = "%Y%m%d%H"


def _hour_in(file: Path, root: Path, lo: str | None, hi: str | None) -> bool:
    """Whether a file's ``hour=`` partition (if any) can hold rows of ``[lo, hi]`` (hour strings)."""
    for part in file.relative_to(root).parts[:-1]:
        if part.startswith("hour="):
            hour = part.removeprefix("hour=")
            return (lo is None or hour >= lo) and (hi is None or hour <= hi)
    return True


def inference_root(settings: Settings | None = None) -> Path:
    """``$QUANTGATE_HOME/inference``: where every served model's Parquet log lives."""
    from quantgate.settings import get_settings

    return (settings or get_settings()).home_abs / "inference"


def model_log_dir(model: str, root: Path | None = None) -> Path:
    """One model's partitioned log directory (read it with :func:`read_inferences`)."""
    return (root if root is not None else inference_root()) / f"model={model}"


def partition_dir(root: Path, model: str, ts: datetime) -> Path:
    """``<root>/model=<name>/hour=<YYYYMMDDHH>``: the Parquet partition a row at ``ts`` goes to."""
    return model_log_dir(model, root) / f"hour={_utc(ts).strftime(HOUR_FORMAT)}"


# --- what the server logs, and where --------------------------------------------------------


@dataclass(frozen=True)
class InferenceRecord:
    """One served request: what came in, what went out, and when.

    ``inputs``/``outputs`` are kept as MLflow's scoring server parsed and returned them; turning
    them into tables happens on the writer thread, never on the request path.
    """

    request_id: str
    model: str
    version: str
    timestamp: datetime
    latency_ms: float
    inputs: Any
    outputs: Any
    unapproved: bool = False
    """answered by a version served with ``--allow-unapproved`` (its approval does not hold)"""


def _as_frame(value: Any, prefix: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A table of what a pyfunc took or returned (DataFrame, Series, dict of columns, records, array)."""
    import numpy as np

    if isinstance(value, pd.DataFrame):
        frame = value
    elif isinstance(value, pd.Series):
        frame = value.to_frame(name=value.name if value.name is not None else prefix)
    elif isinstance(value, dict):
        frame = pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in value.items()})
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        frame = pd.DataFrame.from_records(value)
    else:
        arr = np.asarray(value)
        arr = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr.reshape(-1, 1)
        names = list(columns) if columns is not None and len(columns) == arr.shape[1] else None
        if names is None:
            names = [prefix] if arr.shape[1] == 1 else [f"{prefix}_{i}" for i in range(arr.shape[1])]
        frame = pd.DataFrame(arr, columns=names)
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _batch_frames(records: Sequence[InferenceRecord]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[Any]]]:
    """Concatenate records into (inputs, outputs, per-row log columns).

    One ``pd.concat`` per side for the whole batch (DataFrames, the usual case, are taken as
    they are): per-record pandas work costs ~1 ms and, holding the GIL, would slow the requests
    being served while the writer runs.
    """
    ins = [r.inputs if isinstance(r.inputs, pd.DataFrame) else _as_frame(r.inputs, "input") for r in records]
    outs = [r.outputs if isinstance(r.outputs, pd.DataFrame) else _as_frame(r.outputs, "prediction") for r in records]
    meta: dict[str, list[Any]] = {k: [] for k in RESERVED}
    for k, (r, i) in enumerate(zip(records, ins, strict=True)):
        n = len(i)
        if len(outs[k]) != n:  # a model answering one row per request (or none) is logged as is
            outs[k] = outs[k].reset_index(drop=True).reindex(range(n))
        meta[TIMESTAMP] += [r.timestamp] * n
        meta[MODEL] += [r.model] * n
        meta[VERSION] += [r.version] * n
        meta[REQUEST_ID] += [r.request_id] * n
        meta[REQUEST_ROW] += range(n)
        meta[LATENCY_MS] += [r.latency_ms] * n
        meta[SERVED_UNAPPROVED] += [r.unapproved] * n
    inputs = pd.concat(ins, ignore_index=True)
    outputs = pd.concat(outs, ignore_index=True)
    inputs.columns = [str(c) for c in inputs.columns]
    outputs.columns = [
        f"{c}_out" if str(c) in set(inputs.columns) or str(c) in RESERVED else str(c) for c in outputs.columns
    ]
    return inputs, outputs, meta


class InferenceSink(Protocol):
    """Where batches of records go; ``write`` returns the number of rows stored."""

    def write(self, records: Sequence[InferenceRecord]) -> int: ...

    def close(self) -> None: ...


class ParquetSink:
    """Embedded store: one Parquet file per (model, hour) per batch under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, records: Sequence[InferenceRecord]) -> int:
        groups: dict[tuple[str, str, str], list[InferenceRecord]] = {}
        for r in records:
            groups.setdefault((r.model, r.version, _utc(r.timestamp).strftime(HOUR_FORMAT)), []).append(r)
        rows = 0
        for (model, version, _), group in groups.items():
            inputs, outputs, meta = _batch_frames(group)
            append_inferences(
                partition_dir(self.root, model, group[0].timestamp),
                inputs,
                outputs,
                model=model,
                version=version,
                request_ids=meta[REQUEST_ID],
                timestamp=meta[TIMESTAMP],
                extra={k: meta[k] for k in _EXTRA_DTYPES},
            )
            rows += len(inputs)
        return rows

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"Parquet under {self.root}"


PG_TABLE = "quantgate_inference"
OPEN_LOG = "open the inference log database"
_PG_DDL = f"""
CREATE TABLE IF NOT EXISTS {PG_TABLE} (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL,
    model       text NOT NULL,
    version     text NOT NULL,
    request_id  text NOT NULL,
    request_row integer NOT NULL,
    latency_ms  double precision NOT NULL,
    inputs      jsonb NOT NULL,
    outputs     jsonb NOT NULL,
    served_unapproved boolean NOT NULL DEFAULT false
);
-- a table created before the column existed: its rows were all served approved
ALTER TABLE {PG_TABLE} ADD COLUMN IF NOT EXISTS served_unapproved boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS {PG_TABLE}_model_ts ON {PG_TABLE} (model, ts);
CREATE INDEX IF NOT EXISTS {PG_TABLE}_request ON {PG_TABLE} (request_id);
"""


class PostgresSink:
    """Server mode: rows in one PostgreSQL table, inputs/outputs as JSONB (one schema for all models).

    Uses asyncpg (already installed with Prefect's server) on a private event loop owned by the
    writer thread, so no second database driver is needed.
    """

    def __init__(self, url: str) -> None:
        import asyncio

        self.url = url
        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._loop.run_until_complete(connect(url, _PG_DDL, what=OPEN_LOG))
        except ConfigError:
            self._loop.close()
            raise

    def write(self, records: Sequence[InferenceRecord]) -> int:
        inputs, outputs, meta = _batch_frames(records)
        in_json = inputs.to_json(orient="records", lines=True, date_format="iso").splitlines()
        out_json = outputs.to_json(orient="records", lines=True, date_format="iso").splitlines()
        rows = [
            (_utc(ts), m, v, rid, k, lat, i, o, bool(u))
            for ts, m, v, rid, k, lat, i, o, u in zip(
                meta[TIMESTAMP],
                meta[MODEL],
                meta[VERSION],
                meta[REQUEST_ID],
                meta[REQUEST_ROW],
                meta[LATENCY_MS],
                in_json,
                out_json,
                meta[SERVED_UNAPPROVED],
                strict=True,
            )
        ]
        sql = (
            f"INSERT INTO {PG_TABLE} (ts, model, version, request_id, request_row, latency_ms, inputs, outputs, "
            "served_unapproved) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9)"
        )
        self._loop.run_until_complete(self._conn.executemany(sql, rows))
        return len(rows)

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._conn.close(timeout=5))
        finally:
            self._loop.close()

    def describe(self) -> str:
        return f"PostgreSQL table {PG_TABLE} at {redact(self.url)}"


def read_inferences_pg(
    url: str, model: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The PostgreSQL log as the same frame :func:`read_inferences` returns (JSONB expanded to columns).

    A database that cannot be reached or read is a :class:`ConfigError` naming it, never an empty frame.
    """
    import json

    found = fetch(
        url,
        None,  # read only (no CREATE right needed); a log nobody has written yet reads as empty
        # served_unapproved read through to_jsonb: a table no server of this version has opened yet
        # (no ALTER run) has no such column, and its rows were all served approved
        f"SELECT ts, model, version, request_id, request_row, latency_ms, "
        f"COALESCE((to_jsonb({PG_TABLE}) ->> 'served_unapproved')::boolean, false) AS served_unapproved, "
        f"inputs::text AS i, outputs::text AS o FROM {PG_TABLE} WHERE ($1::text IS NULL OR model = $1) "
        "AND ($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3) "
        "ORDER BY ts, id",
        model,
        _utc(since) if since else None,
        _utc(until) if until else None,
        what="read the inference log database",
        missing_ok=True,
    )
    meta = pd.DataFrame(
        {
            TIMESTAMP: pd.Series([r["ts"] for r in found], dtype="datetime64[us, UTC]"),
            MODEL: pd.Series([r["model"] for r in found], dtype="string"),
            VERSION: pd.Series([r["version"] for r in found], dtype="string"),
            REQUEST_ID: pd.Series([r["request_id"] for r in found], dtype="string"),
            REQUEST_ROW: pd.Series([r["request_row"] for r in found], dtype="int64"),
            LATENCY_MS: pd.Series([r["latency_ms"] for r in found], dtype="float64"),
            SERVED_UNAPPROVED: pd.Series([r["served_unapproved"] for r in found], dtype="bool"),
        }
    )
    if not found:
        return meta
    inputs = pd.DataFrame([json.loads(r["i"]) for r in found])
    outputs = pd.DataFrame([json.loads(r["o"]) for r in found])
    return pd.concat([meta, inputs, outputs], axis=1)


def log_target(target: str | Path | None = None, settings: Settings | None = None) -> str | Path:
    """Where the inference log is: ``target``, else ``QUANTGATE_INFERENCE_LOG``, else
    ``$QUANTGATE_HOME/inference``; a ``postgresql://`` URL or a directory. The server writes
    there (:func:`open_sink`) and the monitor reads there (:func:`read_served`)."""
    chosen = target if target is not None else os.environ.get(LOG_ENV) or inference_root(settings)
    return str(chosen) if is_pg_url(chosen) else Path(str(chosen)).expanduser()


def open_sink(target: str | Path | None = None, settings: Settings | None = None) -> InferenceSink:
    """``postgresql://...`` -> :class:`PostgresSink`; a directory (default ``$QUANTGATE_HOME/inference``,
    or ``QUANTGATE_INFERENCE_LOG``) -> :class:`ParquetSink`."""
    where = log_target(target, settings)
    return PostgresSink(str(where)) if isinstance(where, str) else ParquetSink(where)


def read_served(
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    target: str | Path | None = None,
    settings: Settings | None = None,
) -> tuple[pd.DataFrame, str]:
    """One served model's logged rows in ``[since, until)``, from wherever :func:`log_target` says,
    and a description of where (for reports). Oldest first, same columns from either store."""
    where = log_target(target, settings)
    if isinstance(where, str):
        return read_inferences_pg(where, model, since, until), f"PostgreSQL table {PG_TABLE} at {redact(where)}"
    directory = model_log_dir(model, where)
    return read_inferences(directory, since, until), f"Parquet under {directory}"


#: where the server logs when ``--inference-log`` is not given (a directory or a postgresql:// URL)
LOG_ENV = "QUANTGATE_INFERENCE_LOG"


# --- the writer: batched, off the request path -------------------------------------------------


@dataclass
class WriterStats:
    """What the writer did; ``lost`` counts acknowledged requests that never reached the store."""

    accepted: int = 0
    written_requests: int = 0
    written_rows: int = 0
    batches: int = 0
    failed_requests: int = 0
    last_error: str | None = None
    pending_at_close: int = 0

    @property
    def lost(self) -> int:
        return self.failed_requests + self.pending_at_close

    def summary(self) -> str:
        """One line (``quantgate serve`` prints it at shutdown); :meth:`counts_in` reads it back."""
        return (
            f"{self.accepted} request(s) logged: {self.written_requests} written "
            f"({self.written_rows} rows in {self.batches} batch(es)), {self.lost} lost"
            + (f" (last error: {self.last_error})" if self.last_error else "")
        )

    @staticmethod
    def counts_in(text: str) -> dict[str, int] | None:
        """The counts of the first :meth:`summary` line in ``text`` (a server's output), or None:
        ``accepted``, ``written``, ``written_rows``, ``batches``, ``lost``."""
        import re

        found = re.search(
            r"(?P<accepted>\d+) request\(s\) logged: (?P<written>\d+) written "
            r"\((?P<written_rows>\d+) rows in (?P<batches>\d+) batch\(es\)\), (?P<lost>\d+) lost",
            text,
        )
        return {k: int(v) for k, v in found.groupdict().items()} if found else None


class InferenceLogWriter:
    """Batches records on a background thread and writes them to a sink.

    A request only appends its record to a bounded in-memory buffer (``try_submit``/``submit``);
    it does not wake the writer, because a thread woken per request competes for the GIL with
    the next request (measured: +10-20% p50 with a queue that notified on every put). The
    thread wakes every ``flush_interval`` seconds, or as soon as ``max_batch`` records wait, and
    writes them in batches of at most ``max_batch``. ``close`` drains the buffer, so a clean stop
    loses nothing; a crash loses what was not yet written: the open batch, at most
    ``queue_size`` requests (about ``flush_interval`` seconds of traffic). A full buffer makes
    ``submit`` wait (back-pressure) rather than drop an acknowledged request.
    """

    def __init__(
        self,
        sink: InferenceSink,
        *,
        max_batch: int = 512,
        flush_interval: float = 1.0,
        queue_size: int = 4096,
        write_attempts: int = 3,
    ) -> None:
        self.sink = sink
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.queue_size = max(queue_size, max_batch)
        self.write_attempts = write_attempts
        self.stats = WriterStats()
        self._buffer: deque[InferenceRecord] = deque()
        self._wake = threading.Event()
        self._drained = threading.Condition()
        self._lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="quantgate-inference-log", daemon=True)

    def start(self) -> InferenceLogWriter:
        self._thread.start()
        return self

    def try_submit(self, record: InferenceRecord) -> bool:
        """Buffer one record without waiting; False when the buffer is full (then call ``submit``
        off the event loop)."""
        if self._closed:
            raise RuntimeError("inference log writer is closed")
        if len(self._buffer) >= self.queue_size:
            self._wake.set()
            return False
        self._buffer.append(record)
        with self._lock:
            self.stats.accepted += 1
        if len(self._buffer) >= self.max_batch:
            self._wake.set()
        return True

    def submit(self, record: InferenceRecord, timeout: float | None = None) -> None:
        """Buffer one record, waiting while the buffer is full (``queue.Full`` after ``timeout``)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_submit(record):
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Full
            with self._drained:
                self._drained.wait(0.05)

    def close(self, timeout: float = 60.0) -> WriterStats:
        """Write everything buffered, stop the thread, close the sink; returns the final stats."""
        if not self._closed:
            self._closed = True
            self._stopping = True
            self._wake.set()
            if self._thread.is_alive():
                self._thread.join(timeout)
            else:  # never started: write what was buffered here
                self._drain()
            with self._lock:
                self.stats.pending_at_close = len(self._buffer)
            try:
                self.sink.close()
            except Exception as exc:  # the rows are already written; say so and go on
                log.error("closing the inference log failed: %s", exc)
        return self.stats

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing is appended after close()
            self._drain()
            if stopping:
                return

    def _drain(self) -> None:
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.max_batch, len(self._buffer)))]
            self._write(batch)
            with self._drained:
                self._drained.notify_all()

    def _write(self, batch: list[InferenceRecord]) -> None:
        import time

        error: str | None = None
        for attempt in range(1, self.write_attempts + 1):
            try:
                rows = self.sink.write(batch)
            except Exception as exc:  # counted and logged: the server keeps serving
                error = f"{type(exc).__name__}: {exc}"
                log.error("inference log batch of %d failed (attempt %d): %s", len(batch), attempt, error)
                time.sleep(0.2 * attempt)
                continue
            with self._lock:
                self.stats.written_requests += len(batch)
                self.stats.written_rows += rows
                self.stats.batches += 1
            return
        with self._lock:
            self.stats.failed_requests += len(batch)
            self.stats.last_error = error
