"""Time and peak memory of the gate's comparison (metrics, groups, paired bootstrap) on N synthetic
evaluation rows: a binary model, two sensitive attributes, 200 resamples.

usage: .venv/bin/python scripts/bench_bootstrap.py N [N ...]   (each N in a fresh process)
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
import time


def one(n: int) -> None:
    import numpy as np
    import pandas as pd

    from quantgate.evaluate.metrics import compare_proba

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    p = np.clip(y * 0.6 + rng.random(n) * 0.5, 0, 1)
    q = np.clip(p + rng.normal(0, 0.05, n), 0, 1)
    groups = pd.DataFrame({"sex": rng.choice(["a", "b"], n), "race": rng.choice(["w", "x", "y", "z"], n)})
    t = time.perf_counter()
    cmp = compare_proba(
        y, np.stack([1 - p, p], 1), np.stack([1 - q, q], 1), groups=groups, sensitive=["sex", "race"], resamples=200
    )
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    iv = cmp.intervals["accuracy"]
    print(
        f"{n:>10,} rows  {time.perf_counter() - t:6.1f} s  peak RSS {peak_gb:.2f} GB  "
        f"accuracy drop {iv.estimate:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]",
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        one(int(sys.argv[2]))
    else:
        from quantgate.hardware import host_info

        h = host_info()
        print(f"host: {h['cpu_model']} ({h['isa']}, {h['cpu_count']} CPUs), python {platform.python_version()}")
        for arg in sys.argv[1:] or ["100000", "1000000"]:
            subprocess.run([sys.executable, __file__, "--one", arg], check=True)
