"""Prefect flow: drain the alert outbox (deployment ``notify-outbox`` in prefect.yaml, every 5 minutes).

Delivers every alert whose next attempt is due; a receiver that was down gets it now. The flow
fails when some alert is still undelivered, so the Prefect UI shows that a route is broken.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from quantgate.settings import configure_environment


@flow(name="notify-outbox", log_prints=True)
def notify_outbox(limit: int = 100) -> dict[str, Any]:
    """Deliver what is due in the outbox; returns counts and each attempt."""
    from quantgate.notify import flush
    from quantgate.notify.outbox import Outbox

    configure_environment()
    log = get_run_logger()
    done = flush(limit=limit)
    for a in done:
        log.info(
            "%s %s -> %s: %s (attempt %d) %s", a.kind, a.model, a.route, a.status, a.attempts, a.result.error or ""
        )
    counts = Outbox.open().counts()
    failed = [a for a in done if a.status != "delivered"]
    summary = {
        "due": len(done),
        "delivered": len(done) - len(failed),
        "outbox": counts,
        "failed": [{"route": a.route, "kind": a.kind, "status": a.status, "error": a.result.error} for a in failed],
    }
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(done)} due alert(s) not delivered: {summary['failed'][:3]}")
    return summary
