"""Helpers shared by the tests (importable as `helpers`: tests/ is on sys.path via conftest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

IMPOSSIBLE_POLICY = (
    "name: impossible-speed\nrules:\n  - id: speedup\n    kind: min\n    metric: speedup\n    threshold: 1000\n"
)


def snapshot() -> list[dict[str, Any]]:
    """The registry's whole governed state: compared before/after to prove nothing moved."""
    from quantgate.registry.mlflow_registry import registry_snapshot

    return registry_snapshot()


def run_cli(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "quantgate.cli", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def client(home: Path) -> Any:
    """An MlflowClient on the SQLite store of a QUANTGATE_HOME."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)
