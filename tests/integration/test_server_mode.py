"""Server mode without the embedded stores, every part a real server on loopback:

- MLflow's tracking server on a PostgreSQL backend, serving the artifacts itself (proxied
  ``mlflow-artifacts:`` URIs: clients never touch the artifact directory);
- a Prefect server on PostgreSQL, `prefect deploy --all` and a process worker on the `quantgate`
  pool running the `quantize-on-demand` deployment;
- the team's signing key made with `quantgate keys init` (server mode never makes one itself).

The source is registered through the MLflow server by a client process; the candidate is
governed by the worker and then loaded in a fresh process through the server. Not covered here:
an S3-compatible object store (no such server is installable on these machines; MLflow's
`--artifacts-destination s3://...` is the only change)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, free_port, pg_database, pg_down, project_copy, run_cli, start_logged, stop_group, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.skipif(pg_down() is not None, reason=str(pg_down()))]
BIN = Path(sys.executable).parent

REGISTER = r"""
from quantgate.settings import configure_environment, get_settings
configure_environment()
from quantgate.data import demo_models as dm
s = get_settings()
mv = dm.train_adult(dm.prepare_adult(dm.DemoSize.small(), s), s)
print("SOURCE", f"{mv.name}/{mv.version}")
"""


def _psql(uri: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(uri.split("+", 1)[0] + "://" + uri.split("://", 1)[1]) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("server-mode")
    # a named lossless recipe: server mode is under test here, not the search or a gate's margin
    project = project_copy(tmp, {"registry/models/adult-income.yaml": ("recipe: auto", "recipe: ort-fp32")})
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    mport, pport = free_port(), free_port()
    with (
        pg_database("qg_sm_mlflow", "postgresql+psycopg") as mlflow_db,
        pg_database("qg_sm_prefect", "postgresql+asyncpg") as prefect_db,
    ):
        mlflow_log, prefect_log = tmp / "mlflow.log", tmp / "prefect.log"
        mlflow_proc = start_logged(
            [
                *(str(BIN / "mlflow"), "server", "--backend-store-uri", mlflow_db),
                *("--artifacts-destination", str(tmp / "objects")),
                *("--host", "127.0.0.1", "--port", str(mport), "--workers", "1"),
            ],
            base,
            mlflow_log,
        )
        server_env = base | {
            "PREFECT_HOME": str(tmp / "prefect-server"),
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        prefect_proc = start_logged(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(pport)],
            server_env,
            prefect_log,
        )
        try:
            wait_http(f"http://127.0.0.1:{mport}/health", mlflow_proc, mlflow_log)
            wait_http(f"http://127.0.0.1:{pport}/api/health", prefect_proc, prefect_log)
            env = base | {
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mport}",
                "PREFECT_API_URL": f"http://127.0.0.1:{pport}/api",
                "PREFECT_HOME": str(tmp / "prefect-client"),
                "QUANTGATE_HOME": str(tmp / "home"),
                "QUANTGATE_PROJECT_DIR": str(project),
            }
            yield {
                "env": env,
                "tmp": tmp,
                "mlflow_db": mlflow_db,
                "prefect_db": prefect_db,
                "url": env["MLFLOW_TRACKING_URI"],
            }
        finally:
            stop_group(prefect_proc)
            stop_group(mlflow_proc)


def _run(env: dict[str, str], *cmd: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def governed(stack: dict[str, Any]) -> dict[str, Any]:
    env, prefect = stack["env"], str(BIN / "prefect")
    keys = run_cli(env, "keys", "init")
    assert keys.returncode == 0, keys.stdout + keys.stderr
    out = _run(env, sys.executable, "-c", REGISTER).stdout
    source = next(x for x in out.splitlines() if x.startswith("SOURCE ")).split()[1]
    _run(env, prefect, "--no-prompt", "work-pool", "create", "quantgate", "--type", "process")
    _run(env, prefect, "--no-prompt", "deploy", "--all")
    _run(
        env,
        prefect,
        "--no-prompt",
        "deployment",
        "run",
        "quantize-model/quantize-on-demand",
        "--param",
        f"model={source}",
    )
    worker = _run(env, prefect, "--no-prompt", "worker", "start", "--pool", "quantgate", "--run-once", timeout=900)
    return {"source": source, "worker": worker.stdout + worker.stderr}


def test_the_worker_governs_into_the_mlflow_server(stack: dict[str, Any], governed: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    assert "Finished in state Completed()" in governed["worker"], governed["worker"][-3000:]
    cl = MlflowClient(tracking_uri=stack["url"], registry_uri=stack["url"])
    names = [m.name for m in cl.search_registered_models()]
    assert "adult-income-quantized" in names, f"{names}: {governed['worker'][-6000:]}"
    mv = cl.get_model_version_by_alias("adult-income-quantized", "candidate")
    assert mv.tags["quantgate.source"] == governed["source"] == "adult-income/1"
    assert mv.tags["quantgate.recipe"] == "ort-fp32" and mv.tags["quantgate.verdict"] == "pass"
    assert mv.tags["quantgate.approval"] == "pending"
    # PostgreSQL keeps at most 5,000 characters of a description (the full card is longer): the
    # version's description is the card's opening and first sections, and says where the rest is
    assert len(mv.description) <= 5000 and mv.description.startswith("# Model card: adult-income-quantized")
    assert "## Verdict, rule by rule" in mv.description and "`model_card.md`" in mv.description
    # the artifacts went through the server into its artifact destination, not to a client path
    run = cl.get_run(mv.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    objects = stack["tmp"] / "objects"
    for name in ("model_card.json", "verdict.json", "MLmodel"):
        assert list(objects.rglob(name)), f"{name} not in the server's artifact destination"
    local = stack["tmp"] / "home" / "artifacts"
    assert not local.exists() or not any(local.rglob("MLmodel"))  # nothing written to a client path


def test_both_servers_keep_their_state_in_postgresql(stack: dict[str, Any], governed: dict[str, Any]) -> None:
    names = {r[0] for r in _psql(stack["mlflow_db"], "SELECT name FROM registered_models")}
    assert {"adult-income", "adult-income-quantized"} <= names
    aliases = _psql(stack["mlflow_db"], "SELECT name, alias, version FROM registered_model_aliases")
    assert ("adult-income-quantized", "candidate", 1) in aliases
    runs = _psql(
        stack["prefect_db"],
        "SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id",
    )
    assert ("quantize-model", "COMPLETED") in {(n, str(s).split(".")[-1]) for n, s in runs}


def test_the_candidate_loads_through_the_server_in_a_fresh_process(
    stack: dict[str, Any], governed: dict[str, Any]
) -> None:
    import pandas as pd

    rows = pd.read_parquet(stack["tmp"] / "home" / "data" / "adult-income" / "evaluation.parquet").head(100)
    path = stack["tmp"] / "rows.parquet"
    rows.drop(columns=["income"]).to_parquet(path)
    code = (
        "import mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/adult-income-quantized@candidate')\n"
        f"print('LABELS', len(m.predict(pd.read_parquet({str(path)!r}))['label']))\n"
    )
    out = _run(stack["env"], sys.executable, "-c", code).stdout
    assert "LABELS 100" in out
    verify = run_cli(stack["env"], "verify", "adult-income-quantized@candidate")
    assert verify.returncode == 0, verify.stdout + verify.stderr
