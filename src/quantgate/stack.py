"""``quantgate stack up|down|status``: server mode's processes on this machine, on loopback.

``up`` starts, each in its own process group with its log and pid file under
``$QUANTGATE_HOME/stack/``:

- ``mlflow``: ``mlflow server --app-name quantgate`` (basic-auth + quantgate's rules; the command
  line of :func:`quantgate.promotion.auth_app.config.server_command`, as in ``infra/docker-compose.yml``) on a
  PostgreSQL backend store, users in a PostgreSQL auth database, artifacts proxied by the server
  (``--artifacts-destination``: a local folder, or ``s3://...``);
- ``prefect-server``: ``prefect server start`` on a PostgreSQL database (asyncpg);
- ``prefect-worker``: a process worker on the work pool (created by the worker if missing).

Secrets never pass through the terminal: the bootstrap admin password (``MLFLOW_AUTH_ADMIN_PASSWORD``,
which basic-auth requires at its first start), the admin password that replaces it (the quantgate
app refuses the bootstrap admin until it is changed), the pipeline user's password and the Flask
secret key are generated on the first ``up`` into ``$QUANTGATE_HOME/stack/secrets/`` (mode 0600).

``down`` stops what ``up`` recorded, by pid: a pid file names the process's pid and its start time,
so a pid the system has since given to another program is never signalled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from quantgate.errors import QuantgateError
from quantgate.pidfile import (
    STOP_TIMEOUT_S,
    PidRecord,
    is_ours,
    pid_path,
    read_pid,
    start_marker,
    stop_record,
    write_pid,
)

LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_PREFECT_PORT = 4200
DEFAULT_POOL = "quantgate"
ADMIN = "admin"
PIPELINE = "quantgate-pipeline"
PROCESSES = ("mlflow", "prefect-server", "prefect-worker")  # start order; down stops in reverse


# --- command lines: one definition for the stack and infra/docker-compose.yml ----------------------


def prefect_server_command(*, host: str, port: int, prefect: str = "prefect") -> list[str]:
    """The Prefect server's command line (``infra/docker-compose.yml`` runs it with host 0.0.0.0)."""
    return [prefect, "server", "start", "--host", host, "--port", str(port)]


def prefect_worker_command(*, pool: str, name: str | None = None, prefect: str = "prefect") -> list[str]:
    """A process worker on ``pool``; ``--type process`` makes the pool if it does not exist. The stack
    names its worker, so its health is that worker's heartbeat, not a stopped one's last record."""
    return [prefect, "worker", "start", "--pool", pool, "--type", "process", *(["--name", name] if name else [])]


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackConfig:
    """What ``up`` starts; written to ``stack.json`` so ``status`` and ``down`` read the same."""

    dir: Path
    pg: str = DEFAULT_PG  # postgresql://USER@HOST:PORT (a password goes in PGPASSWORD, never here)
    mlflow_db: str = "quantgate_mlflow"
    prefect_db: str = "quantgate_prefect"
    auth_db: str = "quantgate_auth"
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    prefect_port: int = DEFAULT_PREFECT_PORT
    artifacts: str = ""  # empty: <dir>/artifacts
    pool: str = DEFAULT_POOL
    timeout_s: float = 180.0

    @property
    def mlflow_url(self) -> str:
        return f"http://{LOOPBACK}:{self.mlflow_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://{LOOPBACK}:{self.prefect_port}/api"

    @property
    def artifacts_destination(self) -> str:
        return self.artifacts or str(self.dir / "artifacts")

    def db_uri(self, db: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{self.pg.split('://', 1)[1].rstrip('/')}/{db}"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "dir": str(self.dir)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackConfig:
        data = json.loads(text)
        return cls(**{**data, "dir": Path(data["dir"])})


def check_config(cfg: StackConfig) -> None:
    """Loopback only, no password in a URL, distinct database names and ports."""
    parts = urlsplit(cfg.pg)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise QuantgateError(f"--pg {cfg.pg!r} is not postgresql://USER@HOST:PORT", f"e.g. {DEFAULT_PG}")
    if parts.password is not None:
        raise QuantgateError(
            "--pg carries a password: it would show in process lists and logs",
            "drop it from the URL and export PGPASSWORD instead",
        )
    if parts.hostname not in LOOPBACK_NAMES:
        raise QuantgateError(f"--pg host {parts.hostname} is not loopback", "quantgate stack runs on 127.0.0.1 only")
    if len({cfg.mlflow_db, cfg.prefect_db, cfg.auth_db}) != 3:
        raise QuantgateError("the mlflow, prefect and auth databases must have three different names")
    if cfg.mlflow_port and cfg.mlflow_port == cfg.prefect_port:
        raise QuantgateError(f"--mlflow-port and --prefect-port are both {cfg.mlflow_port}")


def stack_dir(home: Path) -> Path:
    return home / "stack"


# --- PostgreSQL ----------------------------------------------------------------------------------


def _pg_connect(cfg: StackConfig, db: str = "postgres") -> Any:
    import psycopg

    try:
        return psycopg.connect(f"{cfg.pg.rstrip('/')}/{db}", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise QuantgateError(
            f"PostgreSQL is not reachable at {cfg.pg} ({first})",
            "start it (e.g. sudo service postgresql start) or pass --pg postgresql://USER@127.0.0.1:PORT",
        ) from None


def ensure_databases(cfg: StackConfig) -> list[str]:
    """Create the stack's databases that do not exist yet; returns those created."""
    from psycopg import sql

    made = []
    with _pg_connect(cfg) as conn:
        for db in (cfg.mlflow_db, cfg.prefect_db, cfg.auth_db):
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
                made.append(db)
    return made


def registry_in_postgres(cfg: StackConfig) -> tuple[bool, str]:
    """Whether the MLflow registry tables are in the stack's PostgreSQL database, and a line saying so."""
    with _pg_connect(cfg, cfg.mlflow_db) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name IN ('registered_models', 'model_versions')"
            ).fetchall()
        }
        if tables != {"registered_models", "model_versions"}:
            return False, f"registry tables missing in PostgreSQL database {cfg.mlflow_db} (found {sorted(tables)})"
        n = conn.execute("SELECT count(*) FROM registered_models").fetchone()[0]
        v = conn.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    return True, f"MLflow registry in PostgreSQL {cfg.mlflow_db}: {n} registered model(s), {v} version(s)"


