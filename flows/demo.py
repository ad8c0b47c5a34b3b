"""Prefect flow: the whole loop on the two demo models, on embedded defaults."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate.flows.monitor import monitor_model
from quantgate.flows.quantize import quantize_model
from quantgate.settings import configure_environment


@task(name="train-demo-models", cache_policy=NO_CACHE)
def train_demo_models(small: bool, models: list[str]) -> dict[str, str]:
    from quantgate.data import demo_models as dm

    size = dm.DemoSize.small() if small else dm.DemoSize()
    out = {}
    if "adult-income" in models:
        mv = dm.train_adult(dm.prepare_adult(size))
        out["adult-income"] = f"{mv.name}/{mv.version}"
    if "rt-sentiment" in models:
        mv = dm.train_rt(dm.prepare_rt(size))
        out["rt-sentiment"] = f"{mv.name}/{mv.version}"
    return out


@flow(name="quantgate-demo", log_prints=True)
def demo(small: bool = False, models: list[str] | None = None) -> dict[str, Any]:
    """Train + register the demo models, govern each; approve, promote and serve adult-income, send
    it traffic, monitor what was served, and close the loop (retrain, govern) on drift."""
    configure_environment()
    log = get_run_logger()
    chosen = models or ["adult-income", "rt-sentiment"]
    sources = train_demo_models(small, chosen)
    log.info("source models: %s", sources)
    results = [quantize_model(ref) for ref in sources.values()]
    monitor, approval, loop, served = None, None, None, None
    if "adult-income" in chosen:
        adult = next(r for r in results if r["model"].startswith("adult-income/"))
        approval = demo_approve_and_promote(adult)
        if approval:  # monitoring watches @champion only, on what it served
            served = serve_demo_traffic(small)
            hours = (datetime.now(UTC) - datetime.fromisoformat(served["started_at"])).total_seconds() / 3600
            monitor = monitor_model("adult-income", log_hours=hours)
            if monitor["drift"]:
                loop = close_the_loop(monitor)
    return {"quantized": results, "served": served, "monitor": monitor, "demo_approval": approval, "closed_loop": loop}


def close_the_loop(monitor: dict[str, Any]) -> dict[str, Any]:
    """What the ``retrain`` and ``govern-new-source`` deployments do on the drift event, run here
    as subflows (the demo has no Prefect server with triggers and no worker; the end-to-end test
    runs the same chain from prefect.yaml): retrain once per cool-down, then govern the new version."""
    from quantgate.flows.retrain import retrain_model

    retrained = retrain_model(monitor["model"], drift_run=monitor["run_id"], drifted_version=monitor["version"])
    governed = quantize_model(retrained["registered"]) if retrained["retrained"] else None
    return {"retrain": retrained, "governed": governed}


DEMO_REVIEWER = "demo-reviewer"


def demo_approve_and_promote(result: dict[str, Any]) -> str | None:
    """The demo approves its own passing candidate, as a clearly labelled demo reviewer, **only in
    the embedded store** (which has no identity anyway), then promotes it through the same checks
    as ``quantgate promote``. In server mode a person approves; this refuses."""
    from quantgate.cards.trust import verify_for_promotion
    from quantgate.promotion.service import promote
    from quantgate.registry.mlflow_registry import client
    from quantgate.settings import get_settings

    if not get_settings().embedded_mlflow:
        print("demo: not approving anything in server mode (a reviewer approves in the MLflow UI)")
        return None
    if result["verdict"] != "pass":
        print(f"demo: {result['registered']} failed its gate; nothing to approve or monitor")
        return None
    name, version = result["registered"].split("/")
    cl = client()
    cl.set_model_version_tag(name, version, "quantgate.approval", "approved")
    cl.set_model_version_tag(name, version, "quantgate.approved_by", DEMO_REVIEWER)
    cl.set_model_version_tag(
        name, version, "quantgate.approval_note", "approved by the demo itself (embedded store, no identity)"
    )
    promote(name, version, verify=verify_for_promotion)
    note = (
        f"demo: {name}/{version} approved by '{DEMO_REVIEWER}' (the demo itself, embedded store only; "
        "in server mode a person approves) and promoted to @champion, so that monitoring has a deployed model"
    )
    print(note)
    return note


# --- serving the champion and sending it traffic -------------------------------------------------

#: the populations sent, in order: adult.test rows as they come, then women aged 50+ (the drift)
TRAFFIC = (("normal", "window-stable"), ("drifted", "window-drifted"))
#: rows of each population sent (None: the whole file, 1,101 drifted rows). The drifted rows must
#: dominate the window: 1,000 normal rows drift on 47% of the columns (threshold 30%); all 2,000
#: window-stable rows dilute it to 33%, at the edge
TRAFFIC_ROWS: dict[str, int | None] = {"normal": 1000, "drifted": None}
SMALL_TRAFFIC_ROWS: dict[str, int | None] = {"normal": 300, "drifted": 450}
ROWS_PER_REQUEST = 25


@task(name="serve-demo-traffic", cache_policy=NO_CACHE)
def serve_demo_traffic(small: bool, timeout: float = 180.0) -> dict[str, Any]:
    """``quantgate serve adult-income`` (@champion) in its own process on a free loopback port,
    real adult.test rows POSTed to ``/invocations`` (normal, then drifted), a clean stop whose
    drain says what was written and lost, and what the inference log holds of it.

    A server that does not start, a refused request or a drain that lost rows fails the demo."""
    import pandas as pd

    from quantgate.data import demo_models as dm
    from quantgate.errors import DataError
    from quantgate.monitor.inference_log import inference_root
    from quantgate.settings import get_settings

    s = get_settings()
    root = inference_root(s)
    log_path = s.home_abs / "demo-serve.log"
    port = _free_port()
    env = os.environ | {"QUANTGATE_HOME": str(s.home_abs), "QUANTGATE_PROJECT_DIR": str(s.project_dir)}
    cmd = [sys.executable, "-m", "quantgate.cli", "serve", "adult-income", "--port", str(port)]
    cmd += ["--inference-log", str(root)]
    started_at = datetime.now(UTC).isoformat()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/ping", log_path, timeout)
        print(f"demo: serving adult-income@champion on http://127.0.0.1:{port} (log: {log_path})")
        sent: dict[str, int] = {}
        for population, role in TRAFFIC:
            frame = pd.read_parquet(dm.data_dir("adult-income", s) / f"{role}.parquet")
            rows = (SMALL_TRAFFIC_ROWS if small else TRAFFIC_ROWS)[population]
            frame = frame if rows is None else frame.head(rows)
            sent[population] = _send(f"http://127.0.0.1:{port}/invocations", frame, f"demo-{population}")
    finally:
        code, drain = _stop(proc, log_path)
    if drain is None:
        raise DataError(
            f"quantgate serve stopped (exit {code}) without saying what its inference log wrote",
            f"see {log_path}",
        )
    if drain["lost"]:
        raise DataError(f"quantgate serve lost {drain['lost']} acknowledged request(s) from its log", f"see {log_path}")
    logged = _logged_traffic(root, started_at)
    if logged["rows"] != sum(sent.values()):
        raise DataError(f"sent {sum(sent.values())} rows but the inference log holds {logged['rows']}")
    return {"port": port, "started_at": started_at, "sent_rows": sent, "drain": drain, "log": str(root), **logged}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    """Until ``/ping`` answers 200; a server that exits or never answers fails the demo, with its log."""
    from quantgate.errors import RegistryError

    deadline = time.monotonic() + timeout
    while not _answers(url):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RegistryError(
                f"quantgate serve adult-income did not start (exit {proc.returncode}): {' | '.join(tail)}",
                f"the whole log: {log_path}",
            )
        if time.monotonic() > deadline:
            raise RegistryError(
                f"quantgate serve adult-income did not answer {url} in {timeout:.0f} s", f"see {log_path}"
            )
        time.sleep(0.5)


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _send(url: str, rows: Any, prefix: str) -> int:
    """POST ``rows`` (less the label) to ``/invocations`` in ``dataframe_split`` batches, each with
    its own ``x-request-id``, behind a progress bar; returns the rows sent. A refusal fails the demo."""
    import json

    import httpx

    from quantgate.data.datasets import ADULT_LABEL
    from quantgate.errors import DataError
    from quantgate.progress import track

    features = rows.drop(columns=[ADULT_LABEL], errors="ignore")
    starts = range(0, len(features), ROWS_PER_REQUEST)
    print(f"demo: sending {len(features)} {prefix.removeprefix('demo-')} rows in {len(starts)} requests")
    with httpx.Client(timeout=60) as http:
        for start in track(starts, f"sending {prefix.removeprefix('demo-')} traffic", total=len(starts)):
            chunk = features.iloc[start : start + ROWS_PER_REQUEST]
            body = {"dataframe_split": json.loads(chunk.to_json(orient="split", index=False))}
            r = http.post(url, json=body, headers={"x-request-id": f"{prefix}-{start // ROWS_PER_REQUEST}"})
            if r.status_code != 200:
                raise DataError(f"the served model refused a demo request ({r.status_code}): {r.text[:300]}")
    return len(features)


def _stop(proc: subprocess.Popen[bytes], log_path: Path) -> tuple[int | None, dict[str, int] | None]:
    """SIGTERM (uvicorn's clean stop: in-flight requests finish, the log writer drains), then the
    drain's counts from the server's output; SIGKILL only if it does not stop in time."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    from quantgate.monitor.inference_log import WriterStats

    return proc.returncode, WriterStats.counts_in(log_path.read_text(errors="replace"))


def _logged_traffic(root: Path, since: str) -> dict[str, Any]:
    """What the inference log holds of the demo's requests: requests, rows, p50 latency, partitions."""
    from quantgate.monitor.inference_log import model_log_dir, read_inferences
    from quantgate.registry import contract as c

    directory = model_log_dir(c.quantized_name("adult-income"), root)
    logged = read_inferences(directory, since=datetime.fromisoformat(since))
    logged = logged[logged["request_id"].str.startswith("demo-")]
    per_request = logged.groupby("request_id")["latency_ms"].first()
    return {
        "model": f"{c.quantized_name('adult-income')}/{','.join(sorted(set(logged['version'])))}",
        "requests": len(per_request),
        "rows": len(logged),
        "p50_ms": float(per_request.median()) if len(per_request) else float("nan"),
        "partitions": sorted(str(p.relative_to(root)) for p in directory.glob("hour=*")),
    }
