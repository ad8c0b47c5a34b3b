"""``quantgate stack up`` → ``status`` → ``down`` for real: the CLI in subprocesses, the MLflow server
(quantgate app, basic-auth), the Prefect server and a process worker on this machine's PostgreSQL
(databases of this test's own, dropped afterwards), free loopback ports, real HTTP."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PG, free_port, pg_down, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.skipif(pg_down() is not None, reason=str(pg_down()))]
ADMIN_DSN = f"host={PG[0]} port={PG[1]} user=postgres dbname=postgres"


def _sql(db: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(f"host={PG[0]} port={PG[1]} user=postgres dbname={db}") as conn:
        return conn.execute(query).fetchall()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import psycopg

    tag = uuid.uuid4().hex[:8]
    dbs = {k: f"qg_stack_{tag}_{k}" for k in ("mlflow", "prefect", "auth")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env["QUANTGATE_HOME"] = str(tmp_path / "home")
    ports = {"mlflow": free_port(), "prefect": free_port()}
    args = [
        *("--mlflow-db", dbs["mlflow"], "--prefect-db", dbs["prefect"], "--auth-db", dbs["auth"]),
        *("--mlflow-port", str(ports["mlflow"]), "--prefect-port", str(ports["prefect"]), "--timeout", "150"),
    ]
    try:
        yield {"env": env, "dbs": dbs, "ports": ports, "args": args, "dir": tmp_path / "home" / "stack"}
    finally:
        run_cli(env, "stack", "down", timeout=120)  # whatever the test left running
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            for db in dbs.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def test_up_status_register_down(stack_env: dict[str, Any]) -> None:
    env, dbs, ports, d = stack_env["env"], stack_env["dbs"], stack_env["ports"], stack_env["dir"]
    mlflow_url = f"http://127.0.0.1:{ports['mlflow']}"

    up = run_cli(env, "stack", "up", *stack_env["args"], timeout=400)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"export MLFLOW_TRACKING_URI={mlflow_url}" in up.stdout
    assert f"export PREFECT_API_URL=http://127.0.0.1:{ports['prefect']}/api" in up.stdout
    assert f"created PostgreSQL database(s): {dbs['mlflow']}, {dbs['prefect']}, {dbs['auth']}" in up.stdout
    for f in (d / "secrets").iterdir():  # passwords stay in their 0600 files
        assert f.stat().st_mode & 0o077 == 0 and f.read_text().strip() not in up.stdout + up.stderr
    pids = {p.stem: int(p.read_text().split('"pid": ')[1].split(",")[0]) for p in d.glob("*.pid")}
    assert set(pids) == {"mlflow", "prefect-server", "prefect-worker"} and all(map(_alive, pids.values()))
    assert all((d / "logs" / f"{name}.log").stat().st_size > 0 for name in pids)

    again = run_cli(env, "stack", "up", *stack_env["args"], timeout=120)
    assert again.returncode == 2 and "already runs" in again.stderr, again.stdout + again.stderr

    status = run_cli(env, "stack", "status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"MLflow registry in PostgreSQL {dbs['mlflow']}: 0 registered model(s)" in status.stdout

    # a client of the stack, with the environment `up` printed: basic-auth as the admin the stack set up
    from mlflow import MlflowClient

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = (d / "secrets" / "admin-password").read_text().strip()
    try:
        client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        client.create_registered_model("stack-test")
        run = client.create_run(client.create_experiment("stack-test"))
        client.log_text(run.info.run_id, "hello", "note.txt")  # proxied: the server writes the file
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert _sql(dbs["mlflow"], "SELECT name FROM registered_models") == [("stack-test",)]
    assert [p.read_text() for p in (d / "artifacts").rglob("note.txt")] == ["hello"]
    assert _sql(dbs["auth"], "SELECT username FROM users ORDER BY username") == [("admin",), ("quantgate-pipeline",)]
    assert _sql(dbs["prefect"], "SELECT name, type FROM work_pool") == [("quantgate", "process")]
    status = run_cli(env, "stack", "status", timeout=120)
    assert status.returncode == 0 and ": 1 registered model(s)" in status.stdout, status.stdout + status.stderr

    down = run_cli(env, "stack", "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(map(_alive, pids.values())), down.stdout
    assert not list(d.glob("*.pid")) and all(map(_port_free, ports.values()))
    assert "nothing to stop" in run_cli(env, "stack", "down", timeout=120).stdout
    after = run_cli(env, "stack", "status", timeout=120)
    assert after.returncode == 4 and "down: mlflow, prefect-server, prefect-worker" in after.stdout, after.stdout
