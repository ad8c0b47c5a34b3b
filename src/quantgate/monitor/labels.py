"""Delayed labels: ground truth that arrives after the prediction, joined to the inference log by request id.

A labels file is a CSV or Parquet table with ``request_id`` and ``label`` (and ``request_row``
when one request scored several rows; without it the label belongs to row 0 of the request).
It is stored next to the inference log it labels:

- embedded: Parquet files under ``$QUANTGATE_HOME/labels/model=<name>/`` (one file per ingest);
- server mode (``QUANTGATE_INFERENCE_LOG=postgresql://...``): the ``quantgate_labels`` table.

A later label for the same (request_id, request_row) replaces the earlier one when read.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.errors import DataError
from quantgate.pg import fetch, is_pg_url, run_pg

if TYPE_CHECKING:
    from quantgate.settings import Settings

REQUEST_ID, REQUEST_ROW, LABEL, RECEIVED_AT = "request_id", "request_row", "label", "received_at"
PG_LABELS_TABLE = "quantgate_labels"
_PG_DDL = f"""
CREATE TABLE IF NOT EXISTS {PG_LABELS_TABLE} (
    id          bigserial PRIMARY KEY,
    model       text NOT NULL,
    request_id  text NOT NULL,
    request_row integer NOT NULL,
    label       text NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {PG_LABELS_TABLE}_request ON {PG_LABELS_TABLE} (model, request_id);
"""


def labels_root(settings: Settings | None = None) -> Path:
    from quantgate.settings import get_settings

    return (settings or get_settings()).home_abs / "labels"


def _store(settings: Settings | None) -> str:
    """Where labels live: the inference log's PostgreSQL database, or the embedded Parquet root."""
    from quantgate.monitor.inference_log import LOG_ENV

    target = os.environ.get(LOG_ENV) or ""
    return target if is_pg_url(target) else str(labels_root(settings))


def read_label_file(path: str | Path) -> pd.DataFrame:
    """A labels table (CSV or Parquet), checked: request_id and label present, no empty values."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"labels file not found: {p}", "pass a CSV or Parquet file with request_id,label")
    if p.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(p)
    elif p.suffix.lower() == ".csv":
        df = pd.read_csv(p, dtype={REQUEST_ID: str, LABEL: str})
    else:
        raise DataError(f"labels file {p} is neither .csv nor .parquet", "convert it to CSV or Parquet")
    return normalize_labels(df, f"labels file {p}")


def normalize_labels(df: pd.DataFrame, what: str = "labels") -> pd.DataFrame:
    """``request_id``, ``request_row`` (0 when absent), ``label`` as text; refuses missing columns or values."""
    missing = [c for c in (REQUEST_ID, LABEL) if c not in df.columns]
    if missing:
        raise DataError(
            f"{what} lacks column(s): {', '.join(missing)} (has: {', '.join(map(str, df.columns))})",
            "give request_id,label (and request_row when a request scored several rows)",
        )
    if df.empty:
        raise DataError(f"{what} has no rows")
    rows = df[REQUEST_ROW] if REQUEST_ROW in df.columns else pd.Series(0, index=df.index)
    out = pd.DataFrame(
        {
            REQUEST_ID: df[REQUEST_ID].astype("string"),
            REQUEST_ROW: pd.to_numeric(rows, errors="coerce"),
            LABEL: df[LABEL].astype("string"),
        }
    )
    bad = out[out[[REQUEST_ID, REQUEST_ROW, LABEL]].isna().any(axis=1)]
    if len(bad):
        raise DataError(
            f"{what}: {len(bad)} row(s) with an empty request_id, label or request_row "
            f"(first at line {int(bad.index[0]) + 2})",
            "fill or drop them",
        )
    out[REQUEST_ROW] = out[REQUEST_ROW].astype("int64")
    return out


def ingest_labels(model: str, path: str | Path, settings: Settings | None = None) -> tuple[int, str]:
    """Store a labels file for ``model`` (the served ``<name>-quantized``); returns (rows, where)."""
    return store_labels(model, read_label_file(path), settings)


def store_labels(model: str, labels: pd.DataFrame, settings: Settings | None = None) -> tuple[int, str]:
    """Store delayed ground truth (``request_id``, ``request_row``, ``label``) for ``model``, the
    served ``<name>-quantized``; returns (rows, where). Monitoring and retraining read it back."""
    labels = normalize_labels(labels)
    labels[RECEIVED_AT] = pd.Timestamp(datetime.now(UTC))
    store = _store(settings)
    if is_pg_url(store):
        _pg_insert(store, model, labels)
        return len(labels), f"PostgreSQL table {PG_LABELS_TABLE}"
    directory = Path(store) / f"model={model}"
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"part-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{final.name}.tmp"
    labels.to_parquet(tmp, index=False)
    os.replace(tmp, final)
    return len(labels), str(directory)


def read_labels(model: str, settings: Settings | None = None) -> pd.DataFrame:
    """Every stored label of ``model``, the latest per (request_id, request_row)."""
    store = _store(settings)
    if is_pg_url(store):
        df = _pg_read(store, model)
    else:
        directory = Path(store) / f"model={model}"
        files = sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []
        frames = [pd.read_parquet(f) for f in files]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[REQUEST_ID, REQUEST_ROW, LABEL])
    if df.empty:
        return pd.DataFrame({REQUEST_ID: pd.Series([], dtype="string"), REQUEST_ROW: [], LABEL: []})
    df = df.sort_values(RECEIVED_AT, kind="stable") if RECEIVED_AT in df.columns else df
    df = df.drop_duplicates([REQUEST_ID, REQUEST_ROW], keep="last")
    return df[[REQUEST_ID, REQUEST_ROW, LABEL]].reset_index(drop=True)


def join_labels(window: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The window's rows that have a label, with a ``true_label`` column (inner join on request id and row)."""
    if labels.empty or REQUEST_ID not in window.columns:
        return window.iloc[0:0].assign(true_label=pd.Series([], dtype="string"))
    rows = window[REQUEST_ROW] if REQUEST_ROW in window.columns else pd.Series(0, index=window.index)
    keyed = window.assign(
        **{REQUEST_ID: window[REQUEST_ID].astype("string"), REQUEST_ROW: rows.fillna(0).astype("int64")}
    )
    right = labels.rename(columns={LABEL: "true_label"}).astype({REQUEST_ID: "string", REQUEST_ROW: "int64"})
    return keyed.merge(right, on=[REQUEST_ID, REQUEST_ROW], how="inner")


def _pg_insert(url: str, model: str, labels: pd.DataFrame) -> None:
    rows = [
        (model, str(r), int(k), str(lab), ts.to_pydatetime())
        for r, k, lab, ts in labels[[REQUEST_ID, REQUEST_ROW, LABEL, RECEIVED_AT]].itertuples(index=False)
    ]

    async def insert(conn: Any) -> None:
        await conn.executemany(
            f"INSERT INTO {PG_LABELS_TABLE} (model, request_id, request_row, label, received_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            rows,
        )

    run_pg(url, _PG_DDL, insert, what="store labels in the inference log database")


def _pg_read(url: str, model: str) -> pd.DataFrame:
    found = fetch(
        url,
        _PG_DDL,
        f"SELECT request_id, request_row, label, received_at FROM {PG_LABELS_TABLE} "
        "WHERE model = $1 ORDER BY received_at, id",
        model,
        what="read labels from the inference log database",
    )
    return pd.DataFrame([dict(r) for r in found], columns=[REQUEST_ID, REQUEST_ROW, LABEL, RECEIVED_AT])  # type: ignore[call-overload]
