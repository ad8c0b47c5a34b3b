"""Issue 28, regression: a torch MLP regressor on sklearn's bundled diabetes data (nothing
downloaded), logged by a user's script with ``mlflow.pytorch.log_model`` defaults (pt2, ndarray
input example), onboarded with ``registry/models/<name>.yaml`` (``task: tabular-regression``,
groups from ``sex`` and an age bucket), governed by the real CLI in a fresh process against a real
MLflow store and a real Prefect server: a real dynamic-int8 candidate, its verdict and card, and
``quantgate verify`` on it. A policy that must fail it gives verdict fail (exit 3); bad input (a
classifier policy, ``classes:``, a label of strings) is one line, exit 2, registry unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import client, prefect_server, project_copy, run_cli

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parent / "sources_scripts" / "log_diabetes_regressor.py"
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
NAME = "diabetes-mlp"


@dataclass
class World:
    home: Path
    project: Path
    env: dict[str, str]
    data: Path


def _onboard(world: World, name: str = NAME, **extra: str) -> None:
    keys = {
        "name": name,
        "task": "tabular-regression",
        "label": "target",
        "calibration_data": str(world.data / "calibration.parquet"),
        "evaluation_data": str(world.data / "evaluation.parquet"),
        "reference_data": str(world.data / "reference.parquet"),
        "input_columns": f"[{', '.join(FEATURES)}]",
        "sensitive_attributes": "[sex]",
        "slices": "[age_group]",
        "policy": "policies/regression-tests.yaml",
        "recipe": "dynamic-int8",
        "description": "Disease progression after one year, for research; not for treatment decisions.",
    } | extra
    text = "".join(f"{k}: {v}\n" for k, v in keys.items())
    (world.project / "registry" / "models" / f"{name}.yaml").write_text(text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("regression")
    home = tmp / "home"
    home.mkdir()
    project = project_copy(tmp, {})
    for stale in (project / "registry" / "models").glob("*.yaml"):
        stale.unlink()
    shipped = (project / "policies" / "regression.yaml").read_text()
    small = "calibration:\n  min_rows: 100\n"  # the script's 150 calibration rows
    (project / "policies" / "regression-tests.yaml").write_text(shipped.replace("calibration:\n", small, 1))
    tight = shipped.replace("deviation_tolerance: 0.05", "deviation_tolerance: 0.000001").replace(
        "calibration:\n", small, 1
    )
    (project / "policies" / "regression-tight.yaml").write_text(tight)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env |= {
        "QUANTGATE_HOME": str(home),
        "QUANTGATE_PROJECT_DIR": str(project),
        "COLUMNS": "200",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    data = tmp / "diabetes"
    user_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), NAME, str(data)],
        cwd=home,
        env=user_env,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w = World(home, project, env, data)
    _onboard(w)
    with prefect_server(tmp, env) as api:
        yield World(home, project, {**env, "PREFECT_API_URL": api}, data)


def _snapshot(world: World) -> list[tuple[str, str, dict[str, str]]]:
    cl = client(world.home)
    return sorted(
        (m.name, v.version, dict(v.tags))
        for m in cl.search_registered_models()
        for v in cl.search_model_versions(f"name='{m.name}'")
    )


def _new_version(world: World, before: list[tuple[str, str, dict[str, str]]]) -> object:
    cl = client(world.home)
    seen = {(n, v) for n, v, _ in before}
    new = [v for v in cl.search_model_versions(f"name='{NAME}-quantized'") if (v.name, v.version) not in seen]
    assert len(new) == 1
    return new[0]


def test_regressor_governed_end_to_end(world: World) -> None:
    before = _snapshot(world)
    proc = run_cli(world.env, "quantize", "--model", NAME)
    out = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, out
    assert "MAE " in proc.stdout and "Traceback" not in proc.stderr, out
    mv = _new_version(world, before)
    tags = mv.tags
    assert tags["quantgate.verdict"] == "pass" and tags["quantgate.approval"] == "pending", tags
    assert tags["quantgate.task"] == "regression" and float(tags["quantgate.mae_fp32"]) > 0
    cl = client(world.home)
    assert cl.get_model_version_by_alias(f"{NAME}-quantized", "candidate").version == mv.version
    verdict = json.loads(Path(cl.download_artifacts(mv.run_id, "verdict.json")).read_text())
    rules = {r["rule_id"]: r for r in verdict["rules"]}
    assert rules["mae-increase"]["outcome"] == "pass" and rules["mae-increase"]["interval"] is not None
    assert rules["group-mae-increase"]["outcome"] in ("pass", "warn"), rules["group-mae-increase"]
    assert "worst of" in rules["group-mae-increase"]["evidence"]
    assert rules["size-not-larger"]["outcome"] == "pass"
    card = json.loads(Path(cl.download_artifacts(mv.run_id, "model_card.json")).read_text())
    reg = card["regression"]
    assert {r["metric"] for r in reg["overall"]} == {"mae", "rmse", "r2", "mean_relative_error"}
    assert all(r["interval"] is not None for r in reg["overall"])
    groups = {(g["attribute"], g["group"]) for g in reg["groups"]}
    assert ("sex", "1.0") in groups and ("sex", "2.0") in groups and ("age_group", "over-55") in groups
    assert reg["deviations"]["n"] == card["metrics"]["n"]
    assert card["reading"]["serialization_format"] == "pt2" and card["quantized_modules"]
    md = Path(cl.download_artifacts(mv.run_id, "model_card.md")).read_text()
    for heading in ("### Overall", "### By group", "### Large deviations", "## Verdict, rule by rule"):
        assert heading in md, heading
    assert "## Verdict, rule by rule" in (mv.description or "")  # the description keeps the verdict first
    verify = run_cli(world.env, "verify", f"{NAME}-quantized/{mv.version}")
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]


def test_a_policy_it_cannot_meet_fails_the_gate(world: World) -> None:
    before = _snapshot(world)
    proc = run_cli(
        world.env, "quantize", "--model", NAME, "--policy", str(world.project / "policies" / "regression-tight.yaml")
    )
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    mv = _new_version(world, before)
    assert mv.tags["quantgate.verdict"] == "fail" and "large-deviations" in mv.tags["quantgate.failed_rules"]
    aliases = client(world.home).get_model_version(mv.name, mv.version).aliases
    assert "candidate" not in aliases  # a failed version never takes the alias


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"policy": "policies/default.yaml"}, "has no regression_rules"),
        ({"classes": "[0, 1]"}, "has no classes"),
        ({"label": "age_group"}, "not numbers"),
    ],
    ids=["classifier-policy", "classes", "string-label"],
)
def test_bad_input_is_one_line_exit_2_registry_unchanged(world: World, edit: dict[str, str], message: str) -> None:
    _onboard(world, **edit)
    try:
        before = _snapshot(world)
        proc = run_cli(world.env, "quantize", "--model", NAME)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert _snapshot(world) == before
    finally:
        _onboard(world)
