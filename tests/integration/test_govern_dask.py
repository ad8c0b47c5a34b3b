"""The nightly sweep fanned out to Dask (prefect-dask's ``DaskTaskRunner``): a real
``distributed.LocalCluster`` with two worker processes, a real Prefect test harness, two source
versions governed on the workers into a fresh MLflow store. It runs in its own interpreter with
its own QUANTGATE_HOME, so the session's store and harness are not involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT, client, project_copy

pytestmark = pytest.mark.integration

SCRIPT = r"""
import json, os, sys
from quantgate.settings import configure_environment, get_settings
configure_environment()
from quantgate.data import demo_models as dm

s = get_settings()
files = dm.prepare_adult(dm.DemoSize.small(), s)
versions = [dm.train_adult(files, s, reuse=False).version for _ in range(2)]

from distributed import LocalCluster
from prefect.testing.utilities import prefect_test_harness
from quantgate.flows.govern import govern_registry

with prefect_test_harness(server_startup_timeout=120):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        results = govern_registry(["adult-income"], dask_address=cluster.scheduler_address)
        workers = sorted(cluster.scheduler_info["workers"])
    again = govern_registry(["adult-income"])  # nothing left to govern
print("RESULT " + json.dumps({"versions": versions, "results": results, "workers": workers,
                               "again": again, "flow_pid": os.getpid()}, default=str))
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("dask")
    # a named lossless recipe instead of the search: the fan-out is under test, not the search or
    # the gate's margins. ort-fp32 exports the MLP to ONNX unquantized, so its predictions are the
    # source's: no accuracy or group drop, no flips to concentrate; and the default policy has no
    # speed or size rule. Both versions pass, on any host
    project = project_copy(tmp, {"registry/models/adult-income.yaml": ("recipe: auto", "recipe: ort-fp32")})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env |= {"QUANTGATE_HOME": str(tmp / "home"), "QUANTGATE_PROJECT_DIR": str(project)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {"home": tmp / "home", **json.loads(line.removeprefix("RESULT "))}


def test_each_version_is_governed_on_a_dask_worker(swept: dict[str, Any]) -> None:
    results = {r["model"]: r for r in swept["results"]}
    assert sorted(results) == [f"adult-income/{v}" for v in sorted(swept["versions"])]
    for r in results.values():
        assert r["verdict"] == "pass", r  # judged, and passed: ort-fp32 under the default policy (above)
        where = r["ran_on"]
        assert where["dask_worker"] in swept["workers"]  # on a worker of the cluster ...
        assert where["pid"] != swept["flow_pid"]  # ... in its own process, not the flow's
        assert where["home"] == str(swept["home"].resolve())  # ... on the sweep's store
    # two single-threaded workers, two versions: both workers took one
    assert len({r["ran_on"]["dask_worker"] for r in results.values()}) == 2
    assert swept["again"] == []  # each version now has its governed child


def test_candidates_are_in_the_sweeps_registry(swept: dict[str, Any]) -> None:
    # the sweep's own store, tracking and registry both (the session's registry holds other versions)
    versions = client(swept["home"]).search_model_versions("name='adult-income-quantized'")
    sources = {mv.tags.get("quantgate.source") for mv in versions}
    # every judged version is registered, with the verdict it was judged (pass: ort-fp32, above)
    assert sources == {r["model"] for r in swept["results"]}
    judged = [(mv.tags["quantgate.verdict"], mv.tags["quantgate.approval"]) for mv in versions]
    assert judged == [("pass", "pending")] * 2


def test_an_unreachable_scheduler_is_named(settings: Any) -> None:
    from quantgate.errors import ConfigError
    from quantgate.flows.govern import _dask_runner

    with pytest.raises(ConfigError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'.*dask scheduler"):
        _dask_runner("tcp://127.0.0.1:9", timeout="2s")


def test_a_worker_on_another_store_refuses(settings: Any) -> None:
    """A worker whose MLflow store differs from the sweep's governs nothing and says why."""
    from quantgate.flows.govern import _where, govern_version

    expected = {**_where(), "tracking_uri": "postgresql://elsewhere/mlflow"}
    out = govern_version.fn("adult-income/1", expected)
    assert out["verdict"] == "error"
    assert "tracking_uri" in out["error"] and "postgresql://elsewhere/mlflow" in out["error"]
    assert "MLFLOW_TRACKING_URI" in out["error"]
