"""``quantgate history``, ``quantgate rollback``, ``quantgate receiver`` and ``quantgate webhook
register``: the promotion ledger and promotion on approval.

Registered by ``quantgate.cli`` (``register(app)``); ``quantgate verify --ledger NAME`` calls
:func:`verify_ledger`. Like ``cli_trust``, this module never imports ``quantgate.cli``.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from quantgate.cli_base import console, run

EXIT_UNVERIFIED = 3

webhook_app = typer.Typer(
    help="The MLflow model-registry webhook that feeds `quantgate receiver`.", no_args_is_help=True
)


def _quantized_name(name: str) -> str:
    from quantgate.registry import contract as c

    return name if name.endswith(c.SUFFIX) else c.quantized_name(name)


def _champion(name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    try:
        return str(client().get_model_version_by_alias(name, c.ALIAS_CHAMPION).version)
    except MlflowException:
        return None


def _require_model(name: str) -> None:
    from mlflow.exceptions import MlflowException

    from quantgate.errors import RegistryError
    from quantgate.registry.mlflow_registry import client

    try:
        client().get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"no registered model named '{name}'", "see: quantgate status") from None


def verify_ledger(name: str, as_json: bool = False) -> None:
    """Body of ``quantgate verify --ledger NAME``: exit 3 when the chain is not intact."""
    from quantgate.promotion.service import ledger

    qname = _quantized_name(name)
    _require_model(qname)
    rep = ledger().verify(qname, champion=_champion(qname))
    if as_json:
        console.print_json(json.dumps({"model": qname, "entries": rep.entries, "ok": rep.ok, "problems": rep.problems}))
    else:
        for line in rep.lines():
            style = "red" if ("FAIL" in line or "NOT" in line) else "green"
            console.print(Text(line, style=style))
    if not rep.ok:
        raise typer.Exit(EXIT_UNVERIFIED)


def history(
    name: str = typer.Argument(..., help="Source model name or its -quantized name, e.g. adult-income."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show the last N entries."),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON lines."),
) -> None:
    """The promotion ledger of a model: approvals, rejections, promotions, refusals, rollbacks."""

    def body() -> None:
        from quantgate.promotion.service import ledger

        qname = _quantized_name(name)
        _require_model(qname)
        book = ledger()
        stored = book.entries(qname)[-limit:]
        if as_json:
            for s in stored:
                print(json.dumps(s.entry, sort_keys=True))
            return
        t = Table(title=f"ledger of {qname} ({len(stored)} shown)")
        for col in ("#", "when (UTC)", "action", "version", "champion", "by", "approved by", "reason", "hash"):
            t.add_column(col, overflow="fold")
        colors = {"promotion": "green", "rollback": "yellow", "refusal": "red", "approval": "cyan", "rejection": "red"}
        for s in stored:
            e = s.entry
            move = f"{e.get('previous_champion') or '-'} → {e.get('champion') or '-'}"
            t.add_row(
                str(e.get("seq")),
                str(e.get("at", ""))[:19].replace("T", " "),
                f"[{colors.get(str(e.get('action')), 'white')}]{e.get('action')}[/]",
                str(e.get("version") or ""),
                move,
                str(e.get("actor") or ""),
                str(e.get("approved_by") or ""),
                str(e.get("reason") or ""),
                str(e.get("hash", ""))[7:19],
            )
        console.print(t)
        if not stored:
            console.print("no entries yet (a promotion, refusal, rollback or review records one)")

    run(body)


def rollback(
    name: str = typer.Argument(..., help="Source model name or its -quantized name."),
    to: str | None = typer.Option(None, "--to", help="Version to make @champion (default: the @previous alias)."),
) -> None:
    """Move @champion back (default: to @previous), with the checks of a promotion.

    Only aliases move; the replaced champion becomes @previous. Recorded in the ledger and sent to
    the alert webhook when one is configured (QUANTGATE_ALERT_WEBHOOK)."""

    def body() -> None:
        from quantgate.cards.trust import verify_for_promotion
        from quantgate.errors import RegistryError
        from quantgate.promotion.alerts import notify_entry
        from quantgate.promotion.service import ledger
        from quantgate.promotion.service import rollback as do_rollback

        if to is not None and not to.isdigit():
            raise RegistryError(f"--to '{to}' is not a version number", "e.g. --to 3")
        qname = _quantized_name(name)
        try:
            mv, replaced = do_rollback(qname, to, verify=verify_for_promotion)
        except RegistryError:
            _notify_last(qname)
            raise
        console.print(
            f"[yellow]rolled back[/] {mv.name}: @champion v{replaced} → v{mv.version} (@previous = v{replaced})"
        )
        entry = ledger().entries(mv.name)[-1].entry
        for d in notify_entry(entry):
            console.print(f"  notified {d['route']}: {'delivered' if d['ok'] else 'NOT delivered'}")

    run(body)


def _notify_last(qname: str) -> None:
    from quantgate.promotion.alerts import notify_entry
    from quantgate.promotion.service import ledger

    try:
        stored = ledger().entries(qname)
    except Exception:
        return
    if stored and stored[-1].entry.get("action") == "refusal":
        notify_entry(stored[-1].entry)


def receiver(
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    max_age: int = typer.Option(300, "--max-age", min=1, help="Refuse deliveries whose timestamp is older (s)."),
) -> None:
    """Receive MLflow webhooks: an approval becomes the Prefect event quantgate.approval.granted.

    Verifies the HMAC signature, refuses stale (--max-age) or replayed deliveries, records reviews in
    the ledger. Needs QUANTGATE_WEBHOOK_SECRET (the webhook's secret), PREFECT_API_URL and
    MLFLOW_TRACKING_URI (the MLflow server)."""

    def body() -> None:
        import uvicorn

        from quantgate.promotion.receiver import create_app, receiver_config

        cfg = receiver_config(max_age=max_age)
        console.print(f"quantgate receiver on http://{host}:{port}{cfg.path} (deliveries remembered in {cfg.db})")
        uvicorn.run(create_app(cfg), host=host, port=port, log_level="warning")

    run(body)


@webhook_app.command("register")
def webhook_register(
    url: str = typer.Option(..., "--url", help="Where the receiver listens, e.g. http://127.0.0.1:8765/mlflow."),
    name: str = typer.Option("quantgate-approvals", "--name", help="Webhook name in MLflow."),
) -> None:
    """Create the MLflow webhook (model_version_tag.set) that delivers to `quantgate receiver`.

    Signed with QUANTGATE_WEBHOOK_SECRET. Needs an MLflow server (MLFLOW_TRACKING_URI=http://...); a plain
    http or loopback URL needs the server started with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and
    MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true."""

    def body() -> None:
        from quantgate.promotion.receiver import register_webhook, webhook_secret

        hook = register_webhook(url, webhook_secret(), name=name)
        console.print(f"webhook {hook.webhook_id} '{hook.name}' → {hook.url} ({', '.join(map(str, hook.events))})")

    run(body)


def register(app: typer.Typer, _run: Any = None) -> None:
    app.command(name="history")(history)
    app.command(name="rollback")(rollback)
    app.command(name="receiver")(receiver)
    app.add_typer(webhook_app, name="webhook")
