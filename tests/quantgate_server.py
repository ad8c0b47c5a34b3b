"""A real ``mlflow server --app-name quantgate`` on loopback for tests, its users, and a governed
candidate registered through it with the real provenance and signing functions.

Users made by :func:`bootstrap` (through the real ``quantgate users`` commands):
- ``alice``: approver;  ``rita``: approver and the pipeline identity (``[quantgate] pipeline``): she
  registers the candidates with their result tags, so she cannot approve them;
- ``bob``: EDIT on every model, not an approver;  ``quantgate-promoter``: the promotion identity.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import free_port, pg_database, pg_down, start_logged, stop_group, wait_http  # noqa: F401  (re-exported for the server tests)

from quantgate.promotion.auth_app.config import server_command
from quantgate.registry import contract as c

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_PASSWORD = "bootstrap-Admin-0001"
ADMIN_PASSWORD = "changed-Admin-0002"
PASSWORDS = {
    "admin": ADMIN_PASSWORD,
    "alice": "alice-Password-01",
    "rita": "rita-Password-001",
    "bob": "bob-Password-0001",
    "quantgate-promoter": "promoter-Pass-001",
}
POLICY = "name: server-test\nrules:\n  - id: acc\n    kind: max_drop\n    metric: accuracy\n    threshold: 0.01\n"
START_S = 180


@dataclass
class Server:
    url: str
    tmp: Path
    home: Path
    project: Path
    auth_db: str
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    pre_setup: tuple[int, str] = (0, "")  # the bootstrap admin's answer before `quantgate users setup`

    def auth(self, user: str) -> tuple[str, str]:
        return user, PASSWORDS[user]


@contextmanager
def running_server(
    tmp: Path, backend_uri: str | None = None, auth_db: str | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """``mlflow server --app-name quantgate`` on a free loopback port (SQLite in ``tmp`` unless
    URIs are given), artifacts in ``tmp/artifacts`` read and written in place by server and
    clients (``--no-serve-artifacts``), stopped with its children afterwards."""
    from typer.testing import CliRunner

    from quantgate.cli import app

    home, project = tmp / "home", tmp / "project"
    (project / "policies").mkdir(parents=True)
    (project / "policies" / "server-test.yaml").write_text(POLICY)
    backend_uri = backend_uri or f"sqlite:///{tmp / 'mlflow.db'}"
    auth_db = auth_db or f"sqlite:///{tmp / 'auth.db'}"
    config = tmp / "auth.ini"
    made = CliRunner().invoke(
        app, ["users", "init-config", str(config), "--database-uri", auth_db, "--pipeline", "rita"]
    )
    assert made.exit_code == 0, made.output
    # basic-auth hashes the password on every request unless its cache is on (one worker here, so
    # no stale credential across workers): without it each request costs a password hash
    config.write_text(config.read_text().replace("[quantgate]", "auth_cache_ttl_seconds = 300\n\n[quantgate]"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "QUANTGATE_"))}
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": BOOTSTRAP_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "quantgate-test-secret",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "QUANTGATE_HOME": str(home),
        "QUANTGATE_PROJECT_DIR": str(project),
    }
    env |= extra_env or {}
    log = tmp / "server.log"
    cmd = server_command(  # the command line infra/docker-compose.yml runs (tests/unit/test_compose.py)
        host="127.0.0.1",
        port=port,
        backend_store_uri=backend_uri,
        default_artifact_root=str(tmp / "artifacts"),
        mlflow=str(Path(sys.executable).parent / "mlflow"),
    )
    server = Server(f"http://127.0.0.1:{port}", tmp, home, project, auth_db, config, log=log, env=env)
    with serving(cmd, env, log, f"{server.url}/health", cwd=tmp) as server.proc:
        yield server


@contextmanager
def serving(
    cmd: list[str], env: dict[str, str], log: Path, health_url: str, cwd: Path = ROOT, timeout: float = START_S
) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` started in its own process group (output to ``log``), once ``health_url`` answers 200;
    stopped with its children afterwards. A server that exits or does not answer in ``timeout``
    seconds fails the test with the log's tail."""
    proc = start_logged(cmd, env, log, cwd)
    try:
        wait_http(health_url, proc, log, timeout)
        yield proc
    finally:
        stop_group(proc)


