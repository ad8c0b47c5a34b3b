"""One `quantgate demo --small` run in a fresh QUANTGATE_HOME, shared by the e2e tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from e2e_support import ROOT, run_cli


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """(QUANTGATE_HOME, the environment the CLI ran with, the demo's stdout)."""
    home = tmp_path_factory.mktemp("e2e-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env |= {"QUANTGATE_HOME": str(home), "QUANTGATE_PROJECT_DIR": str(ROOT), "COLUMNS": "200"}
    proc = run_cli(env, "demo", "--small")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home, env, proc.stdout
