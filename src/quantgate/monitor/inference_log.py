"""Inference log: what the served model saw and answered, as a Parquet dataset directory.

Each call writes its own file (``part-<UTC time>-<uuid>.parquet``) instead of appending to
one file: Parquet files cannot be appended to, concurrent writers never collide, and a crash
mid-write leaves at most a hidden temp file that readers skip. The drift monitor reads a time
window of this log as its "current" data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from quantgate.errors import DataError

#: columns that every row gets; inputs/predictions may not use these names
TIMESTAMP, MODEL, VERSION, REQUEST_ID = "timestamp", "model", "version", "request_id"
RESERVED = (TIMESTAMP, MODEL, VERSION, REQUEST_ID)
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
    timestamp: datetime | None = None,
) -> Path:
    """Append one batch of (inputs, predictions) rows; returns the Parquet file written.

    Rows are matched by position. Every row gets the same UTC ``timestamp`` (now unless
    given, e.g. for backfills), ``model``, ``version`` and a ``request_id`` (a fresh UUID per
    row unless given, so ground truth can be joined later).
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

    ts = _utc(timestamp or datetime.now(UTC))
    rows = pd.concat([inputs.reset_index(drop=True), predictions.reset_index(drop=True)], axis=1)
    rows.columns = [str(c) for c in rows.columns]
    rows.insert(0, TIMESTAMP, pd.Series([ts] * n, dtype="datetime64[us, UTC]"))
    rows.insert(1, MODEL, pd.Series([model] * n, dtype="string"))
    rows.insert(2, VERSION, pd.Series([version] * n, dtype="string"))
    ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in range(n)]
    rows.insert(3, REQUEST_ID, pd.Series(ids, dtype="string"))

    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"inference log path is a file, not a directory: {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = directory / f"part-{stamp}-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{final.name}.tmp"
    rows.to_parquet(tmp, index=False)
    os.replace(tmp, final)  # readers see whole files only
    return final


def read_inferences(path: Path, since: datetime | None = None) -> pd.DataFrame:
    """All logged rows (optionally those with timestamp >= ``since``), oldest file first.

    A log that does not exist yet reads as empty, so a monitor started before the first
    request sees "no data" rather than an error. Files written with different input columns
    are unioned (missing values become NA).
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
    files = sorted(directory.glob(PART_GLOB))
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty
    df = pd.concat(frames, ignore_index=True)
    if since is not None:
        df = df[df[TIMESTAMP] >= pd.Timestamp(_utc(since))]
    return df.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
