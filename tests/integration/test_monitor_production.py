"""Monitoring what was served, beyond drift: real MLflow store, real Evidently, real NannyML, real HTTP.

The window is the inference log of the suite's adult-income champion: rows scored by the champion
itself (as ``quantgate serve`` logs them), then the same rows with every served label inverted (a
quantized model gone wrong in production). Delayed labels arrive through ``quantgate monitor-labels``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from champion import champion
from helpers import ROOT, free_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def served(adult_result: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The champion, the spec reading the inference log (no window file), and a receiver for alerts."""
    from quantgate.demo_receiver import LocalReceiver
    from quantgate.monitoring import resolve

    spec = resolve.load_monitor_spec("adult-income").model_copy(update={"window": None, "disagreement_sample": 400})
    monkeypatch.setattr(resolve, "load_monitor_spec", lambda *_a, **_k: spec)
    receiver = LocalReceiver().start()
    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    with champion(settings, adult_result["registered"]) as (name, version):
        yield {"name": name, "version": version, "receiver": receiver}
    receiver.stop()


def _serve(settings: Any, name: str, version: str, rows: pd.DataFrame, invert: bool) -> list[str]:
    """Log ``rows`` as served by the champion, one request per row (request ids returned); the log's
    ``since`` is moved to just before, so the next run's window is exactly these rows."""
    from quantgate.monitor.inference_log import InferenceRecord, ParquetSink, inference_root
    from quantgate.registry.contract import TAG_LAST_MONITOR_AT
    from quantgate.registry.mlflow_registry import client, load_wrapped

    cl = client(settings)
    wrapped = load_wrapped(cl.get_model_version(name, version))
    inputs = rows[wrapped.input_columns].reset_index(drop=True)
    out = wrapped.predict(inputs)
    if invert:
        classes = list(wrapped.classes)
        out["label"] = [classes[1 - classes.index(v)] for v in out["label"]]
        out["probability"] = 1 - out["probability"]
    start = datetime.now(UTC) - timedelta(seconds=1)
    cl.set_model_version_tag(name, version, TAG_LAST_MONITOR_AT, start.isoformat())
    ids = [f"{'inv' if invert else 'ok'}-{i}-{time.time_ns()}" for i in range(len(inputs))]
    now = datetime.now(UTC)
    records = [
        InferenceRecord(rid, name, version, now, 2.0, inputs.iloc[[i]], out.iloc[[i]]) for i, rid in enumerate(ids)
    ]
    ParquetSink(inference_root(settings)).write(records)
    return ids


