"""Alerts delivered to a webhook (generic JSON or Slack incoming webhook).

Delivery is best effort by design: :func:`send_webhook` never raises on a failed delivery,
it reports what happened in a :class:`DeliveryResult`, because an unreachable chat server
must not crash the monitor that noticed the drift. Transient failures (connection errors,
timeouts, 5xx, 429) are retried with exponential backoff; other 4xx answers mean the request
itself is wrong, so retrying would only repeat it.

Webhook URLs often carry a secret (Slack's do), so they are never logged or stored.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
PayloadFormat = Literal["auto", "json", "slack"]

_SEVERITY_EMOJI: dict[str, str] = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}
_SLACK_HOSTS = {"hooks.slack.com"}
#: Slack limits: header text 150 chars, section text 3000, 10 fields per section
_SLACK_HEADER_MAX, _SLACK_TEXT_MAX, _SLACK_FIELDS_MAX = 150, 3000, 10


def _jsonable(value: Any) -> Any:
    """Make details JSON-safe at construction (numpy scalars, paths, datetimes, NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy array / pandas series
    if callable(tolist) and getattr(value, "ndim", 1) > 0:
        return _jsonable(tolist())
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


class Alert(BaseModel):
    """One monitoring alert, independent of where it is delivered."""

    model_config = ConfigDict(extra="forbid")

    title: str
    severity: Severity = "warning"
    #: what happened (``quantgate.notify.events.KINDS``); "drift" for alerts built before kinds existed
    kind: str = "drift"
    #: stable across delivery attempts, so a receiver can drop a repeat (also sent as X-Quantgate-Alert-Id)
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    model: str
    version: str
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    links: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("details", mode="before")
    @classmethod
    def _details_jsonable(cls, value: Any) -> Any:
        return _jsonable(value) if isinstance(value, dict) else value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DeliveryResult(BaseModel):
    """What happened to one delivery: checked by callers, written to the alert log."""

    ok: bool
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None
    payload_format: Literal["json", "slack", "block"] = "json"
    elapsed_s: float = 0.0
    #: the failure cannot pass by retrying (a 4xx other than 408/429, a URL with no usable scheme)
    permanent: bool = False


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (notification fallback) plus Block Kit blocks."""
    emoji = _SEVERITY_EMOJI.get(alert.severity, "")
    headline = f"{emoji} {alert.title}".strip()
    fields = [
        {"type": "mrkdwn", "text": f"*Model*\n{alert.model}"},
        {"type": "mrkdwn", "text": f"*Version*\n{alert.version}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
        {"type": "mrkdwn", "text": f"*Created*\n{alert.created_at.isoformat(timespec='seconds')}"},
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(headline, _SLACK_HEADER_MAX),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _truncate(alert.summary or "-", _SLACK_TEXT_MAX)},
        },
        {"type": "section", "fields": fields[:_SLACK_FIELDS_MAX]},
    ]
    if alert.details:
        lines = "\n".join(
            f"{k}: {json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in alert.details.items()
        )
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(f"```{lines}```", _SLACK_TEXT_MAX)},
            }
        )
    if alert.links:
        links = " | ".join(f"<{url}|{name}>" for name, url in alert.links.items())
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _truncate(links, _SLACK_TEXT_MAX)}],
            }
        )
    text = f"[{alert.severity.upper()}] {alert.title} — {alert.model} v{alert.version}: {alert.summary}"
    return {"text": _truncate(text, _SLACK_TEXT_MAX), "blocks": blocks}


def _resolve_format(url: str, fmt: PayloadFormat) -> Literal["json", "slack"]:
    if fmt != "auto":
        return fmt
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return "json"
    return "slack" if host in _SLACK_HOSTS else "json"


def _retryable_status(code: int) -> bool:
    return code >= 500 or code == 429


def permanent_status(code: int) -> bool:
    """A 4xx answer (but 408 timeout and 429 rate limit) says the request itself is wrong."""
    return 400 <= code < 500 and code not in (408, 429)


def _transient(exc: BaseException) -> bool:
    """Connection errors and timeouts may pass; a URL with no usable scheme stays wrong."""
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


def _retry_policy(max_attempts: int, backoff: float) -> Retrying:
    """Tenacity retries transient failures only: transport errors, 5xx and 429.

    The wait before retry *k* (1-based) is ``backoff * 2**(k-1)`` seconds. When attempts run
    out, the last answer is returned (or its error raised) so the caller reports what happened.
    """

    def last_outcome(state: RetryCallState) -> httpx.Response:
        assert state.outcome is not None  # tenacity always sets it before giving up
        return state.outcome.result()  # type: ignore[no-any-return]

    return Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_exponential(multiplier=max(0.0, backoff), min=0.0),
        retry=retry_if_exception(_transient) | retry_if_result(lambda r: _retryable_status(r.status_code)),
        retry_error_callback=last_outcome,
    )


def send_webhook(
    url: str,
    alert: Alert,
    *,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 0.5,
    format: PayloadFormat = "auto",
    headers: dict[str, str] | None = None,
) -> DeliveryResult:
    """POST the alert as JSON; never raises on delivery failure.

    ``retries`` is the number of extra attempts after the first (so at most ``retries + 1``
    requests); the wait before retry *k* (1-based) is ``backoff * 2**(k-1)`` seconds.
    ``format="auto"`` sends :func:`slack_payload` to hooks.slack.com and the alert itself
    elsewhere.
    """
    fmt = _resolve_format(url, format)
    body = slack_payload(alert) if fmt == "slack" else alert.model_dump(mode="json")
    started = time.monotonic()
    attempts = 0
    status: int | None = None
    error: str | None = None
    bad_url = False

    def post(client: httpx.Client) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return client.post(url, json=body, headers=headers)

    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = _retry_policy(1 + max(0, retries), backoff)(post, client)
        status = response.status_code
        if not response.is_success:
            error = f"HTTP {status}: {_truncate(response.text.strip(), 200)}"
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        error = f"invalid webhook URL: {exc}"
        bad_url = True
    except httpx.TransportError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    ok = error is None and status is not None and 200 <= status < 300
    result = DeliveryResult(
        ok=ok,
        status_code=status,
        attempts=attempts,
        error=None if ok else (error or "not delivered"),
        payload_format=fmt,
        elapsed_s=round(time.monotonic() - started, 4),
        permanent=not ok and (bad_url or (status is not None and permanent_status(status))),
    )
    if not ok:
        log.warning("alert '%s' not delivered after %d attempt(s): %s", alert.title, attempts, result.error)
    return result


def write_alert_log(path: str | Path, alert: Alert, result: DeliveryResult) -> Path:
    """Append one JSON line (alert + delivery outcome), so undelivered alerts are never lost."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "logged_at": datetime.now(UTC).isoformat(),
        "alert": alert.model_dump(mode="json"),
        "delivery": result.model_dump(mode="json"),
    }
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return out