# --- secrets -------------------------------------------------------------------------------------


def secret(d: Path, name: str, *, create: bool = True) -> str:
    """A generated secret kept in ``<stack>/secrets/<name>`` (mode 0600); never printed."""
    folder = d / "secrets"
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise QuantgateError(f"{path} is missing", "the stack's secrets are written by its first `quantgate stack up`")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def secret_path(d: Path, name: str) -> Path:
    return d / "secrets" / name


# --- health --------------------------------------------------------------------------------------


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def worker_online(prefect_api: str, pool: str, name: str) -> bool:
    """The worker ``name`` of ``pool`` has sent the Prefect server its heartbeat."""
    import httpx

    try:
        r = httpx.post(f"{prefect_api}/work_pools/{pool}/workers/filter", json={}, timeout=3)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and any(w.get("name") == name and w.get("status") == "ONLINE" for w in r.json())


def port_free(port: int) -> bool:
    """Nothing listens on the loopback ``port`` (bound as the servers bind: TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _tail(log: Path, n: int = 3) -> str:
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except FileNotFoundError:
        return ""
    return " | ".join(lines[-n:])[-400:]


def wait_healthy(rec: PidRecord, check: Callable[[], bool], timeout: float) -> None:
    """Until ``check()`` passes; a process that exits or stays unhealthy for ``timeout`` seconds is an
    error naming it and its log."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_ours(rec):
            raise QuantgateError(
                f"{rec.name} exited during start-up (log {rec.log}: {_tail(Path(rec.log))})",
                "read the log, fix the cause, then quantgate stack down && quantgate stack up",
            )
        if check():
            return
        if time.monotonic() > deadline:
            raise QuantgateError(
                f"{rec.name} did not answer {rec.health} within {timeout:.0f} s (log {rec.log})",
                "read the log; a slow machine may need --timeout",
            )
        time.sleep(0.5)


# --- up / status / down --------------------------------------------------------------------------


