"""Notifications, the pure parts: what each route type receives, routes from config, the backoff
schedule, and the outbox's state machine (a local SQLite file, a scripted sender)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quantgate.errors import ConfigError
from quantgate.notify import Alert, Backoff, DeliveryResult, Outbox, Route, build_alert
from quantgate.notify.format import MAX_DETAIL_LINES, block_message, webhook_body
from quantgate.notify.routes import routes_for
from quantgate.settings import Settings


@pytest.fixture
def alert() -> Alert:
    return build_alert(
        "drift",
        "adult-income-quantized",
        3,
        "9 of 14 columns drifted",
        links={"report": "http://ui/#/r", "mlflow_version": "http://ui/#/models/adult-income-quantized/versions/3"},
        details={"drifted_columns": ["age", "sex"], "share": 0.64},
    )


def test_kinds_give_title_and_severity() -> None:
    a = build_alert("promoted", "m-quantized", "7", "now champion")
    assert a.kind == "promoted" and a.severity == "info" and a.title == "m-quantized v7 promoted to @champion"
    assert build_alert("gate_failed", "m", 2, "s").severity == "warning"
    with pytest.raises(ValueError, match="unknown notification kind 'drfit'"):
        build_alert("drfit", "m", 1, "s")


def test_block_message_carries_summary_links_and_details(alert: Alert) -> None:
    subject, body = block_message(alert)
    assert subject == "[WARNING] Data drift on adult-income-quantized v3"
    lines = body.splitlines()
    assert lines[0] == "9 of 14 columns drifted"
    # the MLflow version link first, then the report, whatever order the caller gave
    link_lines = [ln for ln in lines if ": http://" in ln]
    assert link_lines == [
        "mlflow version: http://ui/#/models/adult-income-quantized/versions/3",
        "report: http://ui/#/r",
    ]
    assert 'drifted_columns: ["age", "sex"]' in lines and "share: 0.64" in lines
    assert lines[-1] == f"alert id: {alert.id}"


def test_block_message_keeps_long_details_short() -> None:
    many = build_alert("drift", "m", 1, "s", details={f"k{i}": "x" * 500 for i in range(MAX_DETAIL_LINES + 3)})
    _, body = block_message(many)
    detail_lines = [ln for ln in body.splitlines() if ln.startswith("k")]
    assert len(detail_lines) == MAX_DETAIL_LINES and all(len(ln) <= 200 for ln in detail_lines)
    assert "(+3 more details" in body


def test_webhook_body_json_and_slack(alert: Alert) -> None:
    plain = webhook_body(alert, slack=False)
    assert plain["kind"] == "drift" and plain["id"] == alert.id and Alert.model_validate(plain) == alert
    slack = webhook_body(alert, slack=True)
    assert slack["blocks"][0]["type"] == "header" and "Data drift" in slack["text"]
    assert "<http://ui/#/r|report>" in json.dumps(slack)


def test_route_needs_exactly_one_target() -> None:
    assert Route(block="slack-ml-alerts").kind == "block"
    assert Route(url="https://hooks.slack.com/x", type="slack").kind == "slack"
    assert Route(type="webhook", url_env="HOOK").kind == "webhook"
    for bad in ({}, {"url": "http://a", "block": "b"}, {"block": "b", "type": "slack"}, {"type": "block", "url": "u"}):
        with pytest.raises(ValueError):
            Route.model_validate(bad)
    with pytest.raises(ValueError, match="extra"):
        Route.model_validate({"block": "b", "chanel": "#ml"})


def test_route_label_never_shows_the_url_secret() -> None:
    r = Route(url="https://hooks.slack.com/services/T000/B000/SECRETTOKEN", type="slack")
    assert "SECRETTOKEN" not in r.label and r.label.startswith("slack:https://hooks.slack.com#")
    assert Route(url_env="HOOK").label == "webhook:$HOOK"
    assert Route(block="ms-teams-webhook/ml").label == "block:ms-teams-webhook/ml"


def _project(tmp_path: Path, monitoring: str | None, project: str | None) -> Settings:
    (tmp_path / "monitoring").mkdir()
    if monitoring is not None:
        (tmp_path / "monitoring" / "m.yaml").write_text(monitoring)
    if project is not None:
        (tmp_path / "quantgate.yaml").write_text(project)
    return Settings(home=tmp_path / "home", project_dir=tmp_path)


def test_routes_model_wins_over_project_then_events_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTGATE_ALERT_WEBHOOK", raising=False)
    s = _project(
        tmp_path,
        "model: m\nalerts:\n  - block: team-slack\n    events: [drift]\n  - url: http://h/x\n",
        "notifications:\n  routes:\n    - block: everyone\n",
    )
    hook = Route(url="http://h/x").label
    assert [r.label for r in routes_for("m-quantized", "drift", s)] == ["block:team-slack", hook]
    assert [r.label for r in routes_for("m", "promoted", s)] == [hook]  # the block wants drift only
    assert [r.label for r in routes_for("other-quantized", "promoted", s)] == ["block:everyone"]
    override = Settings(home=tmp_path / "home", project_dir=tmp_path, alert_webhook="http://127.0.0.1:1/x")
    assert [r.label for r in routes_for("m", "drift", override)] == ["webhook:$QUANTGATE_ALERT_WEBHOOK"]


def test_bad_route_config_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTGATE_ALERT_WEBHOOK", raising=False)
    s = _project(tmp_path, None, "notifications:\n  routes:\n    - block: a\n      events: [drfit]\n")
    with pytest.raises(ConfigError, match=r"quantgate.yaml: notifications.routes.0.events.0"):
        routes_for("m", "drift", s)


def test_backoff_schedule_doubles_up_to_the_cap() -> None:
    assert Backoff().schedule(9) == [30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    assert Backoff(backoff_s=1.5, backoff_max_s=5).schedule(4) == [1.5, 3.0, 5.0, 5.0]
    assert Backoff(backoff_s=0.0).delay(5) == 0.0


class Script:
    """A sender answering from a list (the last one repeats), recording what it was asked to send."""

    def __init__(self, *results: DeliveryResult) -> None:
        self.results = list(results)
        self.sent: list[tuple[str, str]] = []

    def __call__(self, route: Route, alert: Alert) -> DeliveryResult:
        self.sent.append((route.label, alert.id))
        return self.results[min(len(self.sent) - 1, len(self.results) - 1)]


OK = DeliveryResult(ok=True, status_code=200, attempts=1)
DOWN = DeliveryResult(ok=False, attempts=3, error="ConnectError: refused")
BAD = DeliveryResult(ok=False, status_code=400, attempts=1, error="HTTP 400", permanent=True)


def _box(tmp_path: Path, **kw: Any) -> Outbox:
    return Outbox(tmp_path / "outbox.db", backoff=Backoff(**kw))


def test_outbox_backs_off_then_delivers_once(tmp_path: Path, alert: Alert) -> None:
    box = _box(tmp_path, backoff_s=30)
    [entry] = box.enqueue(alert, [Route(url_env="HOOK")], now=1000.0)
    send = Script(DOWN, OK)
    [a] = box.flush(send, now=lambda: 1000.0)
    assert a.status == "pending" and a.attempts == 1 and a.next_attempt_at == 1030.0
    assert box.flush(send, now=lambda: 1029.0) == []  # not due yet
    [b] = box.flush(send, now=lambda: 1031.0)
    assert b.status == "delivered" and b.attempts == 2 and b.entry_id == entry
    assert box.flush(send, now=lambda: 99999.0) == []  # delivered rows are never sent again
    assert send.sent == [("webhook:$HOOK", alert.id)] * 2
    assert box.counts() == {"pending": 0, "sending": 0, "delivered": 1, "dead": 0}
    [row] = box.entries()
    assert row.attempts == 2 and row.last_error is None and row.alert_obj == alert


def test_outbox_gives_up_on_permanent_failure_or_after_max_attempts(tmp_path: Path, alert: Alert) -> None:
    box = _box(tmp_path, backoff_s=0, max_attempts=3)
    box.enqueue(alert, [Route(url="http://a/x")], now=0.0)
    box.enqueue(alert, [Route(url="http://b/x")], now=0.0)
    send = Script(BAD, DOWN)
    outcomes = [a.status for _ in range(4) for a in box.flush(send, now=lambda: 10.0)]
    assert outcomes == ["dead", "pending", "pending", "dead"]
    assert box.counts()["dead"] == 2 and {e.last_error for e in box.entries("dead")} == {"HTTP 400", DOWN.error}


def test_outbox_claim_is_leased(tmp_path: Path, alert: Alert) -> None:
    """A row claimed by a flusher that died is not sent by another until the lease expires."""
    from quantgate.notify.outbox import _SQLiteStore

    box = _box(tmp_path, lease_s=60)
    box.enqueue(alert, [Route(url_env="HOOK")], now=0.0)
    store = _SQLiteStore(tmp_path / "outbox.db")
    assert len(store.claim(1.0, 61.0, 10, None)) == 1  # a flusher claims it, then dies
    send = Script(OK)
    assert box.flush(send, now=lambda: 30.0) == [] and box.counts()["sending"] == 1
    [a] = box.flush(send, now=lambda: 62.0)
    assert a.status == "delivered" and len(send.sent) == 1


def test_outbox_survives_a_sender_bug(tmp_path: Path, alert: Alert) -> None:
    box = _box(tmp_path, backoff_s=0)
    box.enqueue(alert, [Route(url_env="HOOK")], now=0.0)

    def broken(route: Route, a: Alert) -> DeliveryResult:
        raise RuntimeError("boom")

    [a] = box.flush(broken, now=lambda: 1.0)
    assert a.status == "pending" and a.result.error == "RuntimeError: boom"
    with pytest.raises(ConfigError, match="unknown outbox status"):
        box.entries("lost")


@pytest.fixture
def quiet_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A project routing everything to an unset URL: alerts are written, never sent anywhere."""
    from quantgate.settings import get_settings, reset_settings

    s = _project(tmp_path, None, "notifications:\n  routes:\n    - url_env: QG_UNSET_HOOK\n")
    monkeypatch.delenv("QG_UNSET_HOOK", raising=False)
    monkeypatch.delenv("QUANTGATE_ALERT_WEBHOOK", raising=False)
    monkeypatch.delenv("QUANTGATE_NOTIFY_OUTBOX", raising=False)
    monkeypatch.setenv("QUANTGATE_HOME", str(s.home))
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(s.project_dir))
    reset_settings()
    yield get_settings()
    reset_settings()


