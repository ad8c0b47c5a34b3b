"""Helpers shared by the tests (importable as `helpers`: tests/ is on sys.path via conftest)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# a rule no int8 candidate can meet, whatever the machine's load: its file would have to be twice
# the fp32 file (a speedup threshold is not deterministic on a busy host: a slow fp32 run once
# measured a 1355x "speedup")
IMPOSSIBLE_POLICY = (
    "name: impossible-size\nrules:\n  - id: size\n    kind: min\n    metric: size_ratio\n    threshold: 2\n"
)


def snapshot() -> list[dict[str, Any]]:
    """The registry's whole governed state: compared before/after to prove nothing moved."""
    from quantgate.registry.mlflow_registry import registry_snapshot

    return registry_snapshot()


def run_cli(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "quantgate.cli", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


_TRAIN_ADULT = """
from quantgate.data import demo_models as dm
from quantgate.settings import get_settings
s = get_settings()
mv = dm.train_adult(dm.prepare_adult(dm.DemoSize.small(), s), s)
print("SOURCE", f"{mv.name}/{mv.version}")
"""


def trained_adult_project(tmp: Path, home: Path) -> tuple[dict[str, str], str]:
    """A project under ``tmp`` (the shipped policies and the adult-income onboarding) and the small
    adult-income MLP trained and registered into ``home`` by a user's process. Returns the CLI's
    environment (only QUANTGATE_HOME/PROJECT_DIR set, no MLflow or Prefect variables) and the
    source's ``name/version``."""
    import os
    import shutil

    project = tmp / "project"
    (project / "registry" / "models").mkdir(parents=True)
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copy(ROOT / "registry" / "models" / "adult-income.yaml", project / "registry" / "models")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTGATE_", "MLFLOW_", "PREFECT_"))}
    env |= {"QUANTGATE_HOME": str(home), "QUANTGATE_PROJECT_DIR": str(project), "COLUMNS": "200"}
    trained = subprocess.run(
        [sys.executable, "-c", _TRAIN_ADULT], env=env, cwd=tmp, text=True, capture_output=True, timeout=900, check=False
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    return env, trained.stdout.split("SOURCE", 1)[1].split()[0]


def client(home: Path) -> Any:
    """An MlflowClient on the SQLite store of a QUANTGATE_HOME."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def project_copy(tmp_path: Path, edit: dict[str, tuple[str, str]]) -> Path:
    """A copy of the project's policies/ and registry/ under ``tmp_path`` with text replaced in
    some files: ``{"registry/models/adult-income.yaml": ("old", "new")}``. Point
    QUANTGATE_PROJECT_DIR at it to run the real flow on a changed onboarding."""
    import shutil

    project = tmp_path / "project"
    for d in ("policies", "registry"):
        shutil.copytree(ROOT / d, project / d)
    for rel, (old, new) in edit.items():
        f = project / rel
        assert old in f.read_text(), f"{old!r} not in {rel}"
        f.write_text(f.read_text().replace(old, new))
    return project


def project_with_alerts(tmp_path: Path) -> Path:
    """:func:`project_copy`, unchanged, plus the project's quantgate.yaml (the same alert routing)."""
    import shutil

    project = project_copy(tmp_path, {})
    shutil.copy(ROOT / "quantgate.yaml", project / "quantgate.yaml")
    return project


#: the machine's PostgreSQL (trust auth), used by the server-mode tests
PG = ("127.0.0.1", 5432)


def pg_down() -> str | None:
    """None when PostgreSQL answers at 127.0.0.1:5432, else why not (a skip reason)."""
    try:
        with socket.create_connection(PG, timeout=2):
            return None
    except OSError as exc:
        return f"PostgreSQL is not running at {PG[0]}:{PG[1]} ({exc})"


@contextmanager
def pg_database(prefix: str, scheme: str = "postgresql") -> Iterator[str]:
    """A fresh PostgreSQL database of the caller's own (``scheme://`` URI), dropped afterwards."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG[0]} port={PG[1]} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{scheme}://postgres@{PG[0]}:{PG[1]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- processes a test starts (servers, workers): loopback port, log file, own process group ---


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_logged(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """``cmd`` in its own process group (so :func:`stop_group` ends its children), output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    """Until ``url`` answers 200; fails the test with the log's tail if ``proc`` exits or time runs out."""
    import time

    import httpx
    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not up in {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the process group started by :func:`start_logged` (or with ``start_new_session``):
    SIGTERM, up to 30 s for a clean shutdown, then SIGKILL whatever of the group is left."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def settled_ledger(book: Any, name: str, champion: str, entries: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The ledger entries of ``name`` once ``entries`` are written and the chain verifies against
    ``champion``: promotion moves the alias first and appends its entry right after, so a reader
    that saw the alias move waits for the entry instead of racing it."""
    import time

    deadline = time.time() + timeout
    while True:
        found = [s.entry for s in book.entries(name)]
        if len(found) >= entries and book.verify(name, champion=champion).ok:
            return found
        if time.time() > deadline:
            return found
        time.sleep(1)


@contextmanager
def prefect_server(tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """A real ``prefect server start`` on a loopback port, with its own PREFECT_HOME under ``tmp``;
    yields its API URL. CLI processes given it skip starting a temporary server each."""
    port = free_port()
    server_env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
    server_env |= {"PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = tmp / "prefect-server.log"
    prefect = str(Path(sys.executable).parent / "prefect")
    proc = start_logged([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], server_env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", proc, log)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop_group(proc)
