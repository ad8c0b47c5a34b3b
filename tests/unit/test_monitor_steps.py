"""The monitoring steps (:mod:`quantgate.monitoring`) with values in and values out: no MLflow
server, no Evidently run, no HTTP.

Fallbacks that used to be silent (issue 26): a download error in the production checks was read as
"the candidate has none"; a check that crashed was "not run" and never alerted; drift with no
column compared read as "no drift".
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from quantgate.errors import DataError, RegistryError
from quantgate.monitor import production as p
from quantgate.monitor.drift import ColumnDrift, DriftResult
from quantgate.monitoring.checks import ProductionCheck, ProductionChecks
from quantgate.monitoring.drift import DriftCheck
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.spec import MonitorSpec


class _Client:
    """An MLflow client whose artifact downloads fail with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.asked: list[str] = []

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        self.asked.append(path)
        raise self.error

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        raise self.error


def _absent() -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    return MlflowException("Failed to download artifacts from path 'x'", error_code=RESOURCE_DOES_NOT_EXIST)


def _served(**tags: str) -> Served:
    model = SimpleNamespace(classes=[0, 1], input_columns=["x"])
    spec = MonitorSpec(model="m", reference="r.parquet")
    return Served(spec, "m", "m-quantized", "3", "champion", "run-9", tags, model)  # type: ignore[arg-type]


def _drift(drifted: bool | None, not_compared: dict[str, str] | None = None) -> DriftCheck:
    columns = [] if drifted is None else [
        ColumnDrift(column="age", kind="numerical", stattest="wasserstein", score=0.4, threshold=0.1,
                    score_kind="distance", drifted=drifted),
        ColumnDrift(column="prediction", kind="categorical", stattest="jensenshannon", score=0.01, threshold=0.1,
                    score_kind="distance", drifted=False),
    ]  # fmt: skip
    n_drifted = sum(c.drifted for c in columns)
    result = DriftResult(
        dataset_drift=drifted,
        drifted_share=n_drifted / len(columns) if columns else 0.0,
        n_drifted=n_drifted,
        n_columns=len(columns),
        drift_share=0.3,
        stattest_threshold=None,
        n_reference=100,
        n_current=50,
        evidently_version="0.7",
        columns=columns,
        not_compared=not_compared or {},
        html="",
    )
    return DriftCheck(result, 0.3, 50)


# --- the production checks' downloads ---------------------------------------------------------------


def test_a_download_error_names_what_was_downloaded_and_the_real_cause() -> None:
    down = _Client(ConnectionError("HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded\nmore detail"))
    with pytest.raises(p.DownloadFailed) as card:
        p.load_card(down, "run-1")
    text = str(card.value)
    assert "model_card.json" in text and "run-1" in text and "gate-time figures" in text
    assert "ConnectionError: HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded" in text
    assert "more detail" not in text and "has no" not in text
    with pytest.raises(p.DownloadFailed, match=r"eval_scores\.parquet .*ConnectionError"):
        p.load_eval_scores(down, "run-1")  # was: None, read as "governed before they were stored"


def test_only_mlflows_does_not_exist_reads_as_absent() -> None:
    with pytest.raises(DataError, match=r"run-1 has no model_card\.json"):
        p.load_card(_Client(_absent()), "run-1")
    assert p.load_eval_scores(_Client(_absent()), "run-1") is None


def test_checks_whose_gate_figures_cannot_be_downloaded_crash_with_the_cause_and_alert() -> None:
    from quantgate.monitoring.checks import run_window_checks
    from quantgate.monitoring.score import LabelJoin

    down = _Client(PermissionError("403 Forbidden"))
    window = pd.DataFrame({"x": [1.0, 2.0]})
    served = pd.DataFrame({"label": [0, 1], "probability": [0.2, 0.8]})
    labels = LabelJoin(window.iloc[0:0], 0)
    checks = run_window_checks(down, _served(), window, served, [0, 1], sample=10, alpha=0.01, labels=labels)
    for check in checks.all:
        d = check.as_dict()
        assert d["status"] == "not run"
        assert "model_card.json" in d["error"] and "PermissionError: 403 Forbidden" in d["error"]
    notices = checks.notices
    assert [(n.kind, n.details["check"]) for n in notices] == [
        ("disagreement", "disagreement"),
        ("performance", "labelled accuracy"),
        ("performance", "estimated accuracy"),
    ]
    assert all(n.not_run and "PermissionError: 403 Forbidden" in n.summary for n in notices)


