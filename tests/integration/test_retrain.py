"""The retrain flow for real (Prefect test harness, an MLflow store in a fresh QUANTGATE_HOME,
a loopback alert receiver): served rows joined with delayed labels, one retraining per drift
episode, suppressed events recorded and alerted, a broken team deployment fails and frees the claim."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture()
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> Iterator[Any]:
    """A new QUANTGATE_HOME with the small demo data written (no model registered yet)."""
    from quantgate.data import demo_models as dm
    from quantgate.demo_receiver import LocalReceiver
    from quantgate.settings import configure_mlflow, get_settings, reset_settings

    monkeypatch.setenv("QUANTGATE_HOME", str(tmp_path / "home"))
    reset_settings()
    s = get_settings()
    configure_mlflow(s)
    dm.prepare_adult(dm.DemoSize.small(), s)
    receiver = LocalReceiver().start()
    monkeypatch.setenv("QUANTGATE_ALERT_WEBHOOK", receiver.url)
    try:
        yield s, receiver
    finally:
        receiver.stop()
        monkeypatch.undo()
        reset_settings()
        configure_mlflow(get_settings())


def _serve_rows(s: Any, n: int, labelled: int) -> None:
    """What `quantgate serve` would have logged for ``n`` drifted rows, and labels for some."""
    import pandas as pd

    from quantgate.data.datasets import ADULT_LABEL
    from quantgate.monitor.inference_log import append_inferences, inference_root, model_log_dir
    from quantgate.monitor.labels import store_labels

    rows = pd.read_parquet(s.data_dir / "adult-income" / "window-drifted.parquet").head(n)
    ids = [f"req-{i}" for i in range(n)]
    append_inferences(
        model_log_dir("adult-income-quantized", inference_root(s)) / "hour=manual",
        rows.drop(columns=[ADULT_LABEL]),
        pd.DataFrame({"label": [0] * n}),
        model="adult-income-quantized",
        version="1",
        request_ids=ids,
        timestamp=datetime.now(UTC),
    )
    if not labelled:
        return
    store_labels(
        "adult-income-quantized",
        pd.DataFrame({"request_id": ids[:labelled], "request_row": 0, "label": rows[ADULT_LABEL].head(labelled)}),
        s,
    )


def test_retrain_once_per_episode(fresh_home: tuple[Any, Any]) -> None:
    from quantgate.flows.retrain import retrain_model
    from quantgate.registry.mlflow_registry import client
    from quantgate.retrain.debounce import RetrainLedger, ledger_path

    s, receiver = fresh_home
    _serve_rows(s, 300, labelled=120)
    first = retrain_model("adult-income-quantized", drift_run="run-A", drift_event_id="ev-1", drifted_version="1")
    assert first["retrained"] and first["decision"] == "retrain", first
    assert first["window_rows"] == 120 and first["event_emitted"] is True
    name, version = first["registered"].split("/")
    mv = client(s).get_model_version(name, version)
    assert mv.tags["quantgate.trigger.drift_run"] == "run-A"
    assert mv.tags["quantgate.trigger.event"] == "ev-1"
    assert mv.tags["quantgate.retrain.window_rows"] == "120"
    assert "plus 120 labelled served rows" in mv.description
    # the same drift run again, then a new drift run inside the 24 h cool-down: recorded, alerted, no training
    again = retrain_model("adult-income", drift_run="run-A", drift_event_id="ev-2")
    later = retrain_model("adult-income", drift_run="run-B", drift_event_id="ev-3")
    assert (again["decision"], later["decision"]) == ("duplicate", "cooldown")
    assert not again["retrained"] and not later["retrained"]
    assert [str(v.version) for v in client(s).search_model_versions("name='adult-income'")] == [version]
    hist = RetrainLedger(ledger_path(s.home_abs)).history("adult-income")
    assert [(h.event_id, h.status) for h in hist] == [
        ("ev-1", "succeeded"),
        ("ev-2", "suppressed"),
        ("ev-3", "suppressed"),
    ]
    titles = [r["title"] for r in receiver.received]
    assert titles == [
        f"Retrained adult-income after drift: v{version}",
        "Drift on adult-income: retraining skipped",
        "Drift on adult-income: retraining skipped",
    ]
    assert "cool-down until" in receiver.received[-1]["summary"]


def test_no_labels_means_training_data_only(fresh_home: tuple[Any, Any]) -> None:
    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC
    from quantgate.retrain.builtin import labelled_window

    s, _ = fresh_home
    cols = [*ADULT_NUMERIC, *ADULT_CATEGORICAL]
    none = labelled_window("adult-income-quantized", ADULT_LABEL, cols, 24, s)
    assert none.labelled_rows == 0 and "no served rows" in none.notes[0]
    _serve_rows(s, 50, labelled=0)
    unlabelled = labelled_window("adult-income-quantized", ADULT_LABEL, cols, 24, s)
    assert (unlabelled.served_rows, unlabelled.labelled_rows) == (50, 0)
    assert "no labels have arrived" in unlabelled.notes[0]


def test_broken_team_deployment_fails_and_frees_the_claim(
    fresh_home: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """retrain: {deployment: ...} naming a deployment that does not exist: the flow fails with the
    reason, nothing is registered, and the next drift event may retry (a failure is no retraining)."""
    from quantgate.flows.retrain import retrain_model
    from quantgate.registry.mlflow_registry import client
    from quantgate.retrain.debounce import RetrainLedger, ledger_path
    from quantgate.settings import reset_settings

    s, receiver = fresh_home
    project = tmp_path / "project"
    for d in ("policies", "registry", "monitoring"):
        shutil.copytree(ROOT / d, project / d)
    f = project / "registry" / "models" / "adult-income.yaml"
    text = f.read_text()
    f.write_text(text[: text.index("retrain:")] + 'retrain:\n  deployment: "train-income/missing"\n  timeout: 30s\n')
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(project))
    reset_settings()
    state = retrain_model("adult-income", drift_run="run-X", return_state=True)
    assert state.is_failed()
    assert "train-income/missing" in str(state.message) or "train-income/missing" in repr(
        state.result(raise_on_failure=False)
    )
    hist = RetrainLedger(ledger_path(s.home_abs)).history("adult-income")
    assert [(h.drift_run, h.status) for h in hist] == [("run-X", "failed")]
    assert client(s).search_model_versions("name='adult-income'") == []
    assert receiver.received[-1]["title"] == "Retraining of adult-income failed"
    retry = retrain_model("adult-income", drift_run="run-Y", return_state=True)
    assert retry.is_failed()  # it was allowed to try again (and failed the same way)
    assert [h.status for h in RetrainLedger(ledger_path(s.home_abs)).history("adult-income")] == ["failed", "failed"]
