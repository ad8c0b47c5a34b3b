"""Delayed labels stored next to the inference log: Parquet under $QUANTGATE_HOME, or PostgreSQL in server mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import pg_database, pg_down

from quantgate.monitor.labels import PG_LABELS_TABLE, ingest_labels, join_labels, read_labels

pytestmark = pytest.mark.integration


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A database of this test's own, dropped afterwards."""
    if reason := pg_down():
        pytest.skip(reason)
    with pg_database("qg_monitor") as url:
        yield url


def _files(tmp_path: Path) -> tuple[Path, Path]:
    first = tmp_path / "first.csv"
    first.write_text("request_id,label,request_row\nr1,>50K,0\nr1,<=50K,1\nr2,<=50K,0\n")
    later = tmp_path / "later.parquet"  # a correction for r2 arrives later
    pd.DataFrame({"request_id": ["r2"], "label": [">50K"]}).to_parquet(later)
    return first, later


def _check(model: str, settings: Any) -> None:
    stored = read_labels(model, settings)
    assert sorted(zip(stored["request_id"], stored["request_row"], stored["label"], strict=True)) == [
        ("r1", 0, ">50K"),
        ("r1", 1, "<=50K"),
        ("r2", 0, ">50K"),
    ]
    window = pd.DataFrame({"request_id": ["r1", "r1", "r2", "r9"], "request_row": [0, 1, 0, 0], "label": [">50K"] * 4})
    assert join_labels(window, stored)["true_label"].tolist() == [">50K", "<=50K", ">50K"]
    assert read_labels(f"{model}-other", settings).empty


def test_labels_in_parquet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.delenv("QUANTGATE_INFERENCE_LOG", raising=False)
    first, later = _files(tmp_path)
    assert ingest_labels("lab-test-quantized", first, settings)[0] == 3
    rows, where = ingest_labels("lab-test-quantized", later, settings)
    assert rows == 1 and where.startswith(str(settings.home_abs / "labels"))
    _check("lab-test-quantized", settings)


def test_labels_in_postgresql(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setenv("QUANTGATE_INFERENCE_LOG", pg_url)
    first, later = _files(tmp_path)
    ingest_labels("lab-test-quantized", first, settings)
    assert ingest_labels("lab-test-quantized", later, settings) == (1, f"PostgreSQL table {PG_LABELS_TABLE}")
    _check("lab-test-quantized", settings)


def test_monitor_labels_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """`quantgate monitor-labels` (in-process): stores the file, or one readable line and exit 2."""
    from typer.testing import CliRunner

    from quantgate.cli import app

    monkeypatch.delenv("QUANTGATE_INFERENCE_LOG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    first, _ = _files(tmp_path)
    ok = CliRunner().invoke(app, ["monitor-labels", "cli-test", str(first)])
    assert ok.exit_code == 0 and "stored 3 label(s) for cli-test-quantized" in ok.output, ok.output
    assert len(read_labels("cli-test-quantized", settings)) == 3
    (tmp_path / "bad.csv").write_text("id,label\nr1,1\n")
    bad = CliRunner().invoke(app, ["monitor-labels", "cli-test", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 2 and "lacks column(s): request_id" in bad.output, bad.output