def test_disagreement_labels_estimate_and_workspace(served: dict[str, Any], settings: Any, tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace
    from sklearn.metrics import accuracy_score

    from quantgate.data.datasets import read_table
    from quantgate.monitor.labels import ingest_labels
    from quantgate.monitoring.run import run_monitor
    from quantgate.registry.mlflow_registry import client

    name, version, receiver = served["name"], served["version"], served["receiver"]
    rows = read_table(settings.data_dir / "adult-income" / "window-stable.parquet").head(600).reset_index(drop=True)
    ids = _serve(settings, name, version, rows, invert=False)
    ws = Workspace(str(settings.home_abs / "evidently"))
    runs_before = sum(len(ws.list_runs(pr.id)) for pr in ws.search_project(name))  # earlier tests' runs
    # labels for the first 400 requests arrive late (what `quantgate monitor-labels` calls)
    labels = pd.DataFrame({"request_id": ids[:400], "label": rows["income"].head(400).astype(str).str.rstrip(".")})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    assert ingest_labels(name, tmp_path / "labels.csv", settings)[0] == 400

    out = run_monitor("adult-income")
    assert out.rows == 600
    d = out.disagreement
    assert d["status"] == "ok", d
    assert d["n"] == 400 and d["sampled_from"] == 600 and d["source"] == served_source(settings, name, version)
    assert d["interval"][0] <= d["rate"] <= d["interval"][1] and not d["above_gate"]  # the champion as gated
    card = json.loads(
        Path(
            client(settings).download_artifacts(
                client(settings).get_model_version(name, version).run_id, "model_card.json", str(tmp_path)
            )
        ).read_text()
    )
    assert d["gate_rate"] == pytest.approx(card["metrics"]["flip_rate"])

    lab = out.labels
    assert lab["status"] == "ok", lab
    served_labels = _served_labels(settings, name, version, ids[:400])
    expected = accuracy_score(labels["label"].to_numpy(), served_labels)
    assert lab["labelled_rows"] == 400 and lab["accuracy"] == pytest.approx(expected)
    assert lab["gate_accuracy"] == pytest.approx(card["metrics"]["candidate"]["accuracy"])
    assert {g["attribute"] for g in lab["groups"]} >= {"sex"}

    est = out.estimate
    assert est["status"] == "ok", est
    assert est["estimator"].startswith("nannyml CBPE") and "no concept drift" in est["assumptions"]
    assert est["interval"][0] <= est["estimated_accuracy"] <= est["interval"][1] and not est["below_gate"]

    # artifacts and the Evidently workspace
    arts = {a.path for a in client(settings).list_artifacts(out.run_id)}
    assert {"drift_report.html", "production.json", "classification_report.html"} <= arts
    assert out.workspace["status"] == "ok", out.workspace
    assert out.workspace["path"] == str(settings.home_abs / "evidently")
    ws = Workspace(out.workspace["path"])
    project = ws.search_project(name)[0]
    assert len(ws.list_runs(project.id)) - runs_before == 3  # drift, classification, disagreement of this window
    assert {panel.title for panel in ws.get_dashboard(project.id).panels} >= {
        "Share of drifted columns",
        "Disagreement with the fp32 source (sampled rows)",
    }
    # no drift on the stable rows, no disagreement (the promotion that made the champion was announced)
    assert [a["kind"] for a in receiver.received if a["kind"] != "promoted"] == []

    # the same rows served with every label inverted: production flips far above what was approved
    _serve(settings, name, version, rows.head(300), invert=True)
    bad = run_monitor("adult-income")
    assert bad.disagreement["above_gate"] and bad.disagreement["rate"] > 0.5
    assert bad.estimate["status"] == "ok" and bad.labels["status"] == "not run"
    alerts = [a for a in receiver.received if a["details"].get("kind") == "disagreement"]
    assert len(alerts) == 1 and alerts[0]["version"] == version
    assert [d["alert"] for d in bad.deliveries if d["ok"]] == ["disagreement"]
    assert client(settings).get_run(bad.run_id).data.tags["quantgate.disagreement"] == "above_gate"


def served_source(settings: Any, name: str, version: str) -> str:
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    return client(settings).get_model_version(name, version).tags[c.TAG_SOURCE]


def _served_labels(settings: Any, name: str, version: str, ids: list[str]) -> list[str]:
    from quantgate.monitor import read_inferences
    from quantgate.monitor.inference_log import model_log_dir

    log = read_inferences(model_log_dir(name, settings.home_abs / "inference"))
    by_id = log.set_index("request_id")["label"]
    return [str(by_id[i]) for i in ids]


def test_monitor_ui_serves_the_workspace(settings: Any) -> None:
    """`quantgate monitor-ui` starts Evidently's UI on loopback for $QUANTGATE_HOME/evidently."""
    from evidently.ui.workspace import Workspace

    from quantgate.monitor.workspace import workspace_dir

    ws = Workspace(str(workspace_dir(settings)))
    if not ws.search_project("ui-check"):
        ws.create_project("ui-check")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantgate.cli", "monitor-ui", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, names = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/projects", timeout=2)
                if r.status_code == 200:
                    names = {p["name"] for p in r.json()}
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert names is not None, proc.stdout.read() if proc.poll() is not None and proc.stdout else "UI did not start"
        assert "ui-check" in names
    finally:
        proc.terminate()
        proc.wait(timeout=20)
