"""prefect.yaml for real: a Prefect server on loopback, `prefect deploy --all`, and a process
worker that picks up and runs the monitoring deployment against the session's MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ROOT, free_port

pytestmark = pytest.mark.integration
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory, qg_home: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "QUANTGATE_HOME": str(qg_home),
        "QUANTGATE_PROJECT_DIR": str(ROOT),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("prefect server did not start in 120 s")
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _prefect(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREFECT, "--no-prompt", *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=timeout
    )


def test_deploy_and_run_monitoring(prefect_server: dict[str, str], adult_result: dict[str, Any], settings: Any) -> None:
    from quantgate.registry.mlflow_registry import client

    env = prefect_server
    assert _prefect(env, "work-pool", "create", "quantgate", "--type", "process").returncode == 0
    dep = _prefect(env, "deploy", "--all")
    assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
    listing = _prefect(env, "deployment", "ls")
    for name in (
        "govern-registry/govern-nightly",
        "monitor-model/monitor-adult-income",
        "quantize-model/quantize-on-demand",
    ):
        assert name.split("/")[0] in listing.stdout, listing.stdout
    inspect = _prefect(env, "deployment", "inspect", "govern-registry/govern-nightly")
    assert "0 2 * * *" in inspect.stdout

    from champion import champion

    cl = client(settings)
    exp = cl.get_experiment_by_name("quantgate-monitoring")
    before = len(cl.search_runs([exp.experiment_id])) if exp else 0
    with champion(settings, adult_result["registered"]):  # monitoring watches @champion only
        run = _prefect(env, "deployment", "run", "monitor-model/monitor-adult-income")
        assert run.returncode == 0, run.stderr
        worker = _prefect(env, "worker", "start", "--pool", "quantgate", "--run-once", timeout=400)
        out = worker.stdout + worker.stderr
        assert "Finished in state Completed()" in out, out[-3000:]
    exp = cl.get_experiment_by_name("quantgate-monitoring")
    assert len(cl.search_runs([exp.experiment_id])) == before + 1
