"""Every source kind, logged the way MLflow's documentation shows (default arguments, in a user's
script), governed by the real CLI in a fresh process, promoted, its candidate served by
``mlflow.pyfunc.load_model`` in another fresh process, and the champion monitored (its own
reading of a window, Evidently drift against the reference, a run logged). Plus: a mis-declared
output is refused by the faithful-measurement check with nothing registered.

Packaged data only: sklearn's breast-cancer (one-logit binary MLP) and digits (8x8 images, 10
classes: a CNN and an MLP), UCI Adult (a custom PythonModel holding a torch MLP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import client, prefect_server, project_copy, run_cli

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).parent / "sources_scripts"
LENIENT = """name: lenient-tests
description: small test sets; the point here is reading every kind of model, not a tight gate
rules:
  - id: accuracy-drop
    kind: max_drop
    metric: accuracy
    threshold: 0.05
    severity: block
calibration:
  min_rows: 100
"""


@dataclass
class World:
    home: Path
    project: Path
    env: dict[str, str]
    files: dict[str, dict[str, Path]]


def _script(world_env: dict[str, str], cwd: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=world_env, text=True, capture_output=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _split(df: pd.DataFrame, train_idx: np.ndarray, n_cal: int, seed: int) -> dict[str, pd.DataFrame]:
    """Reference = the model's training rows; calibration drawn from them; evaluation = the rest."""
    train = df.iloc[train_idx]
    return {
        "reference": train,
        "calibration": train.sample(n=n_cal, random_state=seed),
        "evaluation": df.drop(df.index[train_idx]),
    }


