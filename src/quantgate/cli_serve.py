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
) -> None:
    """Serve a governed model (MLflow's /invocations and /ping) and log every inference."""

    def body() -> None:
        from quantgate.serve.server import serve as run_server

        run_server(model, host=host, port=port, inference_log=inference_log)

    (_runner[0] if _runner else lambda fn: fn())(body)


def register(app: typer.Typer, run: Callable[[Callable[[], Any]], Any]) -> None:
    """Add ``serve`` to the main app; ``run`` is the CLI's error handler (``quantgate.cli._run``)."""
    _runner[:] = [run]
    app.command("serve")(serve)
