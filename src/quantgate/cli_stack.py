"""``quantgate stack up|down|status``: server mode's processes on this machine (:mod:`quantgate.stack`).

Registered by :mod:`quantgate.cli`::

    from quantgate.cli_stack import register as _register_stack
    _register_stack(app, _run)

Never imports ``quantgate.cli``; the stack module is imported inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from quantgate.cli_base import EXIT_UNAVAILABLE, console

stack_app = typer.Typer(
    help="Server mode on this machine: MLflow (quantgate app) + Prefect server + worker on the local PostgreSQL.",
    no_args_is_help=True,
)
_runner: list[Callable[..., Any]] = []


def _run(fn: Callable[[], Any]) -> Any:
    return _runner[0](fn, configure=False) if _runner else fn()


def _dir() -> Path:
    from quantgate.settings import get_settings
    from quantgate.stack import stack_dir

    return stack_dir(get_settings().home_abs)


def _say(line: str) -> None:
    console.print(line, highlight=False, markup=False)


@stack_app.command("up")
def up(
    pg: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432",
        "--pg",
        envvar="QUANTGATE_STACK_PG",
        help="The local PostgreSQL, postgresql://USER@127.0.0.1:PORT (a password goes in PGPASSWORD).",
    ),
    mlflow_db: str = typer.Option("quantgate_mlflow", "--mlflow-db", help="MLflow's backend store database."),
    prefect_db: str = typer.Option("quantgate_prefect", "--prefect-db", help="The Prefect server's database."),
    auth_db: str = typer.Option("quantgate_auth", "--auth-db", help="Users, roles and quantgate's audit."),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", min=0, help="MLflow's loopback port (0: a free one)."),
    prefect_port: int = typer.Option(4200, "--prefect-port", min=0, help="Prefect's loopback port (0: a free one)."),
    artifacts: str = typer.Option(
        "",
        "--artifacts",
        help="Where MLflow keeps artifacts (proxied): a folder or s3://BUCKET "
        "(default: $QUANTGATE_HOME/stack/artifacts).",
    ),
    pool: str = typer.Option("quantgate", "--pool", help="The Prefect process work pool the worker serves."),
    timeout: float = typer.Option(180.0, "--timeout", min=1, help="Seconds each process may take to answer."),
) -> None:
    """Start MLflow (quantgate app, basic-auth), the Prefect server and a process worker on loopback;
    databases created if missing; logs and pid files under $QUANTGATE_HOME/stack/."""

    def body() -> None:
        from quantgate.stack import StackConfig, exports
        from quantgate.stack import up as stack_up

        folder = Path(artifacts).expanduser().resolve() if artifacts and "://" not in artifacts else None
        cfg = StackConfig(
            dir=_dir(),
            pg=pg,
            mlflow_db=mlflow_db,
            prefect_db=prefect_db,
            auth_db=auth_db,
            mlflow_port=mlflow_port,
            prefect_port=prefect_port,
            artifacts=str(folder) if folder else artifacts,
            pool=pool,
            timeout_s=timeout,
        )
        cfg = stack_up(cfg, say=_say)
        _say(f"mlflow          {cfg.mlflow_url}  (quantgate app, basic-auth; artifacts {cfg.artifacts_destination})")
        _say(f"prefect-server  {cfg.prefect_api}")
        _say(f"prefect-worker  work pool {cfg.pool}")
        _say(f"logs and pid files: {cfg.dir}; passwords (mode 0600): {cfg.dir / 'secrets'}")
        _say("to use it:")
        for line in exports(cfg):
            _say(f"  {line}")

    _run(body)


@stack_app.command("status")
def status() -> None:
    """Each process (pid alive, health answered, URL) and the MLflow registry tables in PostgreSQL;
    exits 4 if anything is down."""

    def body() -> None:
        from rich.table import Table

        from quantgate.stack import status as stack_status

        rows, (in_pg, line) = stack_status(_dir())
        table = Table(title="quantgate stack")
        for col in ("process", "pid", "alive", "healthy", "url", "log"):
            table.add_column(col, overflow="fold")
        for r in rows:
            yes = {True: "yes", False: "NO"}
            table.add_row(r.name, str(r.pid or ""), yes[r.alive], yes[r.healthy], r.url, r.log)
        console.print(table)
        _say(line)
        down = [r.name for r in rows if not r.healthy]
        if down or not in_pg:
            _say(f"down: {', '.join(down) or 'the registry in PostgreSQL'} (quantgate stack up to start)")
            raise typer.Exit(EXIT_UNAVAILABLE)

    _run(body)


@stack_app.command("down")
def down(
    timeout: float = typer.Option(20.0, "--timeout", min=0, help="Seconds after SIGTERM before SIGKILL."),
) -> None:
    """Stop what `quantgate stack up` started, by its pid files (SIGTERM, then SIGKILL); idempotent."""

    def body() -> None:
        from quantgate.stack import down as stack_down

        done = stack_down(_dir(), timeout)
        for line in done or ["nothing to stop: no pid files in " + str(_dir())]:
            _say(line)

    _run(body)


def register(app: typer.Typer, run: Callable[..., Any]) -> None:
    """Add ``stack`` to the main app; ``run`` is the CLI's error handler (``quantgate.cli_base.run``)."""
    _runner[:] = [run]
    app.add_typer(stack_app, name="stack")