def test_governance_emitters_write_their_alerts(quiet_project: Any) -> None:
    from types import SimpleNamespace

    from quantgate.errors import GateFailed
    from quantgate.notify.emit import candidate_recorded, gate_failed_hook, promoted

    mv = SimpleNamespace(name="m-quantized", version="4", run_id=None, tags={"quantgate.approved_by": "ana"})
    passed = candidate_recorded(mv, SimpleNamespace(status="pass", failed_rules=[]), "m/2", "dynamic-int8")
    failed = candidate_recorded(mv, SimpleNamespace(status="fail", failed_rules=["size"]), "m/2", "fp16")
    moved = promoted(mv, "3")
    assert [o.alert.kind for o in (passed, failed, moved) if o.alert] == [
        "candidate_pending",
        "gate_failed",
        "promoted",
    ]
    assert "quantgate promote m" in passed.alert.summary and "size" in failed.alert.summary
    assert moved.alert.summary == "m-quantized v4 is now @champion (was v3); approved by ana."
    assert passed.deliveries[0]["status"] == "pending" and "QG_UNSET_HOOK is not set" in passed.deliveries[0]["error"]
    # the flow's on_failure hook: only a GateFailed is a gate verdict
    from prefect.states import Failed

    run = SimpleNamespace(parameters={"model": "m/2"}, id="run-1")
    gate_failed_hook(None, run, Failed(data=GateFailed("no recipe met the tolerance")))
    gate_failed_hook(None, run, Failed(data=RuntimeError("a bug")))
    box = Outbox.open(quiet_project)
    kinds = [(e.kind, e.model, e.version) for e in reversed(box.entries())]
    assert kinds == [
        ("candidate_pending", "m-quantized", "4"),
        ("gate_failed", "m-quantized", "4"),
        ("promoted", "m-quantized", "4"),
        ("gate_failed", "m", "2"),
    ]
    assert "no recipe met the tolerance" in box.entries()[0].alert_obj.summary


