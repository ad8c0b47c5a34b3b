"""The PostgreSQL inference log against the real local server (skipped, with the reason, when it is down)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from helpers import pg_down

from quantgate.errors import ConfigError
from quantgate.monitor.inference_log import (
    InferenceLogWriter,
    InferenceRecord,
    PostgresSink,
    open_sink,
    read_inferences_pg,
)

pytestmark = pytest.mark.integration

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_writer_round_trip_through_postgresql() -> None:
    if reason := pg_down():
        pytest.skip(reason)
    model = f"pg-test-{uuid.uuid4().hex[:8]}"  # its own rows only, in a shared table
    start = datetime.now(UTC) - timedelta(seconds=1)
    sink = open_sink(PG_URL)
    assert isinstance(sink, PostgresSink)
    writer = InferenceLogWriter(sink, max_batch=3, flush_interval=30).start()
    for i in range(7):
        inputs = pd.DataFrame({"age": [20 + i, 40 + i], "sex": ["Female", "Male"]})
        outputs = pd.DataFrame({"label": [0, 1], "probability": [0.25, 0.75]})
        writer.submit(InferenceRecord(f"{model}-{i}", model, "2", datetime.now(UTC), 1.0 + i, inputs, outputs))
    stats = writer.close()
    assert (stats.written_requests, stats.written_rows, stats.lost) == (7, 14, 0)

    df = read_inferences_pg(PG_URL, model=model, since=start)
    assert len(df) == 14 and df["request_id"].nunique() == 7
    assert df["age"].tolist() == [a for i in range(7) for a in (20 + i, 40 + i)]
    assert df["label"].tolist() == [0, 1] * 7 and df["request_row"].tolist() == [0, 1] * 7
    assert set(df["version"]) == {"2"} and str(df["timestamp"].dt.tz) == "UTC"
    assert read_inferences_pg(PG_URL, model=model, since=datetime.now(UTC) + timedelta(hours=1)).empty


def test_unreachable_database_is_one_readable_error() -> None:
    with pytest.raises(ConfigError, match="cannot open the inference log database"):
        PostgresSink("postgresql://postgres@127.0.0.1:1/test")


def test_rows_served_unapproved_are_marked_and_an_older_table_reads_as_approved() -> None:
    """Issue 26: rows answered by a version served with ``--allow-unapproved`` say so in the log. A
    table created before the column existed reads as approved until a server opens it (and adds the
    column); then the new rows carry the mark and the old ones stay approved."""
    import psycopg
    from helpers import pg_database

    if reason := pg_down():
        pytest.skip(reason)
    with pg_database("qg_unapproved") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE quantgate_inference (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, "
                "model text NOT NULL, version text NOT NULL, request_id text NOT NULL, request_row integer "
                "NOT NULL, latency_ms double precision NOT NULL, inputs jsonb NOT NULL, outputs jsonb NOT NULL)"
            )
            conn.execute(
                "INSERT INTO quantgate_inference (ts, model, version, request_id, request_row, latency_ms, inputs, "
                "outputs) VALUES (now() - interval '1 minute', 'm', '1', 'old', 0, 1.0, "
                """'{"age": 30}', '{"label": 0}')"""
            )
        old = read_inferences_pg(url, model="m")
        assert old["served_unapproved"].tolist() == [False]
        writer = InferenceLogWriter(open_sink(url), max_batch=4, flush_interval=30).start()
        for rid, unapproved in (("staged", True), ("approved", False)):
            inputs, outputs = pd.DataFrame({"age": [41, 42]}), pd.DataFrame({"label": [1, 0]})
            writer.submit(InferenceRecord(rid, "m", "2", datetime.now(UTC), 2.0, inputs, outputs, unapproved))
        assert writer.close().lost == 0
        df = read_inferences_pg(url, model="m")
        assert df["request_id"].tolist() == ["old", "staged", "staged", "approved", "approved"]
        assert df["served_unapproved"].tolist() == [False, True, True, False, False]
        assert df["served_unapproved"].dtype == bool
