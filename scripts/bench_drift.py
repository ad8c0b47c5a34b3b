"""Benchmark: the monitor's drift check on a 1,000,000-row x 20-column window.

Prints wall time of ``quantgate.monitor.drift.detect_drift`` (Evidently DataDriftPreset, what a
monitoring run calls) and the process's peak RSS. The window is synthetic (15 float32 columns,
5 categorical), 5 of its columns shifted; the reference is 100,000 rows.

    .venv/bin/python scripts/bench_drift.py                 # as the monitor runs it: max_rows=100000
    .venv/bin/python scripts/bench_drift.py --max-rows 0    # every row through Evidently
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd


def frame(n: int, rng: np.random.Generator, shift: bool) -> pd.DataFrame:
    cols: dict[str, object] = {}
    for i in range(15):
        loc = 0.5 if shift and i < 3 else 0.0
        cols[f"x{i}"] = rng.normal(loc, 1.0, n).astype(np.float32)
    for i in range(5):
        p = [0.4, 0.3, 0.2, 0.1] if not (shift and i < 2) else [0.1, 0.2, 0.3, 0.4]
        cols[f"c{i}"] = pd.Categorical(rng.choice(["a", "b", "c", "d"], size=n, p=p))
    return pd.DataFrame(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reference-rows", type=int, default=100_000)
    ap.add_argument("--max-rows", type=int, default=100_000, help="sample size per window; 0 = no sampling")
    args = ap.parse_args()

    from quantgate.monitor.drift import detect_drift

    rng = np.random.default_rng(0)
    # the first call imports Evidently's modules lazily (tens of seconds on a loaded host): paid once
    # per monitoring process, timed apart from the check itself
    t0 = time.perf_counter()
    detect_drift(frame(2000, rng, False), frame(2000, rng, True), drift_share=0.2)
    warmup = time.perf_counter() - t0
    reference, current = frame(args.reference_rows, rng, False), frame(args.rows, rng, True)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = detect_drift(reference, current, drift_share=0.2, max_rows=args.max_rows or None)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"drift check: {args.rows} x {current.shape[1]} window vs {args.reference_rows} reference rows, "
        f"compared {result.sampled_current or result.n_current} current rows "
        f"({'sampled' if result.sampled_current else 'all'})"
    )
    print(f"  drifted columns: {result.n_drifted}/{result.n_columns} ({', '.join(result.drifted_columns)})")
    print(f"  time: {seconds:.1f} s wall, {cpu:.1f} s CPU (this process)")
    print(f"  peak RSS: {peak:.0f} MB (after building the data: {rss_data:.0f} MB)")
    print(f"  first call on 2,000 rows (imports Evidently, not in the time above): {warmup:.1f} s")


if __name__ == "__main__":
    main()
