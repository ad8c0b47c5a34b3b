"""The monitor on a PostgreSQL inference log (server mode), against the real local server in a
throwaway database: the window is read from the table ``quantgate serve`` writes, an unreadable
database is an error that names it, and a window whose accuracy falls below the gate's sends the
``performance`` alert through the real outbox to a real loopback receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from helpers import pg_database, pg_down
from test_monitor_production import served  # noqa: F401  (the champion, the log-reading spec, a receiver)

from quantgate.errors import ConfigError
from quantgate.monitor.inference_log import LOG_ENV, InferenceLogWriter, InferenceRecord, PostgresSink, open_sink

pytestmark = pytest.mark.integration


@pytest.fixture()
def pg_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database named by QUANTGATE_INFERENCE_LOG, as a server-mode deployment sets it."""
    if reason := pg_down():
        pytest.skip(reason)
    with pg_database("qg_monitor") as url:
        monkeypatch.setenv(LOG_ENV, url)
        yield url


def _log(records: list[InferenceRecord]) -> None:
    """Through the real writer and the sink the server opens for QUANTGATE_INFERENCE_LOG."""
    sink = open_sink()
    assert isinstance(sink, PostgresSink)
    stats = InferenceLogWriter(sink, max_batch=64, flush_interval=30).start()
    for r in records:
        stats.submit(r)
    final = stats.close()
    assert final.lost == 0 and final.written_requests == len(records)


def test_window_is_read_from_the_postgresql_log(pg_log: str, settings: Any) -> None:
    from quantgate.monitor.inference_log import read_served
    from quantgate.monitoring.window import served_window

    now = datetime.now(UTC)
    frame = pd.DataFrame({"age": [30, 50], "sex": ["Female", "Male"]})
    out = pd.DataFrame({"label": ["<=50K", ">50K"], "probability": [0.2, 0.8]})
    records = [
        InferenceRecord(f"old-{i}", "m-quantized", "1", now - timedelta(hours=3), 1.0, frame, out) for i in range(3)
    ]
    records += [
        InferenceRecord(f"new-{i}", "m-quantized", "1", now - timedelta(minutes=10), 1.0, frame, out) for i in range(4)
    ]
    records += [InferenceRecord("other-version", "m-quantized", "2", now - timedelta(minutes=5), 1.0, frame, out)]
    records += [InferenceRecord("other-model", "n-quantized", "1", now - timedelta(minutes=5), 1.0, frame, out)]
    _log(records)

    since_last_run = (now - timedelta(hours=1)).isoformat()
    window, end = served_window("m-quantized", "1", since_last_run, None, settings)
    assert sorted(set(window["request_id"])) == [f"new-{i}" for i in range(4)] and len(window) == 8
    assert window["timestamp"].min() >= pd.Timestamp(now - timedelta(hours=1))
    assert window["timestamp"].max() < pd.Timestamp(end) and end >= now
    assert window["age"].tolist() == [30, 50] * 4 and window["label"].tolist() == ["<=50K", ">50K"] * 4
    assert window["request_row"].tolist() == [0, 1] * 4

    last_hours, _ = served_window("m-quantized", "1", since_last_run, 4.0, settings)  # --log-hours wins
    assert len(last_hours) == 14 and {r[:3] for r in last_hours["request_id"]} == {"old", "new"}

    async def inside_a_running_loop() -> pd.DataFrame:  # a Prefect flow, a notebook: asyncio.run cannot nest
        return read_served("m-quantized", since=now - timedelta(hours=1), settings=settings)[0]

    assert len(asyncio.run(inside_a_running_loop())) == 10  # v1's 8 rows, v2's 2

    from quantgate.errors import DataError

    with pytest.raises(DataError, match=r"PostgreSQL table quantgate_inference .* has no rows since"):
        served_window("m-quantized", "3", since_last_run, None, settings)


