"""The label-free accuracy estimate on a multi-class model: real NannyML CBPE, real sklearn
classifier on the digits data (10 classes), a real MLflow run holding the gate's card and scores.

The estimate must land near the accuracy the held-out window really has (labels known here,
never shown to the estimator), and must fall below the gate when the window's images are noisy.
"""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    train, gate_rows, window = idx[:500], idx[500:1150], idx[1150:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(C=0.1, max_iter=3000).fit(X[train], y[train])
    proba = clf.predict_proba(X[gate_rows])
    scores = pd.DataFrame(proba, columns=[f"proba_{i}" for i in range(10)])
    scores.insert(0, "label", y[gate_rows])  # what steps/evaluate.py stores: class index, then proba_i
    gate = {"accuracy": float((proba.argmax(1) == y[gate_rows]).mean()), "n": len(gate_rows)}
    return {"clf": clf, "X": X[window], "y": y[window], "scores": scores, "gate": gate}


def _window(d: dict[str, Any], noise: float) -> tuple[np.ndarray, np.ndarray, float]:
    X = d["X"] + np.random.default_rng(1).normal(0, noise, d["X"].shape) if noise else d["X"]
    proba = d["clf"].predict_proba(X)
    pred = proba.argmax(1)
    return proba, pred, float((pred == d["y"]).mean())


def test_multiclass_estimate_tracks_the_realized_accuracy(digits: dict[str, Any]) -> None:
    from quantgate.monitor.production import estimate_accuracy_cbpe

    proba, pred, realized = _window(digits, noise=0)
    out = estimate_accuracy_cbpe(digits["scores"], proba, pred, digits["gate"])
    assert "classification_multiclass, 10 classes" in out["estimator"] and "no concept drift" in out["assumptions"]
    assert out["n"] == len(pred) and out["sampling_error"] > 0
    assert abs(out["estimated_accuracy"] - realized) <= 3 * out["sampling_error"], (out, realized)
    assert not out["below_gate"]

    # noisy images: accuracy really drops; the estimate drops too, out of the gate's interval. It
    # drops less than the truth (0.89 vs 0.74 here): noise breaks CBPE's calibration assumption, so
    # the estimate is an early warning, not a substitute for delayed labels (README says so)
    noisy_proba, noisy_pred, noisy_realized = _window(digits, noise=6)
    noisy = estimate_accuracy_cbpe(digits["scores"], noisy_proba, noisy_pred, digits["gate"])
    assert noisy_realized < realized - 0.1
    assert noisy["estimated_accuracy"] < out["estimated_accuracy"] - 0.04
    assert noisy["below_gate"] and noisy["interval"][1] < noisy["gate_interval"][0]


def test_multiclass_probabilities_must_match_the_gate(digits: dict[str, Any]) -> None:
    from quantgate.errors import DataError
    from quantgate.monitor.production import estimate_accuracy_cbpe

    proba, pred, _ = _window(digits, noise=0)
    with pytest.raises(DataError, match="gate scored 10 classes"):
        estimate_accuracy_cbpe(digits["scores"], proba[:, :9], pred, digits["gate"])
    with pytest.raises(DataError, match="positive-class probability"):
        estimate_accuracy_cbpe(digits["scores"][["label", "proba_0", "proba_1"]], proba[:, :2], pred, digits["gate"])


def test_window_checks_rescore_a_sample_for_the_multiclass_estimate(
    digits: dict[str, Any], settings: Any, tmp_path: Any
) -> None:
    """run_window_checks on a real MLflow run: the log has only label/score, so the served
    version's predict_proba re-scores a sample of the window; the estimate names how."""
    import mlflow

    from quantgate.monitoring.checks import run_window_checks
    from quantgate.registry.mlflow_registry import client, ensure_experiment
    from quantgate.steps.context import EVAL_SCORES_ARTIFACT

    card = {
        "metrics": {"n": digits["gate"]["n"], "flip_rate": 0.01, "candidate": {"accuracy": digits["gate"]["accuracy"]}},
        "groups": [],
        "source": {"name": "digits", "version": "1"},
    }
    ensure_experiment("quantgate-test-cbpe", settings)
    with mlflow.start_run() as run:
        mlflow.log_text(json.dumps(card), "model_card.json")
        digits["scores"].to_parquet(tmp_path / "eval_scores.parquet", index=False)
        mlflow.log_artifact(str(tmp_path / "eval_scores.parquet"), EVAL_SCORES_ARTIFACT.rsplit("/", 1)[0])
    mv = SimpleNamespace(name="digits-quantized", version="1", run_id=run.info.run_id, tags={})
    cols = [f"px{i}" for i in range(digits["X"].shape[1])]
    window = pd.DataFrame(digits["X"], columns=cols)
    proba, pred, realized = _window(digits, noise=0)
    served = pd.DataFrame({"label": [CLASSES[i] for i in pred], "score": proba.max(1)})  # what the log keeps
    rescored: list[int] = []

    def served_proba(rows: pd.DataFrame) -> np.ndarray:
        rescored.append(len(rows))
        return digits["clf"].predict_proba(rows[cols].to_numpy())

    checks = run_window_checks(
        client(settings),
        mv,
        window,
        served,
        CLASSES,
        sample=50,
        alpha=0.01,
        served_proba=served_proba,
        estimate_sample=400,
    )
    est = checks.estimate.as_dict()
    assert est["status"] == "ok", est
    assert rescored == [400] and est["n"] == 400 and "re-scored by the served version on 400 of" in est["probabilities"]
    assert abs(est["estimated_accuracy"] - realized) <= 3 * est["sampling_error"] + 0.01, (est, realized)
    assert checks.disagreement.as_dict()["status"] == "not run"  # no fp32 source tag here: said, not skipped silently