@contextmanager
def bootstrapped_server(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """:func:`running_server` (SQLite, ``extra_env`` added to the server's environment) after
    :func:`bootstrap`, noting what the bootstrap admin got before the setup."""
    import requests

    with running_server(tmp, extra_env=extra_env) as server:
        r = requests.get(
            f"{server.url}/api/2.0/mlflow/registered-models/search", auth=("admin", BOOTSTRAP_PASSWORD), timeout=60
        )
        server.pre_setup = (r.status_code, r.text)
        bootstrap(server)
        yield server


@contextmanager
def as_user(user: str) -> Iterator[None]:
    """MLflow's clients read the basic-auth credentials from the environment on every request."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, PASSWORDS[user]
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def users_cli(server: Server, user: str, *args: str, **env: str) -> Any:
    """``quantgate users ...`` in-process (the real Typer commands) as ``user``."""
    from typer.testing import CliRunner

    from quantgate.cli import app

    creds = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": env.pop("password", PASSWORDS[user])}
    return CliRunner().invoke(app, ["users", *args, "--tracking-uri", server.url], env={**creds, **env})


def bootstrap(server: Server) -> None:
    """Admin password changed (required), approvers role, the four users of the module doc."""
    done = users_cli(server, "admin", "setup", "--config", str(server.config), password=BOOTSTRAP_PASSWORD,
                     QUANTGATE_NEW_ADMIN_PASSWORD=ADMIN_PASSWORD)  # fmt: skip
    assert done.exit_code == 0, done.output
    for user in ("alice", "rita", "bob", "quantgate-promoter"):
        added = users_cli(server, "admin", "add", user, "--edit-models", QUANTGATE_USER_PASSWORD=PASSWORDS[user])
        assert added.exit_code == 0, added.output
    for user in ("alice", "rita"):
        granted = users_cli(server, "admin", "grant", user, "--role", "approvers")
        assert granted.exit_code == 0, granted.output


@contextmanager
def client_env(server: Server) -> Iterator[Any]:
    """quantgate Settings and MLflow's fluent API pointed at the server (restored afterwards)."""
    import mlflow
    from mlflow.tracking import fluent

    from quantgate.settings import get_settings, reset_settings

    saved_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    saved_experiment = fluent._active_experiment_id  # set_experiment() below changes it process-wide
    saved_environ = dict(os.environ)
    os.environ.update(
        {
            "QUANTGATE_HOME": str(server.home),
            "QUANTGATE_PROJECT_DIR": str(server.project),
            "MLFLOW_TRACKING_URI": server.url,
        }
    )
    for var in ("MLFLOW_REGISTRY_URI", "QUANTGATE_SIGNING_KEY", "QUANTGATE_TRUSTED_KEYS"):
        os.environ.pop(var, None)
    reset_settings()
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        yield get_settings()
    finally:
        mlflow.set_tracking_uri(saved_uris[0])
        mlflow.set_registry_uri(saved_uris[1])
        fluent._active_experiment_id = saved_experiment
        os.environ.clear()
        os.environ.update(saved_environ)
        reset_settings()


def _log_model(tag: str) -> tuple[str, str]:
    """A small sklearn model logged in a run: (model_uri, run_id)."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(len(tag))
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] + 0.1 * rng.normal(size=40) > 0).astype(int)
    with mlflow.start_run(run_name=tag) as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(x, y),
            name="model",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",  # skops' import alone takes 10-20 s
        )
    return info.model_uri, run.info.run_id


def register_governed(
    server: Server, settings: Any, source: str, registrant: str = "rita", verdict: str = "pass"
) -> tuple[str, str]:
    """``<source>-quantized`` version registered through the server by ``registrant``: a source
    version, a candidate logged in a run, its provenance signed and logged (attach_provenance),
    the version created with the tags the pipeline writes. Returns (name, version)."""
    import mlflow

    from quantgate.cards.provenance import gate_summary, materials_from_context, policy_file_digest, prefect_builder
    from quantgate.cards.trust import attach_provenance
    from quantgate.registry.mlflow_registry import client, register_candidate

    with as_user(registrant):
        cl = client(settings)
        exp = cl.get_experiment_by_name("server-test")
        mlflow.set_experiment(experiment_id=exp.experiment_id if exp else cl.create_experiment("server-test"))
        src_uri, src_run = _log_model(source)
        cl.create_registered_model(source)
        src_mv = cl.create_model_version(source, src_uri, run_id=src_run, model_id=src_uri.removeprefix("models:/"))
        model_uri, run_id = _log_model(source + "-q")
        policy = server.project / "policies/server-test.yaml"
        ctx = {
            "data": {"paths": {"evaluation": "/d/eval.csv"}, "digests": {"evaluation": "sha256:" + "02" * 32}},
            "policy": {"name": "server-test", "digest": policy_file_digest(policy)},
            "recipe": {"label": "dynamic-int8", "digest": "sha256:" + "ab" * 32, "json": {"_type": "dynamic-int8"}},
        }
        name = c.quantized_name(source)
        tags = attach_provenance(
            model_uri,
            run_id,
            name=name,
            source={"name": source, "version": "1"},
            materials=materials_from_context(ctx, policy_path="policies/server-test.yaml"),
            builder=prefect_builder(flow_run_id="00000000-test", flow_name="quantize-model"),
            settings=settings,
            create_key=True,
            gate=gate_summary(
                verdict=verdict,
                policy_name="server-test",
                policy_digest=policy_file_digest(policy),
                rules={"acc": verdict},
                tags={c.TAG_SOURCE: f"{source}/1", c.TAG_VERDICT: verdict},
            ),
        )
        approval = "pending" if verdict == "pass" else "rejected"
        version_tags = {c.TAG_SOURCE: f"{source}/1", c.TAG_VERDICT: verdict, c.TAG_APPROVAL: approval, **tags}
        # the pipeline's own registration step (record.py calls it the same way)
        mv = register_candidate(
            model_uri=model_uri,
            source=src_mv,
            run_id=run_id,
            tags=version_tags,
            description=f"test candidate of {source}",
            passed=verdict == "pass",
            settings=settings,
        )
    return name, str(mv.version)


def set_tag(server: Server, user: str, name: str, version: str, key: str, value: str, ajax: bool = False) -> Any:
    """The REST call the MLflow UI makes (``/ajax-api``) or a client makes (``/api``)."""
    import requests

    prefix = "ajax-api" if ajax else "api"
    return requests.post(
        f"{server.url}/{prefix}/2.0/mlflow/model-versions/set-tag",
        json={"name": name, "version": version, "key": key, "value": value},
        auth=server.auth(user),
        timeout=60,
    )


def set_alias(server: Server, user: str, name: str, alias: str, version: str) -> Any:
    import requests

    return requests.post(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": alias, "version": version},
        auth=server.auth(user),
        timeout=60,
    )


def version_tags(server: Server, name: str, version: str) -> dict[str, str]:
    import requests

    r = requests.get(
        f"{server.url}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": version},
        auth=server.auth("alice"),
        timeout=60,
    )
    r.raise_for_status()
    return {t["key"]: t["value"] for t in r.json()["model_version"].get("tags", [])}