# --- not run: a crash alerts, a known stop does not -------------------------------------------------


def test_a_crashed_check_alerts_and_a_known_stop_does_not() -> None:
    crashed = ProductionCheck("disagreement", "not run", reason="RuntimeError: boom", error="RuntimeError: boom")
    no_labels = ProductionCheck("labels", "not run", reason="no delayed labels for this window yet")
    fine = ProductionCheck("estimate", "ok", {"below_gate": False})
    checks = ProductionChecks(crashed, no_labels, fine)
    (notice,) = checks.notices
    assert (notice.kind, notice.details["kind"], notice.details["check"]) == ("disagreement", "not_run", "disagreement")
    assert (
        notice.summary == "disagreement not run: RuntimeError: boom" and notice.details["error"] == "RuntimeError: boom"
    )
    assert notice.title is not None and "not run" in notice.title
    assert crashed.line == "disagreement: not run (RuntimeError: boom) -> ALERT"
    assert no_labels.line == "labelled accuracy: not run (no delayed labels for this window yet)"
    assert crashed.as_dict() == {"status": "not run", "reason": "RuntimeError: boom", "error": "RuntimeError: boom"}
    assert no_labels.as_dict() == {"status": "not run", "reason": "no delayed labels for this window yet"}


def test_a_check_that_raises_unexpectedly_is_not_run_with_its_error_line() -> None:
    from quantgate.monitoring.checks import _guard

    def broken() -> dict[str, Any]:
        raise KeyError("proba_1")

    def stop() -> dict[str, Any]:
        raise DataError("no delayed labels for this window yet")

    assert _guard("estimate", broken).error == "KeyError: 'proba_1'"
    assert _guard("labels", stop).error is None and _guard("labels", stop).status == "not run"
    assert _guard("labels", lambda: {"accuracy": 0.9}).as_dict() == {"status": "ok", "accuracy": 0.9}


def test_a_label_store_that_cannot_be_read_is_not_an_empty_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantgate.monitor import labels
    from quantgate.monitoring.score import join_window_labels

    def down(*_: Any) -> None:
        raise OSError("disk gone\nmore")

    monkeypatch.setattr(labels, "read_labels", down)
    rows = pd.DataFrame({"request_id": ["a"], "request_row": [0], "x": [1.0]})
    joined = join_window_labels("m-quantized", rows, pd.Series([1]))
    assert (
        joined.rows is None and joined.error == "reading the delayed labels of m-quantized failed: OSError: disk gone"
    )
    assert joined.line.startswith("delayed labels: not read (")


# --- drift: not run alerts, partial names the columns -----------------------------------------------


def test_drift_not_run_is_an_alert_never_no_drift() -> None:
    not_run = _drift(None, {"age": "all values missing in the current window"})
    assert not_run.status == "not run" and not not_run.drifted
    assert not_run.line == "drift: NOT RUN, no column could be compared: age (all values missing in the current window)"
    (notice,) = not_run.notices
    assert notice.kind == "drift" and notice.not_run and notice.report == "drift.json"
    assert notice.details["not_compared"] == {"age": "all values missing in the current window"}


def test_drift_verdicts_and_a_partial_answer() -> None:
    drifted = _drift(True, {"sex": "Evidently returned no drift result"})
    assert drifted.status == "partial" and drifted.drifted
    assert drifted.line == (
        "drift: 1/2 columns drifted (share 0.50 >= 0.3) -> DRIFT: age; "
        "not compared: sex (Evidently returned no drift result)"
    )
    (notice,) = drifted.notices
    assert notice.kind == "drift" and not notice.not_run and notice.report == "drift_report.html"
    assert "not compared: sex (Evidently returned no drift result)" in notice.summary
    calm = _drift(False)
    assert calm.status == "ok" and calm.notices == () and calm.line.endswith("-> no drift")


# --- resolve: one name form, only "does not exist" is no alias ---------------------------------------


