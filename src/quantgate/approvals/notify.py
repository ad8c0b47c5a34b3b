"""Ledger entries that people must hear about (refusals, rollbacks, promotions on approval) go
to the configured alert route (``QUANTGATE_ALERT_WEBHOOK``) through ``quantgate.notify`` and the
local alert log, like drift alerts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quantgate.settings import Settings, get_settings

_SEVERITY = {"refusal": "warning", "rollback": "warning", "rejection": "info"}


def notify_entry(entry: Mapping[str, Any], settings: Settings | None = None) -> list[dict[str, Any]]:
    """Send one ledger entry as an alert; returns one delivery record per route (none configured:
    an empty list, and nothing is pretended)."""
    from quantgate.notify.webhook import Alert, send_webhook, write_alert_log

    s = settings or get_settings()
    if not s.alert_webhook:
        return []
    action = str(entry.get("action"))
    model, version = str(entry.get("model")), str(entry.get("version") or "")
    alert = Alert(
        title=f"{action} of {model}" + (f" v{version}" if version else ""),
        severity=_SEVERITY.get(action, "info"),  # type: ignore[arg-type]
        model=model,
        version=version or "-",
        summary=str(entry.get("reason") or action),
        details={k: entry.get(k) for k in ("seq", "actor", "approved_by", "previous_champion", "champion", "hash")},
    )
    res = send_webhook(s.alert_webhook, alert)
    write_alert_log(s.home_abs / "alerts.jsonl", alert, res)
    return [{"route": "webhook", **res.model_dump(mode="json")}]
