"""Limits in front of MLflow's scoring app: a body-size cap (413) and short error messages.

MLflow's scoring server reads any body whole and, when it cannot parse it, puts the input into the
error message: a 100 MB malformed request came back as a 100 MB "message" that every client, log
and proxy on the way has to hold. :class:`RequestGuard` (pure ASGI, on ``/invocations`` only):

- refuses a body over ``max_body_bytes`` with a 413 before MLflow sees it, whether the client sent
  a ``Content-Length`` (refused unread) or streamed it in chunks (read up to the cap, then refused);
- clips the ``message`` of a 4xx/5xx JSON answer to ``max_message_chars`` and says how much was cut,
  so a refusal names the problem without echoing the request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_MESSAGE_CHARS = 2000


def clip_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` if short enough, else its start and how many characters were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} ... [{len(text) - limit:,} more characters not shown: the request is not echoed back]"


def clip_error_body(body: bytes, limit: int = MAX_MESSAGE_CHARS) -> bytes:
    """An error answer with its ``message`` (and any other long string field) clipped; a body that
    is not a JSON object is clipped as text."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return clip_message(body.decode("utf-8", "replace"), limit).encode()
    if not isinstance(doc, dict):
        return clip_message(body.decode("utf-8", "replace"), limit).encode()
    clipped = {k: clip_message(v, limit) if isinstance(v, str) else v for k, v in doc.items()}
    return json.dumps(clipped).encode()


def _json_answer(status: int, error_code: str, message: str) -> tuple[Message, Message]:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class RequestGuard:
    """See the module docstring. ``max_body_bytes`` comes from ``QUANTGATE_SERVE_MAX_BODY_MB``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_message_chars: int = MAX_MESSAGE_CHARS) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_message_chars = max_message_chars

    def _too_large(self, seen: str) -> tuple[Message, Message]:
        mb = self.max_body_bytes / (1024 * 1024)
        return _json_answer(
            413,
            "REQUEST_TOO_LARGE",
            f"the request body is {seen}, over this server's limit of {mb:g} MiB "
            "(QUANTGATE_SERVE_MAX_BODY_MB): split the rows over several requests",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            for message in self._too_large(f"{length:,} bytes"):
                await send(message)
            return
        if length is None:  # streamed: read it up to the cap, then hand MLflow the whole body
            chunks: list[bytes] = []
            total = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > self.max_body_bytes:
                    for answer in self._too_large(f"over {total:,} bytes (streamed)"):
                        await send(answer)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            receive = _replay(b"".join(chunks), receive)
        await self.app(scope, receive, self._clipping(send))

    def _clipping(self, send: Send) -> Send:
        """``send`` that buffers an error answer and clips it before it leaves."""
        held: dict[str, Any] = {}

        async def clipping_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"], held["body"] = message, []
                return
            if "start" not in held or message["type"] != "http.response.body":
                await send(message)
                return
            held["body"].append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = clip_error_body(b"".join(held["body"]), self.max_message_chars)
            start = held.pop("start")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return clipping_send


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
