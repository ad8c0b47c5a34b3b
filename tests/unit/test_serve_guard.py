"""RequestGuard (quantgate.serve.guard): the body cap and the clipped error messages, on a tiny ASGI
app that echoes its input into a 400 the way MLflow's scoring server does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from quantgate.serve.guard import RequestGuard, clip_error_body, clip_message


async def _echo_400(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    answer = json.dumps({"error_code": "BAD_REQUEST", "message": "not JSON. Input: " + body.decode()}).encode()
    await send({"type": "http.response.start", "status": 400, "headers": [(b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d" % len(body)})


def _call(app: Any, chunks: list[bytes], length: int | None) -> tuple[int, bytes, dict[bytes, bytes]]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": "http", "path": "/invocations", "headers": headers}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], b"".join(m.get("body", b"") for m in sent[1:]), dict(start.get("headers", []))


def test_a_declared_body_over_the_cap_is_refused_unread() -> None:
    status, body, _ = _call(RequestGuard(_ok, max_body_bytes=100), [b"x" * 101], 101)
    assert status == 413
    assert "over this server's limit" in json.loads(body)["message"]


def test_a_streamed_body_over_the_cap_is_refused() -> None:
    status, body, _ = _call(RequestGuard(_ok, max_body_bytes=100), [b"x" * 60, b"x" * 60], None)
    assert status == 413
    assert "streamed" in json.loads(body)["message"]


def test_a_streamed_body_under_the_cap_reaches_the_app_whole() -> None:
    status, body, _ = _call(RequestGuard(_ok, max_body_bytes=100), [b"x" * 40, b"x" * 40], None)
    assert (status, body) == (200, b"80")


def test_an_error_that_echoes_the_request_is_clipped_and_its_length_fixed() -> None:
    status, body, headers = _call(RequestGuard(_echo_400, max_body_bytes=10**9), [b"y" * 50_000], 50_000)
    message = json.loads(body)["message"]
    assert status == 400
    assert message.startswith("not JSON. Input: yyy")
    assert len(message) < 2200 and "more characters not shown" in message
    assert int(headers[b"content-length"]) == len(body)


def test_short_messages_and_other_paths_are_untouched() -> None:
    assert clip_message("short") == "short"
    assert json.loads(clip_error_body(b'{"message": "bad age", "error_code": "X"}')) == {
        "message": "bad age",
        "error_code": "X",
    }
    status, body, _ = _call(RequestGuard(_ok, max_body_bytes=10), [b"x" * 5], 5)
    assert (status, body) == (200, b"5")
