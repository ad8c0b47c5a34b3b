"""Inference log round trip: one Parquet file per call, read back as one frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from quantgate.errors import DataError
from quantgate.monitor.inference_log import append_inferences, read_inferences


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
