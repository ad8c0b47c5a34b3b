"""The real CLI: one-line errors, exit codes, and nothing moved in the registry on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, snapshot
from typer.testing import CliRunner

pytestmark = pytest.mark.integration
runner = CliRunner()


def _cli(*args: str) -> Any:
    from quantgate.cli import app

    return runner.invoke(app, list(args))


def test_help_is_fast_and_light() -> None:
    code = (
        "import sys, quantgate.cli; bad = [m for m in ('torch', 'mlflow', 'prefect') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    proc = subprocess.run(
        [sys.executable, "-m", "quantgate.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "quantize" in proc.stdout and "promote" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["quantize", "--model", "no-such-model"], "no registered model named 'no-such-model'"),
        (["quantize", "--model", "adult-income/42"], "has no version 42"),
        (["quantize", "--model", "adult-income", "--recipe", "int3-magic"], "unknown recipe 'int3-magic'"),
        (["promote", "no-such-model"], "has no quantized versions"),
        (["validate", "--model", "adult-income", "--data", "/nonexistent/calib.csv"], "data file not found"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    demo_sources: dict[str, str], settings: Any, args: list[str], needle: str
) -> None:
    before = snapshot()
    res = _cli(*args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.output
    assert snapshot() == before


def test_invalid_policy_file(demo_sources: dict[str, str], settings: Any, tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\nrules:\n  - id: a\n    kind: max_drop\n    metric: accuracy\n    threshold: high\n")
    before = snapshot()
    for args in (["policy", "validate", str(bad)], ["quantize", "--model", "adult-income", "--policy", str(bad)]):
        res = _cli(*args)
        assert res.exit_code == 2
        assert "rules.0.threshold" in res.output
    assert snapshot() == before


def test_policy_commands() -> None:
    policy = str(ROOT / "policies" / "default.yaml")
    res = _cli("policy", "validate", policy)
    assert res.exit_code == 0 and "valid" in res.output
    res = _cli("policy", "explain", policy)
    assert res.exit_code == 0 and "accuracy-drop" in res.output and "upper CI bound" in res.output
    res = _cli("recipes")
    assert res.exit_code == 0 and "dynamic-int8" in res.output


def test_validate_command(demo_sources: dict[str, str], settings: Any, tmp_path: Path) -> None:
    import pandas as pd

    calib = pd.read_parquet(settings.data_dir / "adult-income" / "calibration.parquet")
    good = tmp_path / "good.csv"
    calib.to_csv(good, index=False)
    res = _cli("validate", "--model", "adult-income", "--data", str(good))
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.csv"
    calib.drop(columns=["age"]).to_csv(bad, index=False)
    res = _cli("validate", "--model", "adult-income", "--data", str(bad))
    assert res.exit_code == 3 and "columns match" in res.output, res.output[-3000:]


def test_status_lists_sources(demo_sources: dict[str, str], settings: Any) -> None:
    res = _cli("status")
    assert res.exit_code == 0 and "adult-income" in res.output and "rt-sentiment" in res.output