def test_links_point_at_the_mlflow_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantgate.notify.links import run_url, version_url

    monkeypatch.delenv("QUANTGATE_MLFLOW_UI_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    embedded = Settings()
    assert version_url("adult income-quantized", 3, embedded) == (
        "http://127.0.0.1:5000/#/models/adult%20income-quantized/versions/3"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000/")
    server = Settings()
    assert run_url("abc", settings=server) == "http://mlflow.internal:5000/#/runs/abc"
    assert run_url("abc", experiment_id="7", artifact="drift_report.html", settings=server) == (
        "http://mlflow.internal:5000/#/experiments/7/runs/abc/artifactPath/drift_report.html"
    )
    monkeypatch.setenv("QUANTGATE_MLFLOW_UI_URL", "https://ml.example.com/")
    assert Settings().ui_url == "https://ml.example.com"


def test_a_failing_route_is_tried_once_per_flush(tmp_path: Path) -> None:
    """Ten alerts for a receiver that is down cost one failed try per flush, not ten."""
    box = _box(tmp_path, backoff_s=0)
    down, up = Route(url="http://down/x"), Route(url="http://up/x")
    for v in range(10):
        box.enqueue(build_alert("drift", "m", v, "s"), [down, up], now=0.0)

    def send(route: Route, a: Alert) -> DeliveryResult:
        return OK if route == up else DOWN

    done = box.flush(send, now=lambda: 1.0)
    assert sorted((a.route, a.status) for a in done) == sorted(
        [(up.label, "delivered")] * 10 + [(down.label, "pending")]
    )
    assert box.counts() == {"pending": 10, "sending": 0, "delivered": 10, "dead": 0}


def test_notify_alert_is_build_alerts_with_the_standard_links(quiet_project: Any) -> None:
    """notify's alert fields go to build_alert, the one builder (with the MLflow version link added)."""
    import inspect

    from quantgate.notify import notify
    from quantgate.notify.events import AlertFields
    from quantgate.notify.links import version_url

    fields = {
        "links": {"report": "http://ui/#/r"},
        "details": {"share": 0.5},
        "title": "custom title",
        "severity": "critical",
    }
    out = notify("drift", "m-quantized", 2, "s", drain=False, **fields)  # type: ignore[arg-type]
    links = {"mlflow_version": version_url("m-quantized", 2, quiet_project), "report": "http://ui/#/r"}
    built = build_alert(
        "drift", "m-quantized", 2, "s", links, {"share": 0.5}, title="custom title", severity="critical"
    )
    fresh = {"id", "created_at"}  # new for every alert
    assert out.alert is not None and out.alert.model_dump(exclude=fresh) == built.model_dump(exclude=fresh)
    assert set(AlertFields.__annotations__) == set(list(inspect.signature(build_alert).parameters)[4:])
    with pytest.raises(TypeError, match="detail"):
        notify("drift", "m-quantized", 2, "s", drain=False, detail={"typo": 1})  # type: ignore[call-arg]
