"""Sustained load on `quantgate serve`: throughput, p50/p99, sent = logged, memory over time.

A bounded loopback load generator (``--clients`` threads, keep-alive HTTP, real adult.test rows,
one request after another per thread) runs for ``--duration`` seconds against one server per log
(Parquet, and PostgreSQL with ``--pg``), one server after the other. The server's resident memory
is sampled from /proc every 5 s. After SIGTERM the server's drain line and the log itself are read
back: every acknowledged request must be in the log. A benchmark, not a test: the figures depend on
the host and its load, so the host is printed with them.

    .venv/bin/python scripts/bench_serve_load.py --duration 300 --clients 4 [--pg postgresql://...]

The model: ``adult-income-quantized@champion`` of ``--home``, or a small demo adult model governed
for real (see scripts/bench_serve.py's ``ensure_champion``).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import ROOT, adult_rows, ensure_champion, free_port, percentile, start_server, wait_ready


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its children (the uvicorn server runs in the CLI process)."""
    total = 0
    try:
        pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return None
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load(server: dict[str, Any], rows: list[dict[str, Any]], clients: int, duration: float, tag: str) -> dict:
    import httpx

    stop = time.monotonic() + duration
    latencies: list[list[float]] = [[] for _ in range(clients)]
    acked: list[set[str]] = [set() for _ in range(clients)]
    errors: list[str] = []
    memory: list[tuple[float, float]] = []

    def client(k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{server['port']}", timeout=30) as http:
            i = 0
            while time.monotonic() < stop:
                rid = f"load-{tag}-{k}-{i}"
                body = {"dataframe_records": [rows[(k * 7919 + i) % len(rows)]]}
                t0 = time.perf_counter()
                try:
                    r = http.post("/invocations", json=body, headers={"X-Request-ID": rid})
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code == 200:
                    latencies[k].append((time.perf_counter() - t0) * 1000)
                    acked[k].add(rid)
                else:
                    errors.append(f"HTTP {r.status_code}")
                i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        m = rss_mb(server["proc"].pid)
        if m is not None:
            memory.append((time.monotonic() - started, m))
        time.sleep(5)
    elapsed = time.monotonic() - started
    lat = [x for part in latencies for x in part]
    return {
        "elapsed": elapsed,
        "latencies": lat,
        "acked": set().union(*acked),
        "errors": errors,
        "memory": memory,
    }


def stop(server: dict[str, Any]) -> str:
    if server["proc"].poll() is None:
        server["proc"].send_signal(signal.SIGTERM)
    try:
        server["proc"].wait(timeout=120)
    except subprocess.TimeoutExpired:
        server["proc"].kill()
    server["fh"].close()
    lines = [ln for ln in server["out"].read_text().splitlines() if ln.startswith("inference log:")]
    return lines[-1] if lines else "(no drain line)"


def logged_ids(where: str, home: Path) -> set[str]:
    from quantgate.monitor.inference_log import model_log_dir, read_inferences, read_inferences_pg

    if where.startswith("postgresql"):
        frame = read_inferences_pg(where, "adult-income-quantized")
    else:
        frame = read_inferences(model_log_dir("adult-income-quantized", Path(where)))
    return set(frame["request_id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None, help="QUANTGATE_HOME (default: a fresh temp dir)")
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load per server")
    ap.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    ap.add_argument("--pg", default=None, help="also a server logging to this postgresql:// URL")
    a = ap.parse_args()

    home = a.home or Path(tempfile.mkdtemp(prefix="qg-bench-load-"))
    version = ensure_champion(home)
    rows = adult_rows()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "QUANTGATE_INFERENCE"))}
    env |= {"QUANTGATE_HOME": str(home), "QUANTGATE_PROJECT_DIR": str(ROOT)}
    logs = [("Parquet", str(home / "load-inference"))] + ([("PostgreSQL", a.pg)] if a.pg else [])
    print(f"host: {cpu_model()} · {os.cpu_count()} cores · load average {os.getloadavg()[0]:.2f} at start")
    print(f"model: adult-income-quantized v{version} · {a.clients} clients · {a.duration:.0f} s per server")
    print(f"command: {' '.join(sys.argv)}\n")
    print(
        f"{'log':<12}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'sent':>8}{'logged':>8}{'errors':>8}"
        "  memory MB (first → max → last)"
    )
    for label, where in logs:
        server = start_server(label, env, free_port(), where, home / f"serve-load-{label}.out")
        try:
            wait_ready(server)
            res = load(server, rows, a.clients, a.duration, f"{int(time.time())}-{label}")
        finally:
            drain = stop(server)
        got = res["acked"] & logged_ids(where, home)
        lat, mem = res["latencies"], [m for _, m in res["memory"]]
        print(
            f"{label:<12}{len(lat) / res['elapsed']:8.1f}{statistics.median(lat):9.2f}{percentile(lat, 0.99):9.2f}"
            f"{len(res['acked']):8d}{len(got):8d}{len(res['errors']):8d}  "
            + (f"{mem[0]:.0f} → {max(mem):.0f} → {mem[-1]:.0f}" if mem else "n/a")
        )
        print(f"{'':<12}{drain}")


if __name__ == "__main__":
    main()
