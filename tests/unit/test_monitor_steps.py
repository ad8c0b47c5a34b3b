"""The monitoring steps' own logic, with values in and values out (no MLflow server, no Evidently run).

Fallbacks that used to be silent (issue 26): a download error in the production checks was read as
"the candidate has none"; a check that crashed was "not run" and never alerted.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from quantgate.errors import DataError
from quantgate.monitor import production as p


class _Client:
    """An MLflow client whose artifact downloads fail with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.asked: list[str] = []

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        self.asked.append(path)
        raise self.error


def _absent() -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    return MlflowException("Failed to download artifacts from path 'x'", error_code=RESOURCE_DOES_NOT_EXIST)


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


def test_checks_whose_gate_figures_cannot_be_downloaded_crash_with_the_cause() -> None:
    from quantgate.monitor.checks import run_window_checks

    down = _Client(PermissionError("403 Forbidden"))
    mv = SimpleNamespace(name="m-quantized", version="1", run_id="run-9", tags={})
    window = pd.DataFrame({"x": [1.0, 2.0]})
    served = pd.DataFrame({"label": [0, 1], "probability": [0.2, 0.8]})
    checks = run_window_checks(down, mv, window, served, [0, 1], sample=10, alpha=0.01)
    for check in (checks.disagreement, checks.labels, checks.estimate):
        assert check["status"] == "not run"
        assert "model_card.json" in check["error"] and "PermissionError: 403 Forbidden" in check["error"]


def test_a_crashed_check_alerts_and_a_known_stop_does_not() -> None:
    from quantgate.monitor.job import not_run_alerts

    drift = SimpleNamespace(dataset_drift=False, not_compared={}, not_compared_text="")
    crashed = {"status": "not run", "reason": "RuntimeError: boom", "error": "RuntimeError: boom"}
    no_labels = {"status": "not run", "reason": "no delayed labels for this window yet"}
    alerts = not_run_alerts(drift, crashed, no_labels, {"status": "ok", "below_gate": False})
    assert [(kind, details["kind"], details["check"]) for kind, _, details, _ in alerts] == [
        ("disagreement", "not_run", "disagreement")
    ]
    assert "RuntimeError: boom" in alerts[0][1]
    silent = SimpleNamespace(dataset_drift=None, not_compared={"age": "x"}, not_compared_text="age (x)")
    (drift_alert,) = not_run_alerts(silent, {"status": "ok"}, no_labels, {"status": "ok"})
    assert drift_alert[0] == "drift" and drift_alert[2]["kind"] == "not_run" and "age (x)" in drift_alert[1]