def test_resolve_names_the_model_once_and_only_absent_reads_as_no_champion(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    from quantgate.monitoring import resolve
    from quantgate.registry import mlflow_registry

    asked: list[str] = []

    def spec(model: str, _s: Any = None) -> MonitorSpec:
        asked.append(model)
        return MonitorSpec(model=model, reference="r.parquet")

    monkeypatch.setattr(resolve, "load_monitor_spec", spec)
    monkeypatch.setattr(mlflow_registry, "client", lambda *_a: _Client(_absent()))
    with pytest.raises(RegistryError, match="adult-income-quantized has no '@champion' version to monitor"):
        resolve.resolve_served("adult-income-quantized")
    assert asked == ["adult-income"]  # the spec of the source, whichever name was given
    from mlflow.exceptions import MlflowException

    no_alias = MlflowException("Registered model alias champion not found.", error_code=INVALID_PARAMETER_VALUE)
    monkeypatch.setattr(mlflow_registry, "client", lambda *_a: _Client(no_alias))
    with pytest.raises(RegistryError, match="no '@champion' version to monitor"):
        resolve.resolve_served("adult-income")
    monkeypatch.setattr(mlflow_registry, "client", lambda *_a: _Client(ConnectionError("server down")))
    with pytest.raises(ConnectionError, match="server down"):  # not "no @champion"
        resolve.resolve_served("adult-income")


# --- alert: every notice, linked to the run; the event only on drift --------------------------------


def test_alert_sends_each_notice_linked_to_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import quantgate.notify as notify_module
    from quantgate.monitoring import alert
    from quantgate.monitoring.record import Recorded

    sent: list[dict[str, Any]] = []

    def fake_notify(kind: str, model: str, version: str, summary: str, **kw: Any) -> Any:
        sent.append({"kind": kind, "model": model, "version": version, "summary": summary, **kw})
        return SimpleNamespace(deliveries=[{"alert": kind, "route": "r", "ok": True}])

    events: list[tuple[Any, ...]] = []
    monkeypatch.setattr(notify_module, "notify", fake_notify)
    monkeypatch.setattr(alert, "emit_drift_event", lambda *a: events.append(a))
    served = _served()
    recorded = Recorded("run-1", "7", served.ref, 0, {"status": "ok", "path": "/ws"})
    not_run = _drift(None, {"age": "x"})
    out = alert.send_alerts(served, recorded, not_run, [*not_run.notices], settings=SimpleNamespace())  # type: ignore[arg-type]
    (msg,) = sent
    assert msg["title"] == "Monitoring check not run on m-quantized v3" and msg["details"]["mlflow_run"] == "run-1"
    assert msg["run_id"] == "run-1" and msg["report"] == "drift.json" and msg["model"] == "m-quantized"
    assert events == [] and out.event_emitted is None  # no verdict, no retraining trigger
    assert out.line == "alerts: drift (not run); 1/1 deliveries ok"

    drifted = _drift(True)
    out = alert.send_alerts(served, recorded, drifted, [*drifted.notices], settings=SimpleNamespace())  # type: ignore[arg-type]
    assert sent[-1]["title"] is None and sent[-1]["kind"] == "drift"
    assert events == [("m-quantized", "3", 0.5, "run-1", "m")] and out.event_emitted is True


def test_outcome_summary_says_not_run_not_no_drift() -> None:
    from quantgate.monitoring.record import Recorded, drift_tag
    from quantgate.monitoring.run import MonitorOutcome

    served, not_run = _served(), _drift(None, {"age": "x"})
    checks = ProductionChecks(
        *(ProductionCheck(n, "not run", reason="r") for n in ("disagreement", "labels", "estimate"))
    )  # type: ignore[arg-type]
    recorded = Recorded("run-1", "7", served.ref, 0, {"status": "not run", "reason": "r"})
    window = SimpleNamespace(n=50)
    alerted = SimpleNamespace(deliveries=(), event_emitted=None, event_error=None)
    out = MonitorOutcome.from_steps(served, window, not_run, checks, recorded, alerted)  # type: ignore[arg-type]
    summary = out.summary()
    assert summary["drift"] is None and summary["drift_status"] == "not run" and not out.drifted
    assert summary["model"] == "m" and summary["version"] == "3" and summary["not_compared"] == {"age": "x"}
    assert summary["checks"][0] == "drift: NOT RUN, no column could be compared: age (x)"
    assert summary["checks"][-1] == "Evidently workspace: not run (r)"
    assert drift_tag(not_run) == "not run" and drift_tag(_drift(True)) == "true" and drift_tag(_drift(False)) == "false"
