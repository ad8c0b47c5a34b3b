"""Promotion on approval, end to end with no command line after the approval: an `mlflow server`
on loopback delivers the signed webhook to `quantgate receiver`, which emits
`quantgate.approval.granted` to a real `prefect server`; the `promote-on-approval` deployment from
prefect.yaml is triggered, a process worker runs it, and `@champion` moves, with the ledger saying
who approved and who promoted.

The version is a tiny signed quantgate pyfunc (as in tests/integration/test_trust.py) registered in
the MLflow server's store; the plain MLflow app has no quantgate auth, so the test writes the stamp
(`quantgate.approved_by`, `quantgate.approved_digest`) the quantgate server app would write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, free_port, settled_ledger, start_logged, stop_group, wait_http

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
POLICY = "name: e2e\nrules:\n  - id: acc\n    kind: max_drop\n    metric: accuracy\n    threshold: 0.01\n"


def _tiny_signed_version(env: dict[str, str], tmp: Path) -> tuple[str, str]:
    """Log, sign and register a tiny quantgate pyfunc in the server's store, pending approval, with
    the approval stamp bound to its provenance (in a subprocess: its own MLflow/quantgate config)."""
    script = tmp / "make_version.py"
    script.write_text(
        """
import pandas as pd, mlflow
from pathlib import Path
from quantgate.settings import configure_mlflow, get_settings
from quantgate.registry import contract as c
from quantgate.registry.mlflow_registry import client, ensure_experiment
from quantgate.cards.provenance import gate_summary, materials_from_context, policy_file_digest, prefect_builder
from quantgate.cards.trust import attach_provenance, provenance_digest, verify_version
from quantgate.models.pyfunc import QuantgatePyfunc
from quantgate.models.tabular import TabularMLP, TabularPreprocessor
from quantgate.models.wrapped import WrappedModel

s = get_settings(); configure_mlflow(s); cl = client(s); ensure_experiment("e2e-approval", s)
def log(d):
    df = pd.DataFrame({"age": [25.0, 40.0, 61.0, 33.0], "sex": ["F", "M", "F", "M"]})
    pre = TabularPreprocessor.fit(df, ["age"], ["sex"])
    spec = {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]}
    w = WrappedModel(TabularMLP(pre.n_features, (8,)), spec)
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=QuantgatePyfunc(),
                                       artifacts=w.save(d), pip_requirements=["torch"])
    return info.model_uri, run.info.run_id
src_uri, src_run = log(Path("src-files"))
mlflow.register_model(src_uri, "tiny")
uri, run_id = log(Path("cand-files"))
ctx = {"data": {"paths": {"evaluation": "/d/e.csv"}, "digests": {"evaluation": "sha256:" + "02" * 32}},
       "policy": {"name": "e2e", "digest": policy_file_digest(s.path("policies/e2e.yaml"))},
       "recipe": {"label": "dynamic-int8", "digest": "sha256:" + "ab" * 32, "json": {"_type": "dynamic-int8"}}}
tags = attach_provenance(uri, run_id, name="tiny-quantized", source={"name": "tiny", "version": "1"},
                         materials=materials_from_context(ctx, policy_path="policies/e2e.yaml"),
                         builder=prefect_builder(flow_run_id="0-e2e", flow_name="quantize-model"),
                         settings=s, create_key=True,
                         gate=gate_summary(verdict="pass", policy_name="e2e", policy_digest=ctx["policy"]["digest"],
                                           rules={"acc": "pass"}, tags={c.TAG_SOURCE: "tiny/1", c.TAG_VERDICT: "pass"}))
mv = mlflow.register_model(uri, "tiny-quantized",
                           tags={c.TAG_SOURCE: "tiny/1", c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "pending", **tags})
digest = provenance_digest(verify_version(mv, settings=s).statement)
cl.set_model_version_tag("tiny-quantized", mv.version, c.TAG_APPROVED_BY, "alice")
cl.set_model_version_tag("tiny-quantized", mv.version, c.TAG_APPROVED_DIGEST, digest)
print("VERSION", mv.version)
"""
    )
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    version = proc.stdout.split("VERSION", 1)[1].split()[0]
    return "tiny-quantized", version


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("promote-e2e")
    project = tmp / "project"
    (project / "policies").mkdir(parents=True)
    (project / "policies" / "e2e.yaml").write_text(POLICY)
    mlflow_port, prefect_port, receiver_port = free_port(), free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env = base | {
        "QUANTGATE_HOME": str(tmp / "home"),
        "QUANTGATE_PROJECT_DIR": str(project),
        "QUANTGATE_WEBHOOK_SECRET": "e2e-secret-" + uuid.uuid4().hex,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "COLUMNS": "200",
    }
    mlflow_env = base | {
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_logged(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                 "--artifacts-destination", (tmp / "artifacts").as_uri(), "--host", "127.0.0.1",
                 "--port", str(mlflow_port), "--workers", "1"],
                mlflow_env, tmp / "mlflow.log", cwd=tmp,
            )
        )  # fmt: skip
        procs.append(
            start_logged(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                env, tmp / "prefect.log",
            )
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{mlflow_port}/health", procs[0], tmp / "mlflow.log")
        wait_http(f"http://127.0.0.1:{prefect_port}/api/health", procs[1], tmp / "prefect.log")
        procs.append(
            start_logged(
                [sys.executable, "-m", "quantgate.cli", "receiver", "--port", str(receiver_port)],
                env, tmp / "receiver.log",
            )
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{receiver_port}/health", procs[2], tmp / "receiver.log")
        yield {"env": env, "tmp": tmp, "receiver": f"http://127.0.0.1:{receiver_port}/mlflow", "procs": procs}
    finally:
        for p in reversed(procs):
            stop_group(p)


def _run(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=timeout)


def test_approval_moves_champion_without_a_command(servers: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    env, tmp = servers["env"], servers["tmp"]
    name, version = _tiny_signed_version(env, tmp)
    prefect = str(BIN / "prefect")
    assert _run(env, prefect, "--no-prompt", "work-pool", "create", "quantgate", "--type", "process").returncode == 0
    dep = _run(env, prefect, "--no-prompt", "deploy", "--name", "promote-on-approval")
    assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
    reg = _run(env, sys.executable, "-m", "quantgate.cli", "webhook", "register", "--url", servers["receiver"])
    assert reg.returncode == 0, reg.stdout + reg.stderr
    servers["procs"].append(
        start_logged([prefect, "worker", "start", "--pool", "quantgate", "--type", "process"], env, tmp / "worker.log")
    )

    uri = env["MLFLOW_TRACKING_URI"]
    cl = MlflowClient(tracking_uri=uri, registry_uri=uri)
    cl.set_model_version_tag(name, version, "quantgate.approval", "approved")  # the reviewer, in the UI

    deadline, champion = time.time() + 420, None
    while time.time() < deadline and champion is None:
        time.sleep(3)
        try:
            champion = str(cl.get_model_version_by_alias(name, "champion").version)
        except Exception:
            champion = None
    logs = {p: (tmp / p).read_text()[-1500:] for p in ("receiver.log", "worker.log")}
    assert champion == version, f"@champion did not move in 420 s: {logs}"

    from quantgate.promotion.ledger import MlflowLedger

    book = MlflowLedger(cl)
    entries = settled_ledger(book, name, champion, 2)
    assert [e["action"] for e in entries] == ["approval", "promotion"], entries
    assert entries[0]["actor"] == "alice" and entries[1]["approved_by"] == "alice"
    assert entries[1]["actor"] == "prefect:promote-on-approval"
    assert book.verify(name, champion=champion).ok
