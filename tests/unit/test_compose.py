"""infra/docker-compose.yml runs the governed MLflow server the suite runs, with no secret in the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from quantgate.promotion.auth_app.config import server_command
from quantgate.stack import prefect_server_command, prefect_worker_command

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "docker-compose.yml"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET", re.IGNORECASE)
REQUIRED_VAR = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_mlflow_runs_the_quantgate_app_with_the_suites_command_line() -> None:
    mlflow = _compose()["services"]["mlflow"]
    cmd = mlflow["command"]
    assert isinstance(cmd, list), "the command is a list, so it compares exactly"
    backend = cmd[cmd.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql://")
    assert cmd == server_command(
        host="0.0.0.0", port=5000, backend_store_uri=backend, artifacts_destination="s3://mlflow"
    )
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"] and REQUIRED_VAR.match(env["MLFLOW_AUTH_ADMIN_PASSWORD"])


def test_prefect_server_and_worker_run_the_stacks_command_lines() -> None:
    services = _compose()["services"]
    assert services["prefect"]["command"] == prefect_server_command(host="0.0.0.0", port=4200)
    assert services["worker"]["command"] == prefect_worker_command(pool="quantgate")


def test_no_secret_is_written_in_the_file() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_WORDS.search(key):
                assert REQUIRED_VAR.match(str(value)), f"{name}.{key} must come from the environment: {value!r}"
            for userinfo in re.findall(r"://[^/@\s]+:([^@/\s]+)@", str(value)):
                assert userinfo.startswith("${"), f"{name}.{key} has a password in its URI"
        for part in svc.get("command") or []:
            for userinfo in re.findall(r"://[^/@\s]+:([^@/\s]+)@", str(part)):
                assert userinfo.startswith("${"), f"{name}'s command has a password in a URI"


def test_ports_are_published_on_loopback_only_and_the_worker_is_the_pipeline() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["worker"]["environment"]["MLFLOW_TRACKING_USERNAME"] == "quantgate-pipeline"