def _bin(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def _base_env() -> dict[str, str]:
    """The caller's environment minus anything pointing MLflow or Prefect elsewhere; an S3-compatible
    artifact store's settings (``MLFLOW_S3_ENDPOINT_URL``, ``AWS_*``) pass through to the server."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_")) or k.startswith("MLFLOW_S3_")
    }


def _start(
    d: Path, name: str, cmd: list[str], env: dict[str, str], health: str, url: str, extra: dict[str, str] | None = None
) -> PidRecord:
    log = d / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n--- quantgate stack up {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, env=env, cwd=d, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    rec = PidRecord(name, proc.pid, start_marker(proc.pid) or "", cmd, str(log), health, url, extra or {})
    write_pid(d, rec)
    return rec


def running(d: Path) -> list[PidRecord]:
    """The stack's processes that still run (as recorded by ``up``)."""
    return [rec for name in PROCESSES if (rec := read_pid(d, name)) is not None and is_ours(rec)]


def auth_ini(cfg: StackConfig) -> Path:
    from quantgate.promotion.auth_app.config import auth_config_text

    path = cfg.dir / "auth.ini"
    if not path.exists():
        path.write_text(auth_config_text(database_uri=cfg.db_uri(cfg.auth_db), admin=ADMIN, pipeline=PIPELINE))
    return path


def _first_setup(cfg: StackConfig, config_path: Path) -> list[str]:
    """On a new auth database: replace the bootstrap admin password, create the approvers role and the
    pipeline user (EDIT on every model): what ``quantgate users setup`` and ``users add`` do. Each step
    is skipped when already done, so a setup cut short resumes on the next ``up``."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    from quantgate.promotion.auth_app.config import ROLE_WORKSPACE, read_server_config

    done = cfg.dir / "auth-setup-done"
    if done.exists():
        return []
    server_cfg = read_server_config(str(config_path))
    bootstrap, admin_pw = secret(cfg.dir, "bootstrap-admin-password"), secret(cfg.dir, "admin-password")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN, admin_pw
    try:
        client = AuthServiceClient(cfg.mlflow_url)
        try:
            roles = client.list_roles(ROLE_WORKSPACE)  # answers only once the password is replaced
        except MlflowException:
            os.environ["MLFLOW_TRACKING_PASSWORD"] = bootstrap
            client.update_user_password(ADMIN, admin_pw, current_password=bootstrap)
            os.environ["MLFLOW_TRACKING_PASSWORD"] = admin_pw
            roles = client.list_roles(ROLE_WORKSPACE)
        if not any(r.name == server_cfg.approvers_role for r in roles):
            role = client.create_role(ROLE_WORKSPACE, server_cfg.approvers_role, "may set quantgate.approval")
            client.add_role_permission(role.id, "registered_model", "*", "EDIT")
        try:
            client.get_user(server_cfg.pipeline)
        except MlflowException:
            client.create_user(server_cfg.pipeline, secret(cfg.dir, "pipeline-password"))
            client.grant_user_permission(server_cfg.pipeline, "registered_model", "*", "EDIT")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    done.write_text("admin password changed; approvers role and pipeline user created\n")
    return [f"admin password replaced; role {server_cfg.approvers_role}; user {server_cfg.pipeline} (EDIT on models)"]


def up(cfg: StackConfig, say: Callable[[str], None] = print) -> StackConfig:
    """Start the stack; refuses when it already runs. A process that does not come up stops the ones
    this call started and is reported with its log. Returns the config with the ports used."""
    check_config(cfg)
    d = cfg.dir
    alive = running(d) if d.exists() else []
    if alive:
        where = ", ".join(f"{r.name} pid {r.pid}" for r in alive)
        raise QuantgateError(f"the stack in {d} already runs ({where})", "quantgate stack status, or stack down first")
    d.mkdir(parents=True, exist_ok=True)
    for name in PROCESSES:  # left by processes that died on their own: nothing runs under them
        pid_path(d, name).unlink(missing_ok=True)
    cfg = _with_ports(cfg)
    made = ensure_databases(cfg)
    if made:
        say(f"created PostgreSQL database(s): {', '.join(made)}")
    if cfg.auth_db in made:  # a new auth database gets the bootstrap admin again: set it up again
        (d / "auth-setup-done").unlink(missing_ok=True)
    if not secret_path(d, "admin-password").exists() and cfg.auth_db not in made and _auth_has_users(cfg):
        raise QuantgateError(
            f"auth database {cfg.auth_db} already has users, but {d}/secrets has no stack admin password",
            "pass --auth-db NEW_NAME, or drop that database if it is a leftover",
        )
    (d / "stack.json").write_text(cfg.to_json())
    config_path = auth_ini(cfg)
    started: list[PidRecord] = []
    try:
        mlflow_env = _base_env() | {
            "MLFLOW_AUTH_CONFIG_PATH": str(config_path),
            "MLFLOW_AUTH_ADMIN_PASSWORD": secret(d, "bootstrap-admin-password"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secret(d, "flask-secret-key"),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        from quantgate.promotion.auth_app.config import server_command

        cmd = server_command(
            host=LOOPBACK,
            port=cfg.mlflow_port,
            backend_store_uri=cfg.db_uri(cfg.mlflow_db),
            artifacts_destination=cfg.artifacts_destination,
            mlflow=_bin("mlflow"),
        )
        rec = _start(d, "mlflow", cmd, mlflow_env, f"{cfg.mlflow_url}/health", cfg.mlflow_url)
        started.append(rec)
        prefect_env = _base_env() | {
            "PREFECT_HOME": str(d / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": cfg.db_uri(cfg.prefect_db, "asyncpg"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        cmd = prefect_server_command(host=LOOPBACK, port=cfg.prefect_port, prefect=_bin("prefect"))
        prec = _start(d, "prefect-server", cmd, prefect_env, f"{cfg.prefect_api}/health", cfg.prefect_api)
        started.append(prec)
        wait_healthy(rec, lambda: http_ok(rec.health), cfg.timeout_s)
        for line in _first_setup(cfg, config_path):
            say(line)
        wait_healthy(prec, lambda: http_ok(prec.health), cfg.timeout_s)
        worker_env = _base_env() | {
            "PREFECT_HOME": str(d / "prefect-home"),
            "PREFECT_API_URL": cfg.prefect_api,
            "MLFLOW_TRACKING_URI": cfg.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": PIPELINE,
            "MLFLOW_TRACKING_PASSWORD": secret(d, "pipeline-password"),
        }
        worker = f"quantgate-stack-{secrets.token_hex(4)}"
        cmd = prefect_worker_command(pool=cfg.pool, name=worker, prefect=_bin("prefect"))
        health = f"{cfg.prefect_api}/work_pools/{cfg.pool}/workers/filter"
        wrec = _start(d, "prefect-worker", cmd, worker_env, health, f"work pool {cfg.pool}", {"worker": worker})
        started.append(wrec)
        wait_healthy(wrec, lambda: worker_online(cfg.prefect_api, cfg.pool, worker), cfg.timeout_s)
    except BaseException:
        for r in reversed(started):
            stop_record(d, r)
        raise
    return cfg


def _with_ports(cfg: StackConfig) -> StackConfig:
    from dataclasses import replace

    ports = {}
    for key, flag in (("mlflow_port", "--mlflow-port"), ("prefect_port", "--prefect-port")):
        port = getattr(cfg, key)
        if port == 0:
            ports[key] = free_port()
        elif not port_free(port):
            raise QuantgateError(f"port {LOOPBACK}:{port} is taken", f"pass {flag} PORT (0 picks a free one)")
    return replace(cfg, **ports)


def _auth_has_users(cfg: StackConfig) -> bool:
    with _pg_connect(cfg, cfg.auth_db) as conn:
        exists = conn.execute("SELECT to_regclass('public.users') IS NOT NULL").fetchone()[0]
        return bool(exists and conn.execute("SELECT count(*) FROM users").fetchone()[0])


def load_config(d: Path) -> StackConfig:
    path = d / "stack.json"
    if not path.exists():
        raise QuantgateError(f"no stack has been started from {d}", "quantgate stack up")
    return StackConfig.from_json(path.read_text())


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    alive: bool
    healthy: bool
    url: str
    log: str


def status(d: Path) -> tuple[list[ProcessStatus], tuple[bool, str]]:
    """Each process (pid alive and ours, health answered) and whether the registry is in PostgreSQL."""
    cfg = load_config(d)
    rows = []
    for name in PROCESSES:
        rec = read_pid(d, name)
        if rec is None:
            rows.append(ProcessStatus(name, None, False, False, "", str(d / "logs" / f"{name}.log")))
            continue
        alive = is_ours(rec)
        if name == "prefect-worker":
            healthy = alive and worker_online(cfg.prefect_api, cfg.pool, rec.extra.get("worker", ""))
        else:
            healthy = alive and http_ok(rec.health)
        rows.append(ProcessStatus(name, rec.pid, alive, healthy, rec.url, rec.log))
    try:
        registry = registry_in_postgres(cfg)
    except QuantgateError as exc:
        registry = (False, exc.one_line())
    return rows, registry


def down(d: Path, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop what ``up`` started (worker first), by pid; idempotent."""
    done = []
    for name in reversed(PROCESSES):
        rec = read_pid(d, name)
        if rec is not None:
            done.append(stop_record(d, rec, timeout))
    return done


def exports(cfg: StackConfig) -> list[str]:
    """The environment a client exports to use the stack (the password by file, never its value)."""
    return [
        f"export MLFLOW_TRACKING_URI={cfg.mlflow_url}",
        f"export PREFECT_API_URL={cfg.prefect_api}",
        f"export MLFLOW_TRACKING_USERNAME={ADMIN}",
        f'export MLFLOW_TRACKING_PASSWORD="$(cat {secret_path(cfg.dir, "admin-password")})"',
    ]
