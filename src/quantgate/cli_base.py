"""What every ``quantgate`` command shares: the consoles, the exit codes and :func:`run`, which
turns a command body's failure into one readable line and an exit code.

Imported by :mod:`quantgate.cli` and :mod:`quantgate.cli_trust` (which registers its commands on
the app), so neither needs the other at import time and the two cannot import in a circle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")

EXIT_USER = 2  # bad input, refused move
EXIT_GATE = 3  # a candidate failed its gate / validation failed
EXIT_UNAVAILABLE = 4  # a store or server did not answer (after bounded retries), or its disk is full

# piped output (logs, CI) gets a wide fixed width instead of an 80-column default
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however narrow the terminal
state = {"debug": False}


def run(fn: Callable[[], T], *, configure: bool = True) -> T:
    """Run a command body; QuantgateError -> one line + exit code, anything else too (w/o --debug).

    ``configure=False`` for commands that touch no store (``init``, ``policy validate|explain``): no
    ``QUANTGATE_HOME`` is created and mlflow is not imported.
    """
    from rich.markup import escape

    from quantgate.errors import GateFailed, QuantgateError, ValidationFailed

    quiet_libraries(configure=configure)
    try:
        return fn()
    except QuantgateError as exc:
        if state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {escape(exc.one_line())}", highlight=False)  # its text is not markup
        raise typer.Exit(EXIT_GATE if isinstance(exc, (ValidationFailed, GateFailed)) else EXIT_USER) from None
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:
        if state["debug"]:
            raise
        from quantgate.transient import is_transient

        if is_transient(exc):
            err.print(f"[bold red]error:[/] {escape(unavailable_line(exc))}", highlight=False)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        if (full := disk_full_line(exc)) is not None:
            err.print(f"[bold red]error:[/] {escape(full)}", highlight=False)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        first = (str(exc).strip().splitlines() or [""])[0]
        err.print(
            f"[bold red]error:[/] {type(exc).__name__}: {escape(first)} (run with --debug for the traceback)",
            highlight=False,
        )
        raise typer.Exit(1) from None


def unavailable_line(exc: BaseException) -> str:
    """One line for a store or server that did not answer: where, and the innermost cause
    ("Connection refused", "Read timed out") instead of the transport's nested retry message."""
    import re

    from quantgate.transient import exception_chain

    text = " ".join(str(e) for e in exception_chain(exc))
    cause = re.search(
        r"\[Errno -?\d+\] [^'\")]+|Read timed out|timed out|Connection refused|Temporary failure[^'\")]*", text
    )
    where = os.environ.get("MLFLOW_TRACKING_URI") or "the configured store"
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
    what = cause.group(0) if cause else (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return (
        f"the MLflow server at {where} did not answer ({what}) after {retries} retries; nothing more was done — "
        "check that it is running and reachable (MLFLOW_TRACKING_URI), then run the command again"
    )


def disk_full_line(exc: BaseException) -> str | None:
    """One line for a write that found its filesystem full (or over quota), naming the file; None
    for any other error. Nothing after the failed write ran: a governance run registers a version
    only after its artifacts are stored."""
    import errno

    from quantgate.transient import exception_chain

    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {e.filename}" if e.filename else ""
            return (
                f"no space left on the device{where} ({e.strerror or 'ENOSPC'}); the command stopped there and "
                "what was stored before is intact — free space on that filesystem (or point QUANTGATE_HOME, "
                "the artifact store or the inference log elsewhere), then run the command again"
            )
    return None


def quiet_libraries(configure: bool = True) -> None:
    """Point MLflow/Prefect at the configured stores (once) and, without --debug, quiet the libraries."""
    import logging
    import warnings

    from quantgate.settings import configure_environment

    if configure:
        configure_environment()
    if not state["debug"]:
        # the libraries' warnings (deprecations, version notes) are noise to a user; quantgate's own
        # are not, and stay visible (the filter added last is matched first)
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"quantgate(\.|$)")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for name in ("mlflow", "alembic", "great_expectations", "torchao", "httpx", "torch.utils._pytree"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _NoTracebackForUserErrors) for f in logger.filters):
                logger.addFilter(_NoTracebackForUserErrors())


class _NoTracebackForUserErrors:
    """Prefect logs a failed run's exception with its traceback. For a :class:`QuantgateError` (bad
    input, a refused move) and for a full disk (the CLI prints each as one line) the log keeps its
    message line and drops the traceback; any other exception keeps it. ``--debug`` installs no
    filter."""

    def filter(self, record: Any) -> bool:
        from quantgate.errors import QuantgateError

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and (isinstance(exc, QuantgateError) or disk_full_line(exc) is not None):
            record.exc_info, record.exc_text = None, None
        return True
