"""``quantgate serve``: the governed model behind MLflow's scoring server, every inference logged.

Registered by :mod:`quantgate.cli`, which hands over its error runner::

    from quantgate.cli_serve import register as _register_serve
    _register_serve(app, _run)

This module never imports ``quantgate.cli`` (no import cycle), and its imports stay inside the
command so ``quantgate --help`` loads neither mlflow nor uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

#: the CLI's runner (one-line errors, exit 2 for user errors), set by :func:`register`
_runner: list[Callable[[Callable[[], Any]], Any]] = []


def serve(
    model: str = typer.Argument(
        ...,
        help="NAME (= NAME-quantized@champion), NAME[-quantized]@ALIAS or NAME[-quantized]/VERSION.",
    ),
    port: int = typer.Option(5001, "--port", "-p", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback unless you mean it)."),
    inference_log: str | None = typer.Option(
        None,
        "--inference-log",
        help="A directory (Parquet), postgresql://user@host:port/db, or 'off'. "
        "Default: $QUANTGATE_INFERENCE_LOG, else $QUANTGATE_HOME/inference.",
    ),
    allow_unapproved: bool = typer.Option(
        False,
        "--allow-unapproved",
        help="Staging only: serve a verified, passing version whose approval does not hold. Loud, and "
        "recorded on the version (tag quantgate.served_unapproved).",
    ),
) -> None:
    """Serve a governed model (MLflow's /invocations and /ping) and log every inference.

    The version is verified before it is loaded: its signed statement (signature, every file's
    digest, result tags), its signed verdict (pass) and its approval. Anything else is refused
    (exit 2) with the reason.
    """

    def body() -> None:
        from quantgate.serve.server import serve as run_server

        run_server(model, host=host, port=port, inference_log=inference_log, allow_unapproved=allow_unapproved)

    (_runner[0] if _runner else lambda fn: fn())(body)


def register(app: typer.Typer, run: Callable[[Callable[[], Any]], Any]) -> None:
    """Add ``serve`` to the main app; ``run`` is the CLI's error handler (``quantgate.cli._run``)."""
    _runner[:] = [run]
    app.command("serve")(serve)
