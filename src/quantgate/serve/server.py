"""Run the served app under uvicorn (as ``mlflow models serve`` does) with the inference log.

uvicorn stops cleanly on SIGTERM/SIGINT: it finishes in-flight requests, then runs the ASGI
lifespan shutdown, where the writer is drained and the outcome printed ("N requests logged,
0 lost"). uvicorn re-raises the signal after that, so the flush must happen inside the
lifespan, not after ``Server.run`` returns.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantgate.monitor.inference_log import WriterStats
    from quantgate.settings import Settings

from quantgate.registry.contract import TAG_SERVED_UNAPPROVED

#: ``--inference-log off`` serves without logging (request ids stay); the benchmark's middle line
LOG_OFF = "off"


def serve(
    ref: str,
    *,
    host: str = "127.0.0.1",
    port: int = 5001,
    inference_log: str | Path | None = None,
    max_batch: int = 512,
    flush_interval: float | None = None,
    settings: Settings | None = None,
    allow_unapproved: bool = False,
) -> WriterStats | None:
    """Serve ``ref`` until stopped; returns the inference log's final stats (None when off).

    ``flush_interval`` defaults to 5 s for Parquet (each flush is a file: fewer, larger files cost
    less per request and read faster) and 1 s for PostgreSQL; a crash loses at most that much.
    """
    import mlflow.pyfunc
    import uvicorn

    from quantgate.monitor.inference_log import InferenceLogWriter, ParquetSink, open_sink
    from quantgate.serve.app import build_app, resolve_served
    from quantgate.settings import get_settings

    s = settings or get_settings()
    # verified (signature, file digests, signed verdict, approval) before anything is loaded
    served = resolve_served(ref, s, allow_unapproved=allow_unapproved)
    model = mlflow.pyfunc.load_model(served.uri)
    writer: InferenceLogWriter | None = None
    where = "off"
    if str(inference_log) != LOG_OFF:
        sink = open_sink(inference_log, s)
        where = getattr(sink, "describe", lambda: type(sink).__name__)()
        interval = flush_interval if flush_interval is not None else (5.0 if isinstance(sink, ParquetSink) else 1.0)
        writer = InferenceLogWriter(sink, max_batch=max_batch, flush_interval=interval).start()
    closed = threading.Event()
    final: list[WriterStats] = []

    def on_shutdown() -> None:
        if writer is None or closed.is_set():
            return
        closed.set()
        stats = writer.close()
        final.append(stats)
        print(f"inference log: {stats.summary()}", flush=True)
        if stats.lost:
            print(f"warning: {stats.lost} acknowledged request(s) were not logged", file=sys.stderr, flush=True)

    app = build_app(model, served, writer, on_shutdown)
    print(f"serving {served.label} on http://{host}:{port} (inference log: {where})", flush=True)
    print(hardware_line(served.target), flush=True)
    if served.unapproved:
        print(
            f"WARNING: {served.label} is NOT APPROVED and served only because of --allow-unapproved "
            f"(recorded on the version as tag {TAG_SERVED_UNAPPROVED}); never do this in production",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run()
    finally:
        on_shutdown()  # a start-up failure never reaches the lifespan shutdown
    return final[0] if final else None


def hardware_line(target: str) -> str:
    """The start-up line naming the verdict's target ISA and this host's; a mismatch is also
    logged as a warning (as ``quantgate verify`` warns): int8 accuracy and speed were measured
    for the target, not for this host."""
    import logging

    from quantgate.hardware import host_info, host_mismatch

    mismatch = host_mismatch(target)
    if mismatch:
        logging.getLogger(__name__).warning(mismatch)
        return f"warning: {mismatch}"
    gated = {"": "an unrecorded target", "any": "any ISA", "auto": "any ISA"}.get(target, target)
    return f"hardware: gated for {gated}, host {host_info()['isa']}"
