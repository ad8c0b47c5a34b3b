"""The pure parts of ``quantgate stack``: command lines, config checks, pid files, stopping by pid."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from quantgate.errors import QuantgateError
from quantgate.pidfile import PidRecord, is_ours, pid_path, read_pid, start_marker, stop_record, write_pid
from quantgate.promotion.auth_app.config import auth_config_text, read_server_config
from quantgate.stack import (
    StackConfig,
    check_config,
    down,
    exports,
    prefect_server_command,
    prefect_worker_command,
    secret,
)


def test_command_lines() -> None:
    assert prefect_server_command(host="127.0.0.1", port=4321) == [
        *("prefect", "server", "start", "--host", "127.0.0.1", "--port", "4321")
    ]
    assert prefect_worker_command(pool="p", prefect="/v/prefect") == [
        *("/v/prefect", "worker", "start", "--pool", "p", "--type", "process")
    ]
    assert prefect_worker_command(pool="p", name="w")[-2:] == ["--name", "w"]


def test_config_uris_and_round_trip(tmp_path: Path) -> None:
    cfg = StackConfig(dir=tmp_path, mlflow_port=5123, prefect_port=4123)
    assert cfg.db_uri("m") == "postgresql+psycopg://postgres@127.0.0.1:5432/m"
    assert cfg.db_uri("p", "asyncpg") == "postgresql+asyncpg://postgres@127.0.0.1:5432/p"
    assert cfg.mlflow_url == "http://127.0.0.1:5123" and cfg.prefect_api == "http://127.0.0.1:4123/api"
    assert cfg.artifacts_destination == str(tmp_path / "artifacts")
    assert StackConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("pg", "fields", "says"),
    [
        ("postgresql://u:secret@127.0.0.1:5432", {}, "PGPASSWORD"),
        ("postgresql://u@10.0.0.5:5432", {}, "not loopback"),
        ("mysql://u@127.0.0.1", {}, "not postgresql"),
        ("postgresql://u@127.0.0.1:5432", {"prefect_db": "quantgate_mlflow"}, "three different names"),
        ("postgresql://u@127.0.0.1:5432", {"mlflow_port": 5000, "prefect_port": 5000}, "both 5000"),
    ],
)
def test_config_refusals(tmp_path: Path, pg: str, fields: dict[str, object], says: str) -> None:
    with pytest.raises(QuantgateError, match=says) as info:
        check_config(StackConfig(dir=tmp_path, pg=pg, **fields))  # type: ignore[arg-type]
    assert "secret" not in str(info.value)


def test_auth_config_is_what_the_server_reads(tmp_path: Path) -> None:
    path = tmp_path / "auth.ini"
    path.write_text(auth_config_text(database_uri="postgresql+psycopg://u@127.0.0.1/a", pipeline="pipe"))
    cfg = read_server_config(str(path))
    assert cfg.pipeline == "pipe" and cfg.approvers_role == "approvers"
    assert "password" not in path.read_text().lower()


def test_secrets_are_private_stable_and_not_in_the_exports(tmp_path: Path) -> None:
    value = secret(tmp_path, "admin-password")
    assert secret(tmp_path, "admin-password") == value and len(value) >= 24
    assert (tmp_path / "secrets" / "admin-password").stat().st_mode & 0o077 == 0
    lines = exports(StackConfig(dir=tmp_path))
    assert not any(value in line for line in lines)
    assert any("MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in line for line in lines)
    with pytest.raises(QuantgateError, match="missing"):
        secret(tmp_path, "nothing", create=False)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def _record(proc: subprocess.Popen[bytes], started: str | None = None) -> PidRecord:
    return PidRecord("mlflow", proc.pid, started or start_marker(proc.pid) or "", ["sleep"], "log", "http://x/health")


def test_pid_file_round_trip_and_a_garbled_one(tmp_path: Path) -> None:
    proc = _sleeper()
    try:
        rec = _record(proc)
        write_pid(tmp_path, rec)
        assert read_pid(tmp_path, "mlflow") == rec and is_ours(rec)
        assert read_pid(tmp_path, "prefect-server") is None
        pid_path(tmp_path, "prefect-worker").write_text("not json")
        with pytest.raises(QuantgateError, match="not a quantgate pid file"):
            read_pid(tmp_path, "prefect-worker")
    finally:
        proc.kill()
        proc.wait()


def test_stop_ends_the_group_removes_the_pid_file_and_is_idempotent(tmp_path: Path) -> None:
    proc = _sleeper()
    write_pid(tmp_path, _record(proc))
    lines = down(tmp_path, timeout=5)
    assert lines == [f"mlflow (pid {proc.pid}) stopped"]
    assert proc.wait(timeout=5) != 0 and not pid_path(tmp_path, "mlflow").exists()
    assert down(tmp_path) == []


def test_a_pid_given_to_another_process_is_left_alone(tmp_path: Path) -> None:
    proc = _sleeper()
    try:
        rec = _record(proc, started="1")  # recorded start time differs: not the process up started
        write_pid(tmp_path, rec)
        assert not is_ours(rec)
        assert "left alone" in stop_record(tmp_path, rec, timeout=1)
        time.sleep(0.2)
        assert proc.poll() is None and not pid_path(tmp_path, "mlflow").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_process_is_reported_not_running(tmp_path: Path) -> None:
    proc = _sleeper()
    rec = _record(proc)
    proc.kill()
    proc.wait()
    assert start_marker(proc.pid) is None
    assert stop_record(tmp_path, rec) == f"mlflow (pid {proc.pid}) was not running"


def test_the_servers_do_not_inherit_the_callers_mlflow_or_prefect_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantgate.stack import _base_env

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere")
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere/api")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    env = _base_env()
    assert "MLFLOW_TRACKING_URI" not in env and "PREFECT_API_URL" not in env
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"  # an S3-compatible artifact store