def _write(d: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for role, frame in frames.items():
        out[role] = d / f"{role}.parquet"
        frame.to_parquet(out[role])
    return out


def _onboard(project: Path, name: str, files: dict[str, Path], label: str, **extra: str) -> None:
    lines = [
        f"name: {name}",
        f"label: {label}",
        f"calibration_data: {files['calibration']}",
        f"evaluation_data: {files['evaluation']}",
        f"reference_data: {files['reference']}",
        "policy: policies/lenient.yaml",
        "recipe: dynamic-int8",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    (project / "registry" / "models" / f"{name}.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from sklearn.datasets import load_breast_cancer, load_digits

    from quantgate.data import demo_models as dm
    from quantgate.settings import Settings

    tmp = tmp_path_factory.mktemp("sources")
    home = tmp / "home"
    home.mkdir()
    project = project_copy(tmp, {})
    (project / "policies" / "lenient.yaml").write_text(LENIENT)
    for stale in (project / "registry" / "models").glob("*.yaml"):
        stale.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env |= {
        "QUANTGATE_HOME": str(home),
        "QUANTGATE_PROJECT_DIR": str(project),
        "COLUMNS": "200",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    user_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}

    bc = load_breast_cancer(as_frame=True).frame
    bc_files = _write(tmp / "bc", _split(bc, bc.sample(frac=0.5, random_state=0).index.map(bc.index.get_loc), 120, 1))
    digits = load_digits()
    pixels = pd.DataFrame(digits.data / 16.0, columns=[f"px{i}" for i in range(64)]).astype("float32")
    pixels["digit"] = digits.target
    train_idx = np.random.default_rng(0).permutation(len(pixels))[:900]  # as in log_digits.py
    dg_files = _write(tmp / "digits", _split(pixels, train_idx, 300, 1))
    adult = dm.prepare_adult(dm.DemoSize.small(), Settings(home=home, project_dir=project))
    adult_files = {k: adult[k] for k in ("calibration", "evaluation", "reference")}
    rt = dm.prepare_rt(dm.DemoSize.small(), Settings(home=home, project_dir=project))
    rt_eval = pd.read_parquet(rt["evaluation"])
    rt_eval.head(300).to_parquet(rt["evaluation"])  # the pipeline is a 6-layer transformer: keep CI short
    rt_files = {k: rt[k] for k in ("calibration", "evaluation", "reference")}

    for args in {
        "bc-pt2": ["log_breast_cancer.py", "bc-pt2", "pt2"],
        "bc-pickle": ["log_breast_cancer.py", "bc-pickle", "pickle"],
        "bc-sigmoid": ["log_breast_cancer.py", "bc-sigmoid", "pt2", "sigmoid"],
        "digits-cnn": ["log_digits.py", "digits-cnn", "cnn"],
        "digits-mlp": ["log_digits.py", "digits-mlp", "mlp"],
        "adult-pyfunc": ["log_adult_pyfunc.py", "adult-pyfunc", str(adult["train"])],
        "rt-transformers": ["log_transformers.py", "rt-transformers", str(rt["train"])],
    }.values():
        _script(user_env, home, str(SCRIPTS / args[0]), *args[1:])
    for name in ("bc-pt2", "bc-pickle"):
        _onboard(project, name, bc_files, "target")
    _onboard(project, "bc-sigmoid", bc_files, "target", output="logits")  # mis-declared on purpose
    _onboard(project, "digits-cnn", dg_files, "digit")
    _onboard(project, "digits-mlp", dg_files, "digit")
    _onboard(project, "adult-pyfunc", adult_files, "income", sensitive_attributes="[sex, race]")
    _onboard(project, "rt-transformers", rt_files, "label", input_columns="[text]")
    files = {"bc": bc_files, "digits": dg_files, "adult": adult_files, "rt": rt_files}
    # one real Prefect server for the module's ~25 governing CLI runs (each would start a temporary one)
    with prefect_server(tmp, env) as api:
        yield World(home, project, {**env, "PREFECT_API_URL": api}, files)


def _score(world: World, uri: str, data: Path, label: str, mode: str, shape: str | None = None) -> float:
    args = [sys.executable, str(SCRIPTS / "score.py"), uri, str(data), label, mode, *([shape] if shape else [])]
    env = {**world.env, "MLFLOW_TRACKING_URI": f"sqlite:///{world.home / 'mlflow.db'}"}
    proc = subprocess.run(args, cwd=world.home, env=env, text=True, capture_output=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"])


CASES = {
    # name: (data, label, how its author reads the source's output, image shape, how the candidate answers)
    "bc-pt2": ("bc", "target", "logit1", None, "label"),
    "bc-pickle": ("bc", "target", "logit1", None, "label"),
    "digits-cnn": ("digits", "digit", "argmax", "1,8,8", "label"),
    "digits-mlp": ("digits", "digit", "argmax", None, "label"),
    "adult-pyfunc": ("adult", "income", "argmax", None, "argmax"),  # the same PythonModel class
    "rt-transformers": ("rt", "label", "rt-pipeline", None, "label"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_source_kind_governed_promoted_and_served(world: World, name: str) -> None:
    data, label, mode, shape, served_mode = CASES[name]
    evaluation = world.files[data]["evaluation"]
    proc = run_cli(world.env, "quantize", "--model", name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cl = client(world.home)
    qname = f"{name}-quantized"
    mv = cl.get_model_version_by_alias(qname, "candidate")
    # the baseline quantgate measured is the model's own accuracy, read as its author reads it
    truth = _score(world, f"models:/{name}/1", evaluation, label, mode, shape)
    assert float(mv.tags["quantgate.accuracy_fp32"]) == pytest.approx(truth, abs=1e-4)
    # a sanity floor on the source itself (the text head is a logistic fit on 600 snippets)
    assert truth > (0.55 if data == "rt" else 0.8), f"{name}: the source should be a usable model ({truth})"
    card = mv.description or ""
    assert "Faithful reading" in card
    cl.set_model_version_tag(qname, mv.version, "quantgate.approval", "approved")
    proc = run_cli(world.env, "promote", name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the champion serves in a fresh process, on the raw rows a client sends
    served = _score(world, f"models:/{qname}@champion", evaluation, label, served_mode)
    assert served == pytest.approx(float(mv.tags["quantgate.accuracy_quantized"]), abs=0.01)
    # and the champion is monitored: its own reading of a window, Evidently against the reference
    _monitor_spec(world, name, world.files[data]["reference"])
    proc = run_cli(world.env, "monitor", "--model", name, "--window", str(evaluation))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{qname} v{mv.version} (@champion)" in proc.stdout
    run_id = cl.get_model_version(qname, mv.version).tags["quantgate.last_monitor_run"]
    run = cl.get_run(run_id)
    assert run.data.metrics["rows"] == len(pd.read_parquet(evaluation))
    assert "drift_report.html" in {a.path for a in cl.list_artifacts(run_id)}


def _monitor_spec(world: World, name: str, reference: Path) -> None:
    d = world.project / "monitoring"
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(f"model: {name}\nreference: {reference}\n")


def test_misdeclared_output_is_refused_and_nothing_registered(world: World) -> None:
    before = _snapshot(world)
    proc = run_cli(world.env, "quantize", "--model", "bc-sigmoid")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "differs from the model's own predictions" in proc.stderr
    assert "Traceback" not in proc.stderr  # Prefect's log keeps the error's line, not its traceback
    assert _snapshot(world) == before


def test_default_policy_governs_a_classifier_without_groups_per_class(world: World) -> None:
    """The breast-cancer MLP names no sensitive attribute or slice. Under the default policy (which
    blocks on group rules) it is governed, its groups being its classes (the label 'target'): the
    group rules are measured per class, the card's verdict says so, and the demographic rules are
    n/a (issue 28; this used to be refused up front)."""
    policies = world.project / "policies"
    # the default policy's rules as shipped; only its calibration floor (200 rows) fits the 120 rows here
    policy = policies / "default-small-calibration.yaml"
    policy.write_text((policies / "default.yaml").read_text() + "calibration:\n  min_rows: 100\n")
    cl = client(world.home)
    qname = "bc-pt2-quantized"
    before = {v.version for v in cl.search_model_versions(f"name='{qname}'")}
    proc = run_cli(world.env, "quantize", "--model", "bc-pt2", "--policy", str(policy))
    out = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode in (0, 3), out  # a verdict either way (3: the gate refused it)
    assert "blocks on group rule" not in proc.stderr and "Traceback" not in proc.stderr, out
    new = [v for v in cl.search_model_versions(f"name='{qname}'") if v.version not in before]
    assert len(new) == 1, out
    mv = new[0]
    card = mv.description or ""
    rows = {ln.split("|")[1].strip(): ln for ln in card.splitlines() if ln.startswith("| ") and ln.count("|") > 6}
    for rule in ("group-accuracy-drop", "flips-concentrated"):
        assert "**not measured**" not in rows[rule], rows[rule]
        assert "groups are the classes of" in rows[rule] and "target" in rows[rule], rows[rule]
    assert "worst group target=" in rows["group-accuracy-drop"]
    for rule in ("demographic-parity-gap", "equalized-odds-gap"):
        assert "**n/a**" in rows[rule] and "not demographic groups" in rows[rule], rows[rule]


def test_regression_model_is_refused_by_name_and_nothing_registered(world: World) -> None:
    """A one-output regression model (sklearn's diabetes) must not be read as a binary classifier."""
    data = world.home.parent / "diabetes"
    env = {**world.env, "MLFLOW_TRACKING_URI": f"sqlite:///{world.home / 'mlflow.db'}"}
    _script(env, world.home, str(SCRIPTS / "log_diabetes.py"), "diabetes", str(data))
    files = {role: data / f"{role}.parquet" for role in ("calibration", "evaluation", "reference")}
    _onboard(world.project, "diabetes", files, "target")
    before = _snapshot(world)
    proc = run_cli(world.env, "quantize", "--model", "diabetes")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: the label column has") and "a regression model" in errors[0]
    assert "set task: tabular-regression" in errors[0]
    assert "Traceback" not in proc.stderr
    assert _snapshot(world) == before


def _snapshot(world: World) -> list[tuple[str, str, dict[str, str]]]:
    cl = client(world.home)
    return sorted(
        (m.name, v.version, dict(v.tags))
        for m in cl.search_registered_models()
        for v in cl.search_model_versions(f"name='{m.name}'")
    )


def _quantize_with_evaluation(
    world: World, name: str, data: str, edit: Callable[[pd.DataFrame], None]
) -> tuple[subprocess.CompletedProcess[str], int]:
    """``quantize --model name`` on a copy of its evaluation data changed by ``edit``; the
    registry must be left exactly as it was. Returns the run and the number of evaluation rows."""
    onboarding = world.project / "registry" / "models" / f"{name}.yaml"
    kept = onboarding.read_text()
    evaluation = pd.read_parquet(world.files[data]["evaluation"])
    edit(evaluation)
    changed = world.home.parent / f"{name}-edited.parquet"
    evaluation.to_parquet(changed)
    onboarding.write_text(kept.replace(str(world.files[data]["evaluation"]), str(changed)))
    before = _snapshot(world)
    try:
        proc = run_cli(world.env, "quantize", "--model", name)
    finally:
        onboarding.write_text(kept)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert _snapshot(world) == before
    return proc, len(evaluation)


def _errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]


def test_missing_inputs_the_model_cannot_score_are_named_and_nothing_registered(world: World) -> None:
    """One evaluation row with a missing feature, outside the rows the output is probed with: the
    one-logit MLP answers NaN for it. That is a named data error before anything is judged."""

    def hole(ev: pd.DataFrame) -> None:
        ev.iloc[200, ev.columns.get_loc("mean area")] = np.nan

    proc, n = _quantize_with_evaluation(world, "bc-pt2", "bc", hole)
    assert _errors(proc) == [
        f"error: bc-pt2/1 returned NaN or infinite scores on 1 of the {n} evaluation rows, each of "
        "them a row with missing values (column(s) mean area) — the model does not handle missing values: drop or "
        "impute them in the evaluation data"
    ], proc.stderr[-3000:]


def test_evaluation_rows_with_no_text_are_named_not_scored_as_nan(world: World) -> None:
    """A text pipeline's evaluation rows with no text (None): quantgate's reading would score the
    string 'None'; the serving pipeline would be sent nothing. A named data error instead."""

    def blank(ev: pd.DataFrame) -> None:
        ev.loc[ev.index[[3, 150]], "text"] = None

    proc, n = _quantize_with_evaluation(world, "rt-transformers", "rt", blank)
    errors = _errors(proc)
    assert len(errors) == 1, proc.stderr[-3000:]
    wanted = f"error: 2 of the {n} evaluation rows for rt-transformers/1 have no text in column 'text'"
    assert errors[0].startswith(wanted), errors[0]
    assert "fill them with the text the model is sent for them in serving" in errors[0]


def test_string_labels_in_the_wrong_order_for_a_one_logit_model_are_refused(world: World) -> None:
    """sklearn's breast-cancer target spelled out (0 malignant, 1 benign): the one-logit MLP's
    output names no class, and the sorted labels put 'benign' first. Measured that way the source
    would score ~4% and every candidate be judged against that; refused with the order to declare."""

    def spell(ev: pd.DataFrame) -> None:
        ev["target"] = ev["target"].map({0: "malignant", 1: "benign"})

    proc, _ = _quantize_with_evaluation(world, "bc-pt2", "bc", spell)
    errors = _errors(proc)
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "read in the sorted order of the labels ['benign', 'malignant']" in errors[0]
    assert "set classes: [malignant, benign] in registry/models/bc-pt2.yaml" in errors[0]
