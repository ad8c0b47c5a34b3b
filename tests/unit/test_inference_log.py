"""Inference log round trip: one Parquet file per call, read back as one frame; the batched
writer the server uses (partitions by model and hour, drains on close, counts what it lost)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from quantgate.errors import DataError
from quantgate.monitor.inference_log import (
    InferenceLogWriter,
    InferenceRecord,
    ParquetSink,
    append_inferences,
    model_log_dir,
    read_inferences,
)


def _batch(n: int, start: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    inputs = pd.DataFrame(
        {"age": range(start, start + n), "sex": ["Female", "Male"] * (n // 2) + ["Male"] * (n % 2)},
        index=range(100, 100 + n),  # a non-default index must not misalign rows
    )
    preds = pd.DataFrame({"prediction": [i % 2 for i in range(n)], "score": [0.1 * i for i in range(n)]})
    return inputs, preds


def test_round_trip(tmp_path: Path) -> None:
    log_dir = tmp_path / "inferences"
    inputs, preds = _batch(5)
    written = append_inferences(log_dir, inputs, preds, model="adult-income", version="3")
    assert written.parent == log_dir and written.name.startswith("part-")
    assert written.suffix == ".parquet"

    df = read_inferences(log_dir)
    assert len(df) == 5
    assert list(df.columns[:4]) == ["timestamp", "model", "version", "request_id"]
    assert (df["model"] == "adult-income").all() and (df["version"] == "3").all()
    assert df["request_id"].is_unique
    assert str(df["timestamp"].dt.tz) == "UTC"
    assert df["age"].tolist() == list(range(5))
    assert df["prediction"].tolist() == [0, 1, 0, 1, 0]
    assert df["score"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_one_file_per_call_and_since_filter(tmp_path: Path) -> None:
    old = datetime(2024, 1, 1, tzinfo=UTC)
    new = datetime.now(UTC)
    append_inferences(tmp_path, *_batch(3), model="m", version="1", timestamp=old)
    append_inferences(tmp_path, *_batch(4, start=10), model="m", version="2", timestamp=new)
    assert len(list(tmp_path.glob("part-*.parquet"))) == 2
    assert not list(tmp_path.glob(".*"))  # no temp files left behind

    everything = read_inferences(tmp_path)
    assert len(everything) == 7
    assert everything["timestamp"].is_monotonic_increasing

    recent = read_inferences(tmp_path, since=new - timedelta(seconds=1))
    assert len(recent) == 4 and set(recent["version"]) == {"2"}
    # naive datetimes are read as UTC
    naive = read_inferences(tmp_path, since=datetime(2023, 12, 31))
    assert len(naive) == 7


def test_given_request_ids_are_kept(tmp_path: Path) -> None:
    inputs, preds = _batch(2)
    append_inferences(tmp_path, inputs, preds, model="m", version="1", request_ids=["r-1", "r-2"])
    assert read_inferences(tmp_path)["request_id"].tolist() == ["r-1", "r-2"]


def test_missing_log_reads_empty(tmp_path: Path) -> None:
    df = read_inferences(tmp_path / "nothing-yet")
    assert df.empty
    assert {"timestamp", "model", "version", "request_id"} <= set(df.columns)


def test_bad_batches_are_data_errors(tmp_path: Path) -> None:
    inputs, preds = _batch(3)
    with pytest.raises(DataError, match="rows"):
        append_inferences(tmp_path, inputs, preds.iloc[:2], model="m", version="1")
    with pytest.raises(DataError, match="share column"):
        append_inferences(tmp_path, inputs, inputs.rename(columns={"sex": "x"}), model="m", version="1")
    with pytest.raises(DataError, match="reserved"):
        append_inferences(tmp_path, inputs.assign(model="x"), preds, model="m", version="1")
    assert not list(tmp_path.iterdir())


def _record(i: int, ts: datetime, n: int = 2) -> InferenceRecord:
    inputs, preds = _batch(n, start=i * 10)
    return InferenceRecord(f"r-{i}", "adult-income-quantized", "4", ts, 1.5 + i, inputs, preds)


def test_writer_batches_partitions_and_drains_on_close(tmp_path: Path) -> None:
    hour1 = datetime(2026, 12, 2, 9, 59, 59, tzinfo=UTC)
    hour2 = hour1 + timedelta(seconds=2)
    writer = InferenceLogWriter(ParquetSink(tmp_path), max_batch=4, flush_interval=30).start()
    for i in range(10):
        writer.submit(_record(i, hour1 if i < 5 else hour2))
    stats = writer.close()  # 30 s interval: the last, partial batch is written by close, not by time
    assert (stats.accepted, stats.written_requests, stats.written_rows, stats.lost) == (10, 10, 20, 0)
    assert stats.batches >= 3  # batches of at most 4 (how many depends on when the thread wakes)
    assert stats.summary() == f"10 request(s) logged: 10 written (20 rows in {stats.batches} batch(es)), 0 lost"

    root = model_log_dir("adult-income-quantized", tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["hour=2026120209", "hour=2026120210"]
    df = read_inferences(root)
    assert df["request_id"].tolist() == [f"r-{i}" for i in range(10) for _ in range(2)]
    assert df["request_row"].tolist() == [0, 1] * 10
    assert df.loc[df["request_id"] == "r-3", "latency_ms"].tolist() == [4.5, 4.5]
    assert df["age"].tolist() == [a for i in range(10) for a in (i * 10, i * 10 + 1)]
    # hour partitions outside the window are pruned, rows inside are filtered by timestamp
    assert set(read_inferences(root, since=hour2)["request_id"]) == {f"r-{i}" for i in range(5, 10)}
    assert set(read_inferences(root, until=hour2)["request_id"]) == {f"r-{i}" for i in range(5)}


def test_writer_flushes_on_interval(tmp_path: Path) -> None:
    import time

    writer = InferenceLogWriter(ParquetSink(tmp_path), max_batch=1000, flush_interval=0.05).start()
    writer.submit(_record(0, datetime.now(UTC)))
    deadline = time.monotonic() + 10
    while writer.stats.written_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.stats.written_requests == 1  # written while the writer is still open
    writer.close()


def test_failed_writes_are_counted_as_lost(tmp_path: Path) -> None:
    class Broken:
        def write(self, records: object) -> int:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    writer = InferenceLogWriter(Broken(), max_batch=2, flush_interval=30, write_attempts=2).start()
    for i in range(3):
        writer.submit(_record(i, datetime.now(UTC)))
    stats = writer.close()
    assert stats.written_requests == 0 and stats.failed_requests == 3 and stats.lost == 3
    assert "3 lost" in stats.summary() and "disk full" in stats.summary()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(_record(9, datetime.now(UTC)))


def test_outputs_of_any_pyfunc_shape_are_logged(tmp_path: Path) -> None:
    """A model may return an array or a Series; inputs may come as a dict of columns ("inputs")."""
    import numpy as np

    ts = datetime.now(UTC)
    records = [
        InferenceRecord("a", "m", "1", ts, 1.0, {"age": [30, 40]}, np.array([0, 1])),
        InferenceRecord("b", "m", "1", ts, 1.0, pd.DataFrame({"age": [50]}), pd.Series([0.7], name="score")),
    ]
    assert ParquetSink(tmp_path).write(records) == 3
    df = read_inferences(model_log_dir("m", tmp_path))
    assert df["age"].tolist() == [30, 40, 50]
    assert df["prediction"].tolist()[:2] == [0, 1] and df["score"].tolist()[2] == pytest.approx(0.7)


def test_writer_summary_reads_back() -> None:
    from quantgate.monitor.inference_log import WriterStats

    stats = WriterStats(accepted=7, written_requests=6, written_rows=150, batches=2, failed_requests=1)
    line = f"inference log: {stats.summary()}\n"
    assert WriterStats.counts_in("uvicorn: shutting down\n" + line) == {
        "accepted": 7,
        "written": 6,
        "written_rows": 150,
        "batches": 2,
        "lost": 1,
    }
    assert WriterStats.counts_in("no summary here") is None


def test_language_model_rows_keep_prompt_text_token_counts_and_latency(tmp_path: Path) -> None:
    """A served LM request (a ``prompt`` column in; ``generated_text``, ``prompt_tokens``,
    ``output_tokens`` out, as the LM pyfunc answers) is one row per prompt, with its types kept."""
    stamp = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    outputs = pd.DataFrame(
        {
            "generated_text": [" the question", " am here"],
            "prompt_tokens": pd.Series([6, 3], dtype="int64"),
            "output_tokens": pd.Series([4, 4], dtype="int64"),
        }
    )
    record = InferenceRecord(
        "lm-1",
        "tiny-lm-quantized",
        "2",
        stamp,
        812.5,
        pd.DataFrame({"prompt": ["To be, or not to be", "My lord"]}),
        outputs,
    )
    writer = InferenceLogWriter(ParquetSink(tmp_path), flush_interval=30).start()
    writer.submit(record)
    assert writer.close().lost == 0
    df = read_inferences(model_log_dir("tiny-lm-quantized", tmp_path))
    assert df["prompt"].tolist() == ["To be, or not to be", "My lord"]
    assert df["generated_text"].tolist() == [" the question", " am here"]
    assert df["prompt_tokens"].tolist() == [6, 3] and df["output_tokens"].tolist() == [4, 4]
    assert str(df["output_tokens"].dtype) == "int64"
    assert df["request_row"].tolist() == [0, 1] and df["latency_ms"].tolist() == [812.5, 812.5]


def test_rows_served_unapproved_are_marked_and_older_files_read_as_approved(tmp_path: Path) -> None:
    """Issue 26: a version served with --allow-unapproved marks every row it answered; files
    written before the column existed (no such column) read as approved."""
    hour = datetime(2026, 12, 2, 9, tzinfo=UTC)
    inputs, preds = _batch(2)
    append_inferences(tmp_path, inputs, preds, model="m", version="1", timestamp=hour)  # no mark: an older file
    sink = ParquetSink(tmp_path)
    sink.write([InferenceRecord("staged", "m", "2", hour + timedelta(minutes=1), 1.0, inputs, preds, unapproved=True)])
    sink.write([InferenceRecord("approved", "m", "2", hour + timedelta(minutes=2), 1.0, inputs, preds)])
    df = read_inferences(tmp_path)
    assert df["served_unapproved"].tolist() == [False, False, True, True, False, False]
    assert df["served_unapproved"].dtype == bool
    with pytest.raises(DataError, match="reserved by the inference log: served_unapproved"):
        append_inferences(tmp_path, inputs.assign(served_unapproved=1), preds, model="m", version="1")
