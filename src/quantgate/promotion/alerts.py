"""Ledger entries that people must hear about (refusals, rollbacks, rejections) go to the
configured notification routes through ``quantgate.notify`` (the outbox), like every other alert.
Promotions are not sent from here: :func:`quantgate.promotion.service.promote` notifies
them itself, so a promotion is announced once whichever path moved the alias."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quantgate.settings import Settings

#: ledger action -> notification kind
_KINDS = {"refusal": "promotion_refused", "rollback": "rollback", "rejection": "rejected"}


def notify_entry(entry: Mapping[str, Any], settings: Settings | None = None) -> list[dict[str, Any]]:
    """Send one ledger entry as an alert; returns one delivery record per route (none configured:
    an empty list, and nothing is pretended)."""
    from quantgate.notify import notify

    kind = _KINDS.get(str(entry.get("action")))
    if kind is None:
        return []
    model, version = str(entry.get("model")), str(entry.get("version") or "-")
    out = notify(
        kind,
        model,
        version,
        str(entry.get("reason") or entry.get("action")),
        details={k: entry.get(k) for k in ("seq", "actor", "approved_by", "previous_champion", "champion", "hash")},
        settings=settings,
    )
    return out.deliveries
