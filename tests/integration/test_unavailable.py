"""A tracking server that is down or does not answer: bounded retries, then one line and exit 4
(issue 26's reliability sweep). Real CLI processes; a real socket that accepts and never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, free_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A loopback TCP server that accepts connections and never answers (a hung tracking server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(timeout=5)
        for conn in held:
            conn.close()
        srv.close()


def _cli(tmp_path: Path, uri: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTGATE_", "MLFLOW_", "PREFECT_"))}
    env |= {"QUANTGATE_HOME": str(tmp_path / "home"), "QUANTGATE_PROJECT_DIR": str(ROOT), "COLUMNS": "300"}
    env |= {"MLFLOW_TRACKING_URI": uri, **extra}
    return subprocess.run(
        [sys.executable, "-m", "quantgate.cli", *args],
        env=env,
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("args", [("status",), ("promote", "adult-income"), ("verify", "adult-income@candidate")])
def test_a_server_that_is_down_is_one_line_and_exit_4(tmp_path: Path, args: tuple[str, ...]) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = _cli(tmp_path, uri, *args)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = _one_line(proc)
    assert f"the MLflow server at {uri} did not answer" in line and "Connection refused" in line
    assert "after 3 retries" in line


def test_a_server_that_never_answers_times_out_after_bounded_retries(tmp_path: Path, silent_server: str) -> None:
    # a short per-request timeout for the test; the default is 60 s (settings.configure_environment)
    proc = _cli(tmp_path, silent_server, "status", MLFLOW_HTTP_REQUEST_TIMEOUT="2")
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = _one_line(proc)
    assert f"the MLflow server at {silent_server} did not answer" in line and "timed out" in line
