"""Alert delivery: webhooks (generic JSON or Slack) and a local JSON-lines alert log."""

from __future__ import annotations

from quantgate.notify.webhook import (
    Alert,
    DeliveryResult,
    send_webhook,
    slack_payload,
    write_alert_log,
)

__all__ = ["Alert", "DeliveryResult", "send_webhook", "slack_payload", "write_alert_log"]
