"""One delivery of one alert to one route; never raises, says what happened in a DeliveryResult.

Inside one delivery, tenacity retries transient failures a few times with a short exponential
backoff; across deliveries the outbox (:mod:`quantgate.notify.outbox`) waits longer and longer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from quantgate.notify.format import block_message
from quantgate.notify.routes import Route
from quantgate.notify.webhook import Alert, DeliveryResult, permanent_status, send_webhook

log = logging.getLogger(__name__)

#: the block types a ``block:`` route may name without its type slug, tried in this order
BLOCK_TYPES = ("slack-webhook", "ms-teams-webhook", "custom-webhook")
ALERT_ID_HEADER = "X-Quantgate-Alert-Id"


class BlockNotFound(LookupError):
    """No saved notification block has that name (yet): the outbox tries again later."""


class _Permanent(Exception):
    """A block failure that retrying cannot fix (wrong block type, a private URL the block refuses)."""


def load_block(name: str) -> Any:
    """The saved Prefect notification block ``name`` (``<type-slug>/<name>`` or a bare document name)."""
    from prefect.blocks.abstract import NotificationBlock
    from prefect.blocks.core import Block

    candidates = [name] if "/" in name else [f"{slug}/{name}" for slug in BLOCK_TYPES]
    missing: list[str] = []
    for ref in candidates:
        try:
            block = Block.load(ref, _sync=True)
        except ValueError as exc:  # Prefect: "Unable to find block document named ..."
            if "Unable to find" not in str(exc):
                raise
            missing.append(ref.split("/", 1)[0])
            continue
        if not isinstance(block, NotificationBlock):
            raise _Permanent(f"block '{ref}' is a {type(block).__name__}, not a notification block")
        return block
    raise BlockNotFound(
        f"no notification block named '{name}' on the Prefect server (looked for types: {', '.join(missing)}); "
        "create it in the Prefect UI (Blocks) or with Block.save()"
    )


def _block_permanent(exc: BaseException) -> bool:
    """Retrying later cannot help: a wrong block type or template, a private URL the block refuses, a 4xx."""
    if isinstance(exc, httpx.HTTPStatusError):
        return permanent_status(exc.response.status_code)
    return isinstance(exc, (_Permanent, ValueError, TypeError, KeyError))


def _retry_now(exc: BaseException) -> bool:
    """Worth a quick retry inside this delivery: not permanent, and not a missing block (someone has
    to save it first; the outbox tries again later)."""
    return not _block_permanent(exc) and not isinstance(exc, BlockNotFound)


def send_block(name: str, alert: Alert, *, retries: int = 2, backoff: float = 0.5) -> DeliveryResult:
    """Load the block and ``notify(body, subject)`` with its failures raised (``raise_on_failure``)."""
    subject, body = block_message(alert)
    started = time.monotonic()
    attempts = 0
    block: Any = None

    def once() -> None:
        nonlocal attempts, block
        attempts += 1
        if block is None:  # loaded once per delivery; a retry only sends again
            block = load_block(name)
        with block.raise_on_failure():
            block.notify(body, subject, _sync=True)

    status: int | None = None
    permanent = False
    try:
        Retrying(
            stop=stop_after_attempt(1 + max(0, retries)),
            wait=wait_exponential(multiplier=max(0.0, backoff), min=0.0),
            retry=retry_if_exception(_retry_now),
            reraise=True,
        )(once)
        error = None
    except Exception as exc:
        if isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
        permanent = _block_permanent(exc)
        detail = getattr(exc, "log", None) or str(exc)  # NotificationError keeps Apprise's log
        error = f"{type(exc).__name__}: {str(detail).strip()[:300]}"
        log.warning("alert '%s' not delivered to block %s after %d attempt(s): %s", alert.title, name, attempts, error)
    return DeliveryResult(
        ok=error is None,
        status_code=status,
        attempts=attempts,
        error=error,
        payload_format="block",
        elapsed_s=round(time.monotonic() - started, 4),
        permanent=permanent,
    )


def deliver(
    route: Route, alert: Alert, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5
) -> DeliveryResult:
    """Send ``alert`` to ``route`` once (with a few quick retries inside)."""
    if route.block is not None:
        return send_block(route.block, alert, retries=retries, backoff=backoff)
    url = route.resolved_url()
    if url is None:
        return DeliveryResult(
            ok=False,
            attempts=0,
            error=f"no URL configured (${route.url_env} is not set in this process)",
            payload_format="slack" if route.kind == "slack" else "json",
        )
    return send_webhook(
        url,
        alert,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        format="slack" if route.kind == "slack" else "auto",
        headers={ALERT_ID_HEADER: alert.id},
    )
