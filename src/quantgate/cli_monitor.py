"""``quantgate monitor-labels`` and ``quantgate monitor-ui``: the monitoring commands beside ``quantgate monitor``.

``quantgate monitor`` stays one command (its options unchanged); these are separate top-level
commands rather than a ``monitor`` sub-app, which would change its shape. Registered by
:mod:`quantgate.cli` with :func:`register`; this module never imports ``quantgate.cli``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from quantgate.cli_base import console
from quantgate.cli_base import run as _run


def monitor_labels(
    model: str = typer.Argument(..., help="Model name (adult-income or adult-income-quantized)."),
    file: Path = typer.Argument(
        ..., help="CSV or Parquet with request_id,label (and request_row if a request had several rows)."
    ),
) -> None:
    """Ingest delayed labels; the next monitoring runs join them to the inference log by request id."""

    def body() -> None:
        from quantgate.monitor.labels import ingest_labels
        from quantgate.monitoring.resolve import source_name
        from quantgate.registry import contract as c

        served = c.quantized_name(source_name(model))  # labels belong to what was served
        rows, where = ingest_labels(served, file)
        console.print(f"stored {rows} label(s) for {served} in {where}")

    _run(body)


def monitor_ui(
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback unless you mean it)."),
) -> None:
    """Open Evidently's UI on the monitoring workspace ($QUANTGATE_HOME/evidently): every run as plots."""

    def body() -> None:
        from evidently.ui.service.app import get_config, run

        from quantgate.monitor.workspace import workspace_dir

        root = workspace_dir()
        root.mkdir(parents=True, exist_ok=True)
        console.print(f"Evidently UI for {root} on http://{host}:{port} (Ctrl-C stops it)")
        run(get_config(host=host, port=port, workspace=str(root)))

    _run(body)


def register(app: typer.Typer) -> None:
    app.command("monitor-labels")(monitor_labels)
    app.command("monitor-ui")(monitor_ui)
