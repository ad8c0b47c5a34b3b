"""A monitoring run: real Evidently drift on real Adult rows, alert over real HTTP to a loopback receiver.

Monitoring targets ``@champion`` only: without one it stops with a clear error (exit 2 from the CLI).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from champion import champion
from helpers import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture()
def receiver() -> Any:
    from quantgate.demo_receiver import LocalReceiver

    r = LocalReceiver().start()
    yield r
    r.stop()


@pytest.fixture()
def promoted(adult_result: dict[str, Any], settings: Any) -> Iterator[tuple[str, str]]:
    with champion(settings, adult_result["registered"]) as nv:
        yield nv


def test_no_champion_stops_with_exit_2(adult_result: dict[str, Any], settings: Any) -> None:
    """The suite's candidate is not promoted: monitoring says so instead of watching @candidate."""
    from quantgate.errors import RegistryError
    from quantgate.monitor.job import run_monitor

    with pytest.raises(RegistryError, match="no '@champion' version to monitor"):
        run_monitor("adult-income")
    env = {**os.environ, "COLUMNS": "200"}
    proc = run_cli(env, "monitor", "--model", "adult-income")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no '@champion' version to monitor" in proc.stderr


def test_failed_drift_event_is_an_error_not_silence(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import prefect.events

    from quantgate.monitoring.alert import emit_drift_event

    def broken(**_: Any) -> None:
        raise ConnectionError("events API unreachable")

    monkeypatch.setattr(prefect.events, "emit_event", broken)
    with caplog.at_level(logging.ERROR, logger="quantgate.monitoring.alert"):
        error = emit_drift_event("adult-income-quantized", "3", 0.6, "run-1", "adult-income")
    assert error == "ConnectionError: events API unreachable"
    assert "was not emitted" in caplog.text


def test_drifted_window_alerts(
    promoted: tuple[str, str], settings: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantgate.monitor import read_inferences
    from quantgate.monitor.inference_log import model_log_dir
    from quantgate.monitor.job import run_monitor
    from quantgate.registry.mlflow_registry import client

    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    out = run_monitor("adult-income")
    assert out.drifted and out.alias == "champion" and out.version == promoted[1]
    assert out.event_emitted is True and out.event_error is None
    assert {"age", "sex"} <= set(out.drift["drifted_columns"])
    assert out.deliveries and out.deliveries[0]["ok"] is True
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert alert["model"] == "adult-income-quantized" and alert["version"] == out.version
    assert "age" in alert["details"]["drifted_columns"]
    # inference log holds the scored window
    logged = read_inferences(model_log_dir("adult-income-quantized", settings.home_abs / "inference"))
    window_rows = out.rows
    assert len(logged) >= window_rows and set(logged["version"]) >= {out.version}
    # the drift report is an artifact of the monitoring run, linked from the model version
    cl = client(settings)
    mv = cl.get_model_version("adult-income-quantized", out.version)
    assert mv.tags["quantgate.last_monitor_run"] == out.run_id
    html = Path(cl.download_artifacts(out.run_id, "drift_report.html", dst_path=str(settings.home_abs / "mon")))
    assert html.stat().st_size > 10_000
    drift = json.loads(
        Path(cl.download_artifacts(out.run_id, "drift.json", dst_path=str(settings.home_abs / "mon"))).read_text()
    )
    assert drift["dataset_drift"] is True


def test_stable_window_does_not_alert(
    promoted: tuple[str, str], settings: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantgate.monitor.job import run_monitor

    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    stable = settings.data_dir / "adult-income" / "window-stable.parquet"
    out = run_monitor("adult-income", window=str(stable))
    assert not out.drifted and out.event_emitted is None
    assert out.deliveries == [] and receiver.received == []


def test_window_from_the_inference_log(
    promoted: tuple[str, str], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a window file the run reads what was served: the last N hours, then since the last run."""
    from datetime import UTC, datetime, timedelta

    from quantgate.data.datasets import read_table
    from quantgate.errors import DataError
    from quantgate.monitor import read_inferences
    from quantgate.monitor.inference_log import InferenceRecord, ParquetSink, inference_root, model_log_dir
    from quantgate.monitor.job import run_monitor
    from quantgate.registry.mlflow_registry import client

    name, version = promoted
    served = read_table(settings.data_dir / "adult-income" / "window-drifted.parquet").head(300)
    inputs = served.drop(columns=["income"], errors="ignore")
    outputs = pd.DataFrame({"label": [1, 0, 0] * 100, "score": 0.5, "probability": 0.5})
    ParquetSink(inference_root(settings)).write(
        [InferenceRecord("log-window-test", name, version, datetime.now(UTC), 3.0, inputs, outputs)]
    )
    since = datetime.now(UTC) - timedelta(hours=1)
    expected = read_inferences(model_log_dir(name, inference_root(settings)), since=since)
    expected = expected[expected["version"] == version]

    out = run_monitor("adult-income", log_hours=1)
    assert out.rows == len(expected) >= 300
    run = client(settings).get_run(out.run_id)
    assert run.data.tags["quantgate.window"] == f"inference log, {len(expected)} rows"
    assert "quantgate.last_monitor_at" in client(settings).get_model_version(name, version).tags
    # the CLI's --log-hours reads the same log window, whatever the last-run mark says
    proc = run_cli({**os.environ, "COLUMNS": "250"}, "monitor", "--model", "adult-income", "--log-hours", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli_run = proc.stdout.split("; run ")[1].split()[0]
    assert client(settings).get_run(cli_run).data.tags["quantgate.window"] == f"inference log, {len(expected)} rows"
    both = run_cli(os.environ, "monitor", "--model", "adult-income", "--log-hours", "1", "--window", "x.csv")
    assert both.returncode == 2 and "not both" in both.stderr
    # with no window file in the spec, the next run starts where this one ended: nothing served since
    from quantgate.monitoring import resolve

    spec = resolve.load_monitor_spec("adult-income").model_copy(update={"window": None})
    monkeypatch.setattr(resolve, "load_monitor_spec", lambda *_a, **_k: spec)
    with pytest.raises(DataError, match="has no rows since"):
        run_monitor("adult-income")


def test_drift_not_run_and_a_crashed_check_each_alert(
    promoted: tuple[str, str], settings: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidently answering for no column is drift "not run" (never "no drift"), and a check that
    crashes is "not run" with its error line: each is an alert of its own (``details.kind = not_run``)."""
    import quantgate.monitor.drift as drift
    from quantgate.monitor import production
    from quantgate.monitor.job import run_monitor
    from quantgate.registry.mlflow_registry import client

    def unreadable(_ref: str) -> None:
        raise RuntimeError("fp32 source unreadable\ntraceback detail")

    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    monkeypatch.setattr(drift, "_read_results", lambda *_a, **_k: ([], None))
    monkeypatch.setattr(production, "load_fp32_source", unreadable)
    stable = settings.data_dir / "adult-income" / "window-stable.parquet"
    out = run_monitor("adult-income", window=str(stable))
    assert out.drift["status"] == "not run" and out.drift["dataset_drift"] is None and not out.drifted
    assert out.drift["not_compared"]["age"] == "Evidently returned no drift result"
    assert out.event_emitted is None  # no drift event: there is no verdict to retrain on
    d = out.disagreement
    assert d["status"] == "not run" and d["error"] == "RuntimeError: fp32 source unreadable"
    assert out.labels["status"] == "not run" and "error" not in out.labels  # no labels yet: a known stop
    not_run = {a["details"]["check"]: a for a in receiver.received if a["details"].get("kind") == "not_run"}
    assert set(not_run) == {"drift", "disagreement"}, receiver.received
    assert not_run["drift"]["kind"] == "drift" and "no column could be compared" in not_run["drift"]["summary"]
    assert not_run["disagreement"]["kind"] == "disagreement"
    assert "RuntimeError: fp32 source unreadable" in not_run["disagreement"]["summary"]
    assert not [a for a in receiver.received if a["details"].get("kind") != "not_run"]  # no "drift" verdict alert
    assert client(settings).get_run(out.run_id).data.tags["quantgate.drift"] == "not run"
    assert client(settings).get_model_version(*promoted).tags["quantgate.drift"] == "not run"


def test_the_flow_runs_the_steps_as_tasks(promoted: tuple[str, str], settings: Any) -> None:
    """``monitor-model`` is a sequence of Prefect tasks, one per step, so the UI shows where a run
    stopped; it returns what the CLI and the demo read."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from quantgate.flows.monitor import monitor_model

    stable = settings.data_dir / "adult-income" / "window-stable.parquet"
    state = monitor_model("adult-income", window=str(stable), return_state=True)
    out = state.result()
    assert out["drift"] is False and out["drift_status"] == "ok" and out["version"] == promoted[1]
    assert out["model"] == "adult-income" and out["rows"] > 0 and out["deliveries"] == []
    assert len(out["checks"]) == 4 and out["checks"][-1].startswith("Evidently workspace:")
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    names = {r.name.rsplit("-", 1)[0] for r in runs}  # "<task name>-<n>"
    assert names == {
        "resolve-served",
        "read-window",
        "score-window",
        "drift",
        "production-checks",
        "record",
        "alert",
    }, names
    assert all(r.state is not None and r.state.is_completed() for r in runs)