def test_the_monitoring_spec_names_the_log(pg_log: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``inference_log:`` in monitoring/<name>.yaml (``${VARS}`` expanded) wins over the environment:
    the monitor reads where that model's server was told to log."""
    from quantgate.monitoring.spec import MonitorSpec, spec_log_target
    from quantgate.monitoring.window import served_window

    now = datetime.now(UTC)
    frame = pd.DataFrame({"age": [41]})
    _log([InferenceRecord("spec-0", "s-quantized", "1", now - timedelta(minutes=1), 1.0, frame, frame)])
    monkeypatch.setenv("QG_TEST_LOG_URL", pg_log)
    monkeypatch.setenv(LOG_ENV, "postgresql://postgres@127.0.0.1:1/not-this-one")
    spec = MonitorSpec(model="s", reference="r.parquet", inference_log="${QG_TEST_LOG_URL}")
    target = spec_log_target(spec, settings)
    assert target == pg_log
    window, _ = served_window("s-quantized", "1", None, 1.0, settings, target)
    assert window["request_id"].tolist() == ["spec-0"]
    # a directory is resolved like the spec's other paths
    d = MonitorSpec(model="s", reference="r", inference_log="${QUANTGATE_HOME}/served")
    assert spec_log_target(d, settings) == settings.home_abs / "served"
    assert spec_log_target(MonitorSpec(model="s", reference="r"), settings) is None


def test_unreadable_database_is_an_error_naming_it(pg_log: str, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never an empty window (which would read as "no drift"): the DSN and the cause, password hidden."""
    from quantgate.monitoring.window import served_window

    missing = pg_log.replace("postgres@", "postgres:s3cret@") + "_missing"
    monkeypatch.setenv(LOG_ENV, missing)
    with pytest.raises(
        ConfigError, match=r"cannot read the inference log database .*_missing.*InvalidCatalogName"
    ) as e:
        served_window("m-quantized", "1", None, 1.0, settings)
    assert "s3cret" not in str(e.value) and "postgres:***@" in str(e.value)

    monkeypatch.setenv(LOG_ENV, "postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(
        ConfigError, match=r"cannot read the inference log database \(postgresql://postgres@127.0.0.1:1"
    ):
        served_window("m-quantized", "1", None, 1.0, settings)


def test_labels_share_the_postgresql_database(pg_log: str, settings: Any) -> None:
    from quantgate.monitor.labels import read_labels, store_labels

    first = pd.DataFrame({"request_id": ["a", "b"], "label": ["x", "y"]})
    assert store_labels("m-quantized", first, settings) == (2, "PostgreSQL table quantgate_labels")
    store_labels("m-quantized", pd.DataFrame({"request_id": ["a"], "label": ["z"]}), settings)  # a later label wins
    got = read_labels("m-quantized", settings).sort_values("request_id")
    assert got["label"].tolist() == ["z", "y"] and got["request_row"].tolist() == [0, 0]
    assert read_labels("n-quantized", settings).empty


# --- the performance alert, on the suite's champion, with the log in PostgreSQL ---------------------


def _serve(settings: Any, name: str, version: str, rows: pd.DataFrame, how: str) -> list[str]:
    """Log ``rows`` as served by the champion into PostgreSQL, one request per row, then move the
    version's last-run mark to just before them. ``how``: ``inverted`` (every label and
    probability flipped: a model gone wrong) or ``unsure`` (labels kept, probabilities squeezed
    towards 0.5: a model that no longer knows)."""
    import time

    from quantgate.registry.contract import TAG_LAST_MONITOR_AT
    from quantgate.registry.mlflow_registry import client, load_wrapped

    cl = client(settings)
    wrapped = load_wrapped(cl.get_model_version(name, version))
    inputs = rows[wrapped.input_columns].reset_index(drop=True)
    out = wrapped.predict(inputs)
    if how == "inverted":
        classes = list(wrapped.classes)
        out["label"] = [classes[1 - classes.index(v)] for v in out["label"]]
        out["probability"] = 1 - out["probability"]
    else:
        out["probability"] = 0.5 + (out["probability"] - 0.5) * 0.02
    start = datetime.now(UTC) - timedelta(seconds=1)
    cl.set_model_version_tag(name, version, TAG_LAST_MONITOR_AT, start.isoformat())
    ids = [f"{how}-{i}-{time.time_ns()}" for i in range(len(inputs))]
    now = datetime.now(UTC)
    _log([InferenceRecord(rid, name, version, now, 2.0, inputs.iloc[[i]], out.iloc[[i]]) for i, rid in enumerate(ids)])
    return ids


def test_performance_alert_from_labels_and_from_the_estimate(
    pg_log: str,
    served: dict[str, Any],  # noqa: F811
    settings: Any,
) -> None:
    from quantgate.data.datasets import read_table
    from quantgate.monitor.labels import store_labels
    from quantgate.monitoring.run import run_monitor
    from quantgate.registry.mlflow_registry import client

    name, version, receiver = served["name"], served["version"], served["receiver"]
    rows = read_table(settings.data_dir / "adult-income" / "window-stable.parquet").head(300).reset_index(drop=True)

    # 1. labels arrive for a window served with every label inverted: labelled accuracy collapses
    ids = _serve(settings, name, version, rows, "inverted")
    truth = rows["income"].astype(str).str.rstrip(".")
    store_labels(name, pd.DataFrame({"request_id": ids[:250], "label": truth.head(250)}), settings)
    out = run_monitor("adult-income")
    assert out.rows == 300  # read from the PostgreSQL log
    assert out.labels["status"] == "ok" and out.labels["labelled_rows"] == 250 and out.labels["below_gate"]
    assert out.labels["accuracy"] < out.labels["gate_accuracy"] - 0.3
    assert not out.estimate["below_gate"]  # flipped probabilities still look sure of themselves
    perf = [a for a in receiver.received if a["kind"] == "performance"]
    assert len(perf) == 1, receiver.received
    alert = perf[0]
    assert alert["model"] == name and alert["version"] == version
    assert alert["details"]["below_gate"] == ["labelled"] and alert["details"]["mlflow_run"] == out.run_id
    assert "labelled accuracy" in alert["summary"] and "delayed labels" in alert["summary"]
    links = alert["links"]
    assert f"/models/{name}/versions/{version}" in links["mlflow_version"]
    assert out.run_id in links["report"] and links["report"].endswith("classification_report.html")
    assert {"disagreement", "performance"} <= {d["alert"] for d in out.deliveries if d["ok"]}
    arts = {a.path for a in client(settings).list_artifacts(out.run_id)}
    assert "classification_report.html" in arts

    # 2. no labels yet, labels as the champion served them, probabilities squeezed to 0.5: only the
    # label-free estimate can tell, and it does
    _serve(settings, name, version, rows, "unsure")
    unsure = run_monitor("adult-income")
    assert unsure.rows == 300 and unsure.labels["status"] == "not run"
    assert not unsure.disagreement["above_gate"]
    est = unsure.estimate
    assert est["status"] == "ok" and est["below_gate"] and est["interval"][1] < est["gate_interval"][0]
    perf = [a for a in receiver.received if a["kind"] == "performance"]
    assert len(perf) == 2 and perf[1]["details"]["below_gate"] == ["estimated"]
    assert "estimated accuracy" in perf[1]["summary"] and perf[1]["links"]["report"].endswith("production.json")
    assert [d["alert"] for d in unsure.deliveries if d["ok"]] == ["performance"]


def test_a_log_nobody_wrote_yet_reads_as_no_rows(pg_log: str, settings: Any) -> None:
    """A fresh database without the table: "no rows" (the DataError a served-nothing window gives),
    and the reader created nothing (it needs no CREATE right)."""
    import psycopg

    from quantgate.errors import DataError
    from quantgate.monitor.inference_log import read_inferences_pg
    from quantgate.monitoring.window import served_window

    assert read_inferences_pg(pg_log, "m-quantized").empty
    with pytest.raises(DataError, match="has no rows since"):
        served_window("m-quantized", "1", None, 1.0, settings)
    with psycopg.connect(pg_log) as conn:
        assert conn.execute("SELECT to_regclass('quantgate_inference')").fetchone() == (None,)
