"""What each route type receives for one alert (pure).

- quantgate's webhook: the alert as JSON (``Alert.model_dump``), or Slack Block Kit
  (:func:`quantgate.notify.webhook.slack_payload`) for a Slack route;
- a Prefect notification block: a subject and a plain-text body (``block.notify(body, subject)``),
  which the block renders its own way (Slack/Teams through Apprise, a custom webhook through its
  ``json_data`` template with ``{{subject}}``, ``{{body}}`` and ``{{name}}``).
"""

from __future__ import annotations

import json
from typing import Any

from quantgate.notify.webhook import Alert, slack_payload

#: a chat message stays readable: at most this many detail lines, each cut at this many characters
MAX_DETAIL_LINES, MAX_DETAIL_CHARS = 12, 200
#: the order links are listed in (the MLflow version and the report first, then the rest)
_LINK_ORDER = ("mlflow_version", "report", "mlflow_run")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ordered_links(alert: Alert) -> list[tuple[str, str]]:
    first = [(k, alert.links[k]) for k in _LINK_ORDER if k in alert.links]
    return first + [(k, v) for k, v in alert.links.items() if k not in _LINK_ORDER]


def block_message(alert: Alert) -> tuple[str, str]:
    """(subject, body) for a Prefect notification block: the summary, the model, the links, the details."""
    subject = f"[{alert.severity.upper()}] {alert.title}"
    lines = [alert.summary or "-", "", f"model: {alert.model} v{alert.version} · event: {alert.kind}"]
    for name, url in ordered_links(alert):
        lines.append(f"{name.replace('_', ' ')}: {url}")
    items = list(alert.details.items())
    if items:
        lines.append("")
        for key, value in items[:MAX_DETAIL_LINES]:
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            lines.append(_cut(f"{key}: {shown}", MAX_DETAIL_CHARS))
        if len(items) > MAX_DETAIL_LINES:
            lines.append(f"(+{len(items) - MAX_DETAIL_LINES} more details in the outbox: quantgate notify status)")
    lines.append(f"alert id: {alert.id}")
    return subject, "\n".join(lines)


def webhook_body(alert: Alert, slack: bool) -> dict[str, Any]:
    """The JSON body of quantgate's own webhook for this alert."""
    return slack_payload(alert) if slack else alert.model_dump(mode="json")
