"""A monitoring run: real Evidently drift on real Adult rows, alert over real HTTP to a loopback receiver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture()
def receiver() -> Any:
    from quantgate.demo_receiver import LocalReceiver

    r = LocalReceiver().start()
    yield r
    r.stop()


def test_drifted_window_alerts(
    adult_result: dict[str, Any], settings: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantgate.monitor import read_inferences
    from quantgate.monitor.job import run_monitor
    from quantgate.registry.mlflow_registry import client

    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    out = run_monitor("adult-income")
    assert out.drifted
    assert {"age", "sex"} <= set(out.drift["drifted_columns"])
    assert out.deliveries and out.deliveries[0]["ok"] is True
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert alert["model"] == "adult-income-quantized" and alert["version"] == out.version
    assert "age" in alert["details"]["drifted_columns"]
    # inference log holds the scored window
    logged = read_inferences(settings.home_abs / "inference" / "adult-income-quantized")
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
    adult_result: dict[str, Any], settings: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantgate.monitor.job import run_monitor

    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    stable = settings.data_dir / "adult-income" / "window-stable.parquet"
    out = run_monitor("adult-income", window=str(stable))
    assert not out.drifted
    assert out.deliveries == [] and receiver.received == []
