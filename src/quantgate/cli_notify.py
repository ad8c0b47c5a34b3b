"""``quantgate notify``: the alert outbox (status, flush) and a test send.

Registered by :mod:`quantgate.cli`::

    from quantgate.cli_notify import register as _register_notify
    _register_notify(app, _run)

Never imports ``quantgate.cli`` (no import cycle); imports stay inside the commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import typer

from quantgate.cli_base import EXIT_USER, console, err

notify_app = typer.Typer(help="Alert outbox: delivery status, flush, test send.", no_args_is_help=True)
_runner: list[Callable[[Callable[[], Any]], Any]] = []


def _run(fn: Callable[[], Any]) -> Any:
    return (_runner[0] if _runner else lambda f: f())(fn)


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@notify_app.command("status")
def status(
    state: str | None = typer.Option(
        None, "--status", help="Only rows in this state: pending, sending, delivered, dead."
    ),
    limit: int = typer.Option(20, help="Newest rows to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON lines."),
) -> None:
    """Counts per state and the newest rows: route, attempts, next try, last error."""

    def body() -> None:
        from rich.table import Table

        from quantgate.notify.outbox import Outbox, entry_json

        box = Outbox.open()
        rows = box.entries(state, limit)
        if as_json:
            for e in rows:
                print(json.dumps(entry_json(e), default=str))
            return
        counts = box.counts()
        console.print(f"outbox {box.describe()}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)
        t = Table()
        for col in ("created", "kind", "model", "version", "route", "status", "attempts", "next try", "last error"):
            t.add_column(col, overflow="fold")
        for e in rows:
            t.add_row(
                _when(e.created_at),
                e.kind,
                e.model,
                e.version,
                e.route_label,
                e.status,
                str(e.attempts),
                _when(e.next_attempt_at) if e.status == "pending" else "",
                (e.last_error or "")[:120],
            )
        console.print(t)

    _run(body)


@notify_app.command("flush")
def flush(limit: int = typer.Option(100, help="At most this many rows in one flush.")) -> None:
    """Deliver every due alert now (what the notify-outbox deployment runs); exit 1 if some failed."""

    def body() -> None:
        from quantgate.notify import flush as do_flush

        done = do_flush(limit=limit)
        for a in done:
            line = f"{a.kind} {a.model} → {a.route}: {a.status} (attempt {a.attempts}"
            line += f", {a.result.error})" if a.result.error else ")"
            console.print(line, highlight=False)
        failed = sum(a.status != "delivered" for a in done)
        console.print(f"{len(done) - failed} delivered, {failed} not delivered, of {len(done)} due", highlight=False)
        if failed:
            raise typer.Exit(1)

    _run(body)


@notify_app.command("send")
def send(
    kind: str = typer.Argument(..., help="Event kind, e.g. drift, promoted, candidate_pending."),
    model: str = typer.Option(..., "--model", "-m", help="Registered model the alert is about."),
    version: str = typer.Option(..., "--version", help="Its version."),
    summary: str = typer.Option("test alert from quantgate notify send", help="Message text."),
) -> None:
    """Send one alert through the outbox to the model's routes (to check a route works)."""

    def body() -> None:
        from quantgate.notify import KINDS, notify

        if kind not in KINDS:
            err.print(f"[bold red]error:[/] unknown kind '{kind}' — use one of {', '.join(KINDS)}", highlight=False)
            raise typer.Exit(EXIT_USER)
        out = notify(kind, model, version, summary, strict=True)
        if not out.routes:
            err.print(f"[bold red]error:[/] no route wants '{kind}' alerts for {model}", highlight=False)
            raise typer.Exit(EXIT_USER)
        for d in out.deliveries:
            console.print(f"{d['route']}: {d['status']}" + (f" ({d.get('error')})" if d.get("error") else ""))
        if any(d["status"] != "delivered" for d in out.deliveries):
            raise typer.Exit(1)

    _run(body)


def register(app: typer.Typer, run: Callable[[Callable[[], Any]], Any]) -> None:
    """Add ``notify`` to the main app; ``run`` is the CLI's error handler (``quantgate.cli._run``)."""
    _runner[:] = [run]
    app.add_typer(notify_app, name="notify")
