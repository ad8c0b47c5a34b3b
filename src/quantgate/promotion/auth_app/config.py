"""quantgate's settings for the server app: the ``[quantgate]`` section of the basic-auth ini
file (``MLFLOW_AUTH_CONFIG_PATH``), next to MLflow's own ``[mlflow]`` section.

    [quantgate]
    promoter = quantgate-promoter   # the only user that may move @champion / @previous
    pipeline = quantgate-pipeline   # the only user that may write result tags (verdict, recipe, ...)
    approvers_role = approvers      # the basic-auth role (workspace 'default') whose members approve
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass

DEFAULT_PROMOTER = "quantgate-promoter"
DEFAULT_PIPELINE = "quantgate-pipeline"
DEFAULT_APPROVERS_ROLE = "approvers"
ROLE_WORKSPACE = "default"  # basic-auth roles live in a workspace; without workspaces it is 'default'
SECTION = "quantgate"


@dataclass(frozen=True)
class ServerConfig:
    promoter: str = DEFAULT_PROMOTER
    approvers_role: str = DEFAULT_APPROVERS_ROLE
    pipeline: str = DEFAULT_PIPELINE


def read_server_config(path: str | None = None) -> ServerConfig:
    path = path or os.environ.get("MLFLOW_AUTH_CONFIG_PATH")
    if not path:
        return ServerConfig()
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",))
    if not parser.read(path):
        raise FileNotFoundError(f"MLFLOW_AUTH_CONFIG_PATH={path} does not exist: run quantgate users init-config")
    if not parser.has_section(SECTION):
        return ServerConfig()
    sec = parser[SECTION]
    unknown = set(sec) - {"promoter", "approvers_role", "pipeline"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in [{SECTION}] of {path}")
    return ServerConfig(
        promoter=sec.get("promoter", DEFAULT_PROMOTER).strip() or DEFAULT_PROMOTER,
        approvers_role=sec.get("approvers_role", DEFAULT_APPROVERS_ROLE).strip() or DEFAULT_APPROVERS_ROLE,
        pipeline=sec.get("pipeline", DEFAULT_PIPELINE).strip() or DEFAULT_PIPELINE,
    )


def server_command(
    *,
    host: str,
    port: int,
    backend_store_uri: str,
    artifacts_destination: str | None = None,
    default_artifact_root: str | None = None,
    workers: int = 1,
    mlflow: str = "mlflow",
) -> list[str]:
    """The command line of the governed MLflow server: basic-auth users plus quantgate's rules
    (``--app-name quantgate``). One definition for the suite's servers and ``infra/docker-compose.yml``
    (a test checks the compose file runs exactly this). ``artifacts_destination`` makes the server
    proxy artifacts (clients never hold store credentials); ``default_artifact_root`` instead has
    clients write them directly (the suite: a local directory both can read)."""
    cmd = [mlflow, "server", "--app-name", "quantgate", "--host", host, "--port", str(port)]
    cmd += ["--workers", str(workers), "--backend-store-uri", backend_store_uri]
    if artifacts_destination is not None:
        cmd += ["--artifacts-destination", artifacts_destination, "--serve-artifacts"]
    elif default_artifact_root is not None:
        cmd += ["--default-artifact-root", default_artifact_root, "--no-serve-artifacts"]
    return cmd


def auth_config_text(
    *,
    database_uri: str,
    admin: str = "admin",
    promoter: str = DEFAULT_PROMOTER,
    approvers_role: str = DEFAULT_APPROVERS_ROLE,
    pipeline: str = DEFAULT_PIPELINE,
) -> str:
    """The auth ini (``MLFLOW_AUTH_CONFIG_PATH``) of ``quantgate users init-config`` and ``quantgate
    stack up``: MLflow's ``[mlflow]`` section and quantgate's. It holds no password."""
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"\n[{SECTION}]\n"
        f"promoter = {promoter}\n"
        f"approvers_role = {approvers_role}\n"
        f"pipeline = {pipeline}\n"
    )
