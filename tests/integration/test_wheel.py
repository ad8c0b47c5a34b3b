"""The package is the product: the built wheel, installed in a fresh virtual environment with no
checkout on the path, governs a model from a directory made by `quantgate init`.

The fresh venv reaches the heavy dependencies (torch, mlflow, prefect, ...) through a ``.pth`` file
naming the test interpreter's site-packages, so nothing is downloaded or reinstalled; that
directory's own ``.pth`` files (an editable quantgate) are not processed, so the only quantgate
importable is the wheel's (asserted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT
from helpers import client as store_client

pytestmark = pytest.mark.integration

# the repository files a wheel is built from (the templates link into registry/ and policies/)
SOURCES = ("pyproject.toml", "setup.py", "README.md", "src", "flows", "registry", "policies")
ONBOARDING = """\
name: adult-income
task: tabular-classification
label: income
description: Predicts whether income exceeds $50K/yr. Test only; not for decisions about people.
calibration_data: ${QUANTGATE_HOME}/data/adult-income/calibration.parquet
evaluation_data: ${QUANTGATE_HOME}/data/adult-income/evaluation.parquet
reference_data: ${QUANTGATE_HOME}/data/adult-income/reference.parquet
sensitive_attributes: [sex, race]
policy: policies/default.yaml
recipe: dynamic-int8
"""
MONITORING = """\
model: adult-income
alias: champion
reference: ${QUANTGATE_HOME}/data/adult-income/reference.parquet
window: ${QUANTGATE_HOME}/data/adult-income/window-drifted.parquet
drift_share: 0.3
"""
WHERE = "import quantgate, quantgate.flows.quantize as q; print(quantgate.__file__, q.__file__)"
TRAIN = """\
from quantgate.data import demo_models as dm
from quantgate.settings import configure_environment
configure_environment()
mv = dm.train_adult(dm.prepare_adult(dm.DemoSize.small()))
print(f"registered {mv.name}/{mv.version}")
"""


def _dependency_dirs() -> list[str]:
    """Where this interpreter finds torch, mlflow & co. (and the data packages read by path)."""
    import mlflow
    import torch

    dirs = {str(Path(m.__file__).resolve().parents[1]) for m in (mlflow, torch)}
    dirs.add(sysconfig.get_paths()["purelib"])
    return sorted(dirs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Build the wheel from a copy of the sources, install it into a new venv: {venv, bin, wheel}."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("quantgate-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_quantgate_test_deps.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    subprocess.run(
        [*pip, "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True
    )
    yield {"venv": venv, "bin": venv / "bin", "wheel": wheel}


def _env(home: Path) -> dict[str, str]:
    """No checkout on the path, no inherited store: only this test's QUANTGATE_HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env |= {"QUANTGATE_HOME": str(home), "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1"}
    # Prefect's temporary server (one per CLI run) gets 20 s to start by default: too few on a busy CI host
    return env | {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, check=False)
    print(f"$ {' '.join(cmd[-4:])} -> {proc.returncode}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return proc


def test_wheel_contents(installed: dict[str, Path]) -> None:
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for f in ("quantize", "govern", "monitor", "demo"):
        assert f"quantgate/flows/{f}.py" in names
    assert {
        "quantgate/py.typed",
        "quantgate/templates/model_card.md.j2",
        "quantgate/templates/default_policy.yaml",
    } <= names
    assert "quantgate/templates/scaffold/registry/models/example-model.yaml.example" in names
    assert not [n for n in names if n.startswith(("flows/", "tests/", "policies/", "registry/"))]
    # the packaged default policy and card template are the repository's files, byte for byte
    with zipfile.ZipFile(installed["wheel"]) as z:
        assert z.read("quantgate/templates/default_policy.yaml") == (ROOT / "policies" / "default.yaml").read_bytes()
        assert z.read("quantgate/templates/model_card.md.j2") == (ROOT / "registry" / "model_card.md.j2").read_bytes()


def test_installed_wheel_governs_a_model_from_an_initialised_project(
    installed: dict[str, Path], tmp_path: Path
) -> None:
    bin_dir, home, team = installed["bin"], tmp_path / "home", tmp_path / "team"
    env = _env(home)
    qg = str(bin_dir / "quantgate")

    # the wheel's quantgate, not the checkout's: imported from the new venv, flows included
    where = _run(
        [
            str(bin_dir / "python"),
            "-c",
            WHERE,
        ],
        tmp_path,
        env,
    )
    assert where.returncode == 0
    assert all(p.startswith(str(installed["venv"])) for p in where.stdout.split()), where.stdout

    init = _run([qg, "init", str(team)], tmp_path, env)
    assert init.returncode == 0, init.stderr
    assert (team / "policies" / "default.yaml").is_file() and not home.exists()
    again = _run([qg, "init", str(team)], tmp_path, env)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "refusing to overwrite" in again.stderr

    # a team registers a model (the small demo model, trained by the installed package) and onboards it
    trained = _run([str(bin_dir / "python"), "-c", TRAIN], team, env)
    assert trained.returncode == 0 and "registered adult-income/1" in trained.stdout, trained.stderr[-2000:]
    (team / "registry" / "models" / "adult-income.yaml").write_text(ONBOARDING)
    (team / "monitoring" / "adult-income.yaml").write_text(MONITORING)

    # QUANTGATE_PROJECT_DIR is unset: the project is the current directory
    q = _run([qg, "quantize", "--model", "adult-income"], team, env)
    assert q.returncode == 0 and "verdict pass" in q.stdout, q.stdout[-3000:] + q.stderr[-3000:]
    calib = home / "data" / "adult-income" / "calibration.parquet"
    v = _run([qg, "validate", "--model", "adult-income", "--data", str(calib)], team, env)
    assert v.returncode == 0 and "passed" in v.stdout, v.stdout[-3000:] + v.stderr[-3000:]

    cl = store_client(home)
    mv = cl.get_model_version_by_alias("adult-income-quantized", "candidate")
    # the card came from the packaged template; provenance names the wheel's version, no git commit
    assert "# Model card" in (mv.description or "")
    stmt = Path(cl.download_artifacts(mv.run_id, "provenance/statement.json", str(tmp_path))).read_text()
    deps = json.loads(stmt)["predicate"]["buildDefinition"]["resolvedDependencies"]
    (code,) = [d for d in deps if d["name"] == "quantgate"]
    assert code["uri"].startswith("pkg:pypi/quantgate@0.") and "git_commit" not in code["annotations"], code

    cl.set_model_version_tag(mv.name, mv.version, "quantgate.approval", "approved")
    p = _run([qg, "promote", "adult-income"], team, env)
    assert p.returncode == 0 and "@champion" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    m = _run([qg, "monitor", "--model", "adult-income"], team, env)
    assert m.returncode == 0 and "(@champion)" in m.stdout, m.stdout[-3000:] + m.stderr[-3000:]
    # everything stayed under QUANTGATE_HOME: nothing in the team's repository but its own files
    assert not (team / "mlruns").exists() and not (team / ".quantgate").exists()
