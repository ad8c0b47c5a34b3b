"""Webhook delivery against a real HTTP server on 127.0.0.1.

The receiver answers from a scripted list of status codes (the last one repeats; 0 drops the
connection without an answer) and records every request, so retries, their count and the
delivered body are observed on the wire.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port

from quantgate.notify import Alert, DeliveryResult, send_webhook, slack_payload, write_alert_log

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A running local webhook receiver: its URL, scripted answers and what it received."""

    url: str
    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            index = min(len(self.requests), len(self.statuses) - 1)
            return self.statuses[index]

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status = state.next_status()
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if status == 0:  # scripted failure: drop the connection without an answer
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            reply = b"ok" if status < 400 else b"nope"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    state.url = f"http://{host}:{port}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def alert() -> Alert:
    return Alert(
        title="Data drift on adult-income",
        severity="critical",
        model="adult-income",
        version="3",
        summary="9 of 14 columns drifted (share 0.64 >= 0.5)",
        details={"drifted_columns": ["age", "sex"], "drifted_share": 0.64},
        links={"report": "http://127.0.0.1:5000/reports/drift.html"},
    )


def test_delivers_alert_json(receiver: Receiver, alert: Alert) -> None:
    result = send_webhook(receiver.url, alert, timeout=5, backoff=0.01)
    assert result.ok and result.status_code == 200 and result.attempts == 1
    assert result.error is None and result.payload_format == "json"
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/hook"
    assert request["headers"]["content-type"].startswith("application/json")
    body = json.loads(request["body"])
    assert body == alert.model_dump(mode="json")
    assert body["severity"] == "critical"
    assert body["details"]["drifted_columns"] == ["age", "sex"]
    assert Alert.model_validate(body) == alert


def test_retries_5xx_then_delivers(receiver: Receiver, alert: Alert) -> None:
    receiver.statuses = [500, 500, 200]
    result = send_webhook(receiver.url, alert, timeout=5, retries=3, backoff=0.01)
    assert result.ok and result.status_code == 200
    assert result.attempts == 3
    assert len(receiver.requests) == 3
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1  # the same alert each time


def test_dropped_connection_then_delivers(receiver: Receiver, alert: Alert) -> None:
    """The first attempt dies at the transport level (no HTTP answer at all); tenacity retries it."""
    receiver.statuses = [0, 200]
    result = send_webhook(receiver.url, alert, timeout=5, retries=3, backoff=0.01)
    assert result.ok and result.status_code == 200
    assert result.attempts == 2 and len(receiver.requests) == 2


def test_429_is_retried_with_backoff(receiver: Receiver, alert: Alert) -> None:
    receiver.statuses = [429, 429, 200]
    result = send_webhook(receiver.url, alert, timeout=5, retries=3, backoff=0.1)
    assert result.ok and result.attempts == 3
    assert result.elapsed_s >= 0.1 + 0.2  # waits of backoff * 2**(k-1) before retries 1 and 2


def test_gives_up_after_retries_on_persistent_5xx(receiver: Receiver, alert: Alert) -> None:
    receiver.statuses = [503]
    result = send_webhook(receiver.url, alert, timeout=5, retries=2, backoff=0.01)
    assert not result.ok and result.status_code == 503
    assert result.attempts == 3 and len(receiver.requests) == 3
    assert result.error and "503" in result.error


def test_4xx_is_not_retried(receiver: Receiver, alert: Alert) -> None:
    receiver.statuses = [400]
    result = send_webhook(receiver.url, alert, timeout=5, retries=3, backoff=0.01)
    assert not result.ok
    assert result.status_code == 400 and result.attempts == 1
    assert len(receiver.requests) == 1
    assert result.error and "400" in result.error


def test_unreachable_port_fails_without_raising(alert: Alert) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    result = send_webhook(url, alert, timeout=2, retries=2, backoff=0.01)
    assert isinstance(result, DeliveryResult)
    assert not result.ok and result.status_code is None
    assert result.attempts == 3
    assert result.error and "Connect" in result.error


def test_bad_url_fails_without_raising(alert: Alert) -> None:
    result = send_webhook("not-a-url", alert, retries=3, backoff=0.01)
    assert not result.ok and result.attempts == 1 and result.error


def test_slack_format_on_the_wire(receiver: Receiver, alert: Alert) -> None:
    result = send_webhook(receiver.url, alert, timeout=5, backoff=0.01, format="slack")
    assert result.ok and result.payload_format == "slack"
    body = json.loads(receiver.requests[0]["body"])
    assert body == slack_payload(alert)
    assert "Data drift on adult-income" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert all("type" in block for block in body["blocks"])
    assert "<http://127.0.0.1:5000/reports/drift.html|report>" in json.dumps(body)


def test_alert_log_appends_json_lines(receiver: Receiver, alert: Alert, tmp_path: Path) -> None:
    log_path = tmp_path / "alerts" / "alerts.jsonl"
    ok = send_webhook(receiver.url, alert, backoff=0.01)
    failed = send_webhook(f"http://127.0.0.1:{free_port()}/", alert, retries=0)
    write_alert_log(log_path, alert, ok)
    write_alert_log(log_path, alert, failed)
    lines = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    assert [line["delivery"]["ok"] for line in lines] == [True, False]
    assert lines[0]["alert"]["title"] == alert.title
    assert lines[1]["delivery"]["error"]


def test_slack_is_chosen_by_host_and_details_are_json_safe() -> None:
    import numpy as np

    from quantgate.notify.webhook import _resolve_format

    assert _resolve_format("https://hooks.slack.com/services/T/B/X", "auto") == "slack"
    assert _resolve_format("http://127.0.0.1:8080/hook", "auto") == "json"
    assert _resolve_format("https://hooks.slack.com/services/T/B/X", "json") == "json"
    a = Alert(
        title="t",
        model="m",
        version="1",
        summary="s",
        details={
            "share": np.float64(0.5),
            "n": np.int64(3),
            "cols": np.array(["a"]),
            "bad": float("nan"),
        },
    )
    assert json.loads(json.dumps(a.model_dump(mode="json"), allow_nan=False))["details"] == {
        "share": 0.5,
        "n": 3,
        "cols": ["a"],
        "bad": None,
    }
