"""Write docs/benchmarks.md and docs/pareto.png (both demo models, side by side, one run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantgate.quantize.bench import run_bench

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="subsampled data, fewer rounds (a few minutes)")
    args = ap.parse_args()
    command = " ".join([".venv/bin/python", "scripts/bench.py", *sys.argv[1:]])
    run_bench(ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "pareto.png", quick=args.quick, command=command)
