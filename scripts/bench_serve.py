"""Serving overhead of the inference log: `quantgate serve` with the log vs without, side by side.

Real HTTP on loopback, real adult.test rows, the same governed model in every server. Requests
are interleaved round-robin (random order within each round), so load on the shared cores falls
on every server alike. Prints p50/p90/p99 per server and the log's overhead in % of p50, then
stops the servers with SIGTERM and checks that the log holds every acknowledged request.

    PYTHONPATH=src python scripts/bench_serve.py [--requests 2000] [--rows 1] [--pg postgresql://...]

``--home`` reuses a QUANTGATE_HOME that has ``adult-income-quantized@champion``; without one, a
small demo adult model is trained, governed with the lossless ``ort-fp32`` recipe (so it passes on
any host), approved as "bench-reviewer" and promoted: ``quantgate serve`` verifies what it serves,
and the log's cost does not depend on how the weights were quantized.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_champion(home: Path) -> str:
    """``adult-income-quantized@champion`` in ``home``; registers a governed-looking one if absent."""
    os.environ["QUANTGATE_HOME"] = str(home)
    os.environ.setdefault("QUANTGATE_PROJECT_DIR", str(ROOT))
    from mlflow.exceptions import MlflowException

    from quantgate.data import demo_models as dm
    from quantgate.promotion.service import promote
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client
    from quantgate.settings import configure_environment, get_settings, reset_settings

    reset_settings()
    s = configure_environment(get_settings())
    cl = client(s)
    name = c.quantized_name("adult-income")
    try:
        return str(cl.get_model_version_by_alias(name, c.ALIAS_CHAMPION).version)
    except MlflowException:
        pass
    source = dm.train_adult(dm.prepare_adult(dm.DemoSize.small(), s), s)
    # governed for real (serve refuses anything that does not verify): the lossless ort-fp32
    # recipe passes on any host; then approved as a labelled bench reviewer (embedded store only)
    from quantgate.cards.trust import verify_for_promotion
    from quantgate.flows.quantize import quantize_model

    result = quantize_model(f"{source.name}/{source.version}", recipe="ort-fp32")
    version = result["registered"].split("/")[1]
    cl.set_model_version_tag(name, version, c.TAG_APPROVAL, "approved")
    cl.set_model_version_tag(name, version, "quantgate.approved_by", "bench-reviewer")
    promote(name, version, settings=s, verify=verify_for_promotion)
    return version


def adult_rows() -> list[dict[str, Any]]:
    from quantgate.data.datasets import ADULT_CATEGORICAL, ADULT_NUMERIC, load_adult

    _, test = load_adult()
    frame = test[ADULT_NUMERIC + ADULT_CATEGORICAL]
    return json.loads(frame.to_json(orient="records"))


def start_server(label: str, env: dict[str, str], port: int, log: str | None, out: Path) -> dict[str, Any]:
    args = [sys.executable, "-m", "quantgate.cli", "serve", "adult-income", "--port", str(port)]
    if log is not None:
        args += ["--inference-log", log]
    fh = out.open("w")
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True)
    return {"label": label, "proc": proc, "port": port, "out": out, "fh": fh, "log": log}


def wait_ready(server: dict[str, Any], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server["proc"].poll() is not None:
            raise SystemExit(f"{server['label']} exited: {server['out'].read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{server['port']}/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server['label']} not ready after {timeout:.0f}s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None, help="QUANTGATE_HOME (default: a fresh temp dir)")
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per server")
    ap.add_argument("--warmup", type=int, default=200, help="unmeasured requests per server first")
    ap.add_argument("--rows", type=int, default=1, help="adult rows per request")
    ap.add_argument("--pg", default=None, help="also a server logging to this postgresql:// URL")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aa", action="store_true", help="also a second log-off server (A/A: the noise floor)")
    a = ap.parse_args()

    import httpx

    home = a.home or Path(tempfile.mkdtemp(prefix="qg-bench-serve-"))
    version = ensure_champion(home)
    rows = adult_rows()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "QUANTGATE_INFERENCE"))}
    env |= {"QUANTGATE_HOME": str(home), "QUANTGATE_PROJECT_DIR": str(ROOT)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log_dir = home / "bench-inference"
    servers = [
        start_server("log off", env, free_port(), "off", home / "serve-off.out"),
        start_server("Parquet log", env, free_port(), str(log_dir), home / "serve-parquet.out"),
    ]
    if a.aa:
        servers.append(start_server("log off (A/A)", env, free_port(), "off", home / "serve-off2.out"))
    if a.pg:
        servers.append(start_server("PostgreSQL log", env, free_port(), a.pg, home / "serve-pg.out"))
    try:
        for s in servers:
            wait_ready(s)
        rng = random.Random(a.seed)
        latencies: dict[str, list[float]] = {s["label"]: [] for s in servers}
        acked: dict[str, set[str]] = {s["label"]: set() for s in servers}
        clients = {s["label"]: httpx.Client(base_url=f"http://127.0.0.1:{s['port']}", timeout=30) for s in servers}
        n_rows = len(rows)
        run_tag = f"{int(time.time())}"  # request ids unique to this run, so a reused home cannot hide a loss
        for i in range(a.warmup + a.requests):
            start = (i * a.rows) % n_rows
            chunk = [rows[(start + k) % n_rows] for k in range(a.rows)]
            body = {"dataframe_records": chunk}
            order = list(servers)
            rng.shuffle(order)
            for s in order:
                rid = f"bench-{run_tag}-{i}"
                t0 = time.perf_counter()
                r = clients[s["label"]].post("/invocations", json=body, headers={"X-Request-ID": rid})
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"{s['label']}: HTTP {r.status_code} {r.text[:300]}")
                acked[s["label"]].add(rid)
                if i >= a.warmup:
                    latencies[s["label"]].append(dt)
        for c in clients.values():
            c.close()
    finally:
        for s in servers:
            if s["proc"].poll() is None:
                s["proc"].send_signal(signal.SIGTERM)
        for s in servers:
            try:
                s["proc"].wait(timeout=60)
            except subprocess.TimeoutExpired:
                s["proc"].kill()
            s["fh"].close()

    base = statistics.median(latencies["log off"])
    print(f"\nhost: {platform.node()} · {os.cpu_count()} cores · {platform.processor() or platform.machine()}")
    print(f"model: adult-income-quantized v{version} · {a.requests} requests/server after {a.warmup} warm-up")
    print(f"rows/request: {a.rows} · real adult.test rows · keep-alive HTTP on 127.0.0.1\n")
    print(f"{'server':<16}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'Δp50':>9}")
    for label, vals in latencies.items():
        p50 = statistics.median(vals)
        print(
            f"{label:<16}{p50:9.3f}{percentile(vals, 0.9):9.3f}{percentile(vals, 0.99):9.3f}"
            f"{statistics.fmean(vals):9.3f}{(p50 - base) / base * 100:8.1f}%"
        )
    for s in servers:
        tail = [ln for ln in s["out"].read_text().splitlines() if ln.startswith("inference log:")]
        if tail:
            print(f"{s['label']}: {tail[-1]}")
    from quantgate.monitor.inference_log import model_log_dir, read_inferences

    logged = read_inferences(model_log_dir("adult-income-quantized", log_dir))
    mine = acked["Parquet log"] & set(logged["request_id"])
    missing = acked["Parquet log"] - mine
    total = len(acked["Parquet log"])
    print(f"Parquet log read back: {len(mine)} of {total} acknowledged requests, {len(missing)} missing")


if __name__ == "__main__":
    main()
