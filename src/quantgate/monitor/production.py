"""What the served model does in production, against what the gate approved.

Three checks per monitoring window, each compared with the figure the gate measured on its
evaluation rows (read from the candidate's ``model_card.json``):

- **disagreement**: a sample of the window's logged inputs re-scored with the fp32 source
  version; the share whose label differs from the served label vs the gate's flip rate;
- **labelled accuracy**: rows whose delayed labels arrived, accuracy overall and per group;
- **estimated accuracy**: NannyML's CBPE, fitted on the gate's evaluation scores (the
  ``quantgate/eval_scores.parquet`` artifact), estimates accuracy from the served probabilities
  (binary and multi-class).

The statistics (:func:`compare_rate`, :func:`compare_accuracy`, with the project's one Wilson
interval, :func:`quantgate.evaluate.intervals.wilson`) are pure and take counts; the rest reads
MLflow and the inference log.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from quantgate.errors import DataError
from quantgate.evaluate.intervals import wilson

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: the assumptions every label-free estimate rests on, stated in the report
CBPE_ASSUMPTIONS = (
    "no concept drift: P(label | inputs) is the same in production as on the gate's evaluation rows; "
    "the candidate's probabilities, calibrated on those rows (CBPE fits a calibrator on them), stay calibrated "
    "under covariate shift"
)


# --- pure statistics -------------------------------------------------------------------------


def compare_rate(
    k: int, n: int, gate_rate: float, gate_n: int | None, *, alpha: float = 0.01, confidence: float = 0.95
) -> dict[str, Any]:
    """Is the production rate k/n significantly ABOVE the gate's rate? (one-sided)

    With the gate's row count, Fisher's exact test on the 2x2 table (both rates are estimates);
    without it, an exact binomial test against the gate's rate taken as known.
    """
    from scipy.stats import binomtest, fisher_exact

    if n <= 0:
        raise DataError("no rows to compare with the gate's rate")
    if gate_n:
        gate_k = round(gate_rate * gate_n)
        p = float(fisher_exact([[k, n - k], [gate_k, gate_n - gate_k]], alternative="greater").pvalue)
        test = "fisher_exact one-sided (production > gate)"
    else:
        p = float(binomtest(int(k), int(n), min(max(gate_rate, 0.0), 1.0), alternative="greater").pvalue)
        test = "binomtest one-sided against the gate's rate"
    rate = k / n
    low, high = wilson(k, n, confidence)
    return {
        "rate": rate,
        "k": int(k),
        "n": int(n),
        "interval": [low, high],
        "confidence": confidence,
        "gate_rate": gate_rate,
        "gate_n": gate_n,
        "gate_interval": list(wilson(round(gate_rate * gate_n), gate_n, confidence)) if gate_n else None,
        "p_value": p,
        "alpha": alpha,
        "test": test,
        "above_gate": p < alpha,
    }


def compare_accuracy(
    correct: int, n: int, gate_accuracy: float, gate_n: int | None, *, alpha: float = 0.01, confidence: float = 0.95
) -> dict[str, Any]:
    """Accuracy k/n with its interval vs the gate's; ``below_gate`` when significantly lower (one-sided)."""
    errors = compare_rate(n - correct, n, 1.0 - gate_accuracy, gate_n, alpha=alpha, confidence=confidence)
    low, high = wilson(correct, n, confidence)
    gate_iv = wilson(round(gate_accuracy * gate_n), gate_n, confidence) if gate_n else None
    return {
        "accuracy": correct / n,
        "n": int(n),
        "interval": [low, high],
        "gate_accuracy": gate_accuracy,
        "gate_n": gate_n,
        "gate_interval": list(gate_iv) if gate_iv else None,
        "p_value": errors["p_value"],
        "test": errors["test"],
        "below_gate": errors["above_gate"],
    }


def intervals_disjoint_below(estimate_high: float, gate_low: float) -> bool:
    """An estimate is below the gate figure when its whole interval lies under the gate's interval."""
    return estimate_high < gate_low


# --- what the gate measured ------------------------------------------------------------------


def gate_figures(card: dict[str, Any]) -> dict[str, Any]:
    """The gate-time figures monitoring compares with, from the candidate's model_card.json."""
    metrics = card.get("metrics") or {}
    cand = metrics.get("candidate") or {}
    if "accuracy" not in cand or "n" not in metrics:
        raise DataError("the candidate's model card has no candidate accuracy / row count", "re-govern the source")
    return {
        "n": int(metrics["n"]),
        "accuracy": float(cand["accuracy"]),
        "flip_rate": float(metrics.get("flip_rate", cand.get("flip_rate", math.nan))),
        "groups": [
            {
                "attribute": g["attribute"],
                "group": str(g["group"]),
                "n": int(g["n"]),
                "accuracy": g["candidate_accuracy"],
            }
            for g in card.get("groups") or []
        ],
        "source": (card.get("source") or {}).get("name"),
        "source_version": str((card.get("source") or {}).get("version", "")),
    }


class DownloadFailed(RuntimeError):
    """An artifact that may well exist could not be downloaded (server down, permission refused,
    a timeout, a broken file): not the same as a candidate governed without it."""


def error_line(exc: BaseException) -> str:
    """``"Type: first line of the message"``: the cause of a failure, on one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def download_artifact(cl: Any, run_id: str, path: str, what: str, dst: str) -> str | None:
    """The local copy of run ``run_id``'s artifact ``path`` (``what`` it is, for the message), or
    None when MLflow answers that it does not exist. Any other failure raises
    :class:`DownloadFailed` naming what was being downloaded, from where, and the error's first line."""
    from quantgate.registry.mlflow_registry import does_not_exist

    try:
        return str(cl.download_artifacts(run_id, path, dst_path=dst))
    except Exception as exc:
        if does_not_exist(exc):
            return None
        raise DownloadFailed(f"downloading {path} ({what}) of run {run_id} failed: {error_line(exc)}") from exc


def load_card(cl: Any, run_id: str) -> dict[str, Any]:
    """The candidate's model_card.json; a DataError when its run has none, DownloadFailed when it
    could not be read."""
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifact(cl, run_id, "model_card.json", "the candidate's gate-time figures", tmp)
        if path is None:
            raise DataError(f"the candidate's run {run_id} has no model_card.json", "re-govern the source")
        return json.loads(Path(path).read_text())


def load_eval_scores(cl: Any, run_id: str) -> pd.DataFrame | None:
    """The gate-time evaluation scores of the candidate, or None for a candidate governed without
    them; DownloadFailed when they could not be read."""
    import tempfile

    import pandas as pd

    from quantgate.steps.context import EVAL_SCORES_ARTIFACT

    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifact(cl, run_id, EVAL_SCORES_ARTIFACT, "the gate-time evaluation scores", tmp)
        return None if path is None else pd.read_parquet(path)


# --- production disagreement -------------------------------------------------------------------


def load_fp32_source(source_ref: str) -> Any:
    """The fp32 source version, read exactly as the gate read it (onboarding, source kind, probe)."""
    from quantgate.steps.data import load_datasets
    from quantgate.steps.discover import discover_source
    from quantgate.steps.source import load_source_model

    source = discover_source(source_ref)
    return load_source_model(source, load_datasets(source.config))


def disagreement(
    window: pd.DataFrame,
    served_labels: pd.Series,
    fp32: Any,
    classes: list[Any],
    gate: dict[str, Any],
    *,
    sample: int,
    alpha: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Re-score a sample of the window with the fp32 source; compare its disagreement with the gate's flip rate."""
    from quantgate.models.outputs import class_index

    n = min(sample, len(window))
    rows = window.sample(n=n, random_state=seed) if n < len(window) else window
    served = class_index(served_labels.loc[rows.index], classes, what="served labels")
    fp32_pred = fp32.predict_proba(rows[fp32.input_columns]).argmax(axis=1)
    disagrees = fp32_pred != served
    out = compare_rate(int(disagrees.sum()), n, gate["flip_rate"], gate["n"], alpha=alpha)
    out["sampled_from"] = len(window)
    out["indicator"] = disagrees.astype(int)  # popped by the caller for the Evidently run
    return out


def disagreement_report(indicator: np.ndarray) -> Any:
    """An Evidently run whose MeanValue of ``disagrees`` is the disagreement rate (plotted in the workspace)."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    ds = Dataset.from_pandas(
        pd.DataFrame({"disagrees": indicator}), data_definition=DataDefinition(numerical_columns=["disagrees"])
    )
    return Report([MeanValue(column="disagrees")]).run(current_data=ds)


# --- accuracy -------------------------------------------------------------------------------------


def labelled_accuracy(
    labelled: pd.DataFrame, classes: list[Any], gate: dict[str, Any], *, alpha: float, min_group: int = 30
) -> dict[str, Any]:
    """Accuracy of the served labels on rows whose true label arrived, overall and per gate group."""
    from quantgate.models.outputs import class_index

    y = class_index(labelled["true_label"], classes, what="delayed labels")
    pred = class_index(labelled["label"], classes, what="served labels")
    ok = y == pred
    out = compare_accuracy(int(ok.sum()), len(ok), gate["accuracy"], gate["n"], alpha=alpha)
    groups = []
    for g in gate["groups"]:
        if g["attribute"] not in labelled.columns:
            continue
        mask = (labelled[g["attribute"]].astype(str) == g["group"]).to_numpy()
        n = int(mask.sum())
        if n < min_group:
            groups.append({**g, "n_production": n, "not_run": f"fewer than {min_group} labelled rows"})
            continue
        cmp = compare_accuracy(int(ok[mask].sum()), n, float(g["accuracy"]), int(g["n"]), alpha=alpha)
        groups.append({"attribute": g["attribute"], "group": g["group"], **cmp})
    out["groups"] = groups
    out["groups_below_gate"] = [f"{g['attribute']}={g['group']}" for g in groups if g.get("below_gate")]
    out["y"], out["pred"] = y, pred  # popped by the caller for the Evidently report
    return out


def estimate_accuracy_cbpe(
    scores: pd.DataFrame,
    proba: np.ndarray,
    predicted: np.ndarray,
    gate: dict[str, Any],
    confidence: float = 0.95,
) -> dict[str, Any]:
    """NannyML CBPE: fit on the gate's evaluation scores, estimate the window's accuracy.

    ``scores`` is the candidate's ``eval_scores`` table (``label`` as a class index, ``proba_0`` ..
    ``proba_{k-1}``); ``proba`` the window's probabilities: the positive class's (n,) for a binary
    model, every class's (n, k) for a multi-class one (NannyML's ``classification_multiclass``,
    one calibrator per class); ``predicted`` the served class indices. The interval is CBPE's
    estimate +/- z * its sampling error (NannyML's own sampling-error estimate for the window
    size); it is compared with the gate's accuracy and its Wilson interval.
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import norm

    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML sends usage stats unless told not to
    import nannyml

    k = sum(1 for col in scores.columns if str(col).startswith("proba_"))
    cols = [f"proba_{i}" for i in range(k)]
    if k < 2 or any(col not in scores.columns for col in cols):
        raise DataError(
            f"the gate-time evaluation scores have no proba_0..proba_<k-1> columns ({list(scores.columns)})"
        )
    proba = np.asarray(proba, float)
    predicted = np.asarray(predicted, int)
    ref_pred = scores[cols].to_numpy().argmax(axis=1)
    if k == 2:
        if proba.ndim != 1:
            raise DataError(f"a binary model's estimate takes the positive-class probability, got shape {proba.shape}")
        reference = pd.DataFrame(
            {"y_true": scores["label"].to_numpy(), "y_pred_proba": scores["proba_1"].to_numpy(), "y_pred": ref_pred}
        )
        analysis = pd.DataFrame({"y_pred_proba": proba, "y_pred": predicted})
        y_pred_proba: Any = "y_pred_proba"
        problem = "classification_binary"
    else:
        if proba.ndim != 2 or proba.shape[1] != k:
            raise DataError(f"the gate scored {k} classes but the window's probabilities have shape {proba.shape}")
        reference = pd.DataFrame(
            {
                "y_true": scores["label"].to_numpy().astype(int),
                **{c: scores[c].to_numpy() for c in cols},
                "y_pred": ref_pred,
            }
        )
        analysis = pd.DataFrame({**{c: proba[:, i] for i, c in enumerate(cols)}, "y_pred": predicted})
        y_pred_proba = {i: c for i, c in enumerate(cols)}
        problem = "classification_multiclass"
    est = nannyml.CBPE(
        y_pred_proba=y_pred_proba,
        y_pred="y_pred",
        y_true="y_true",
        metrics=["accuracy"],
        problem_type=problem,
        chunk_number=1,
    )
    est.fit(reference)
    row = est.estimate(analysis).filter(period="analysis").to_df().iloc[0]
    value, err = float(row[("accuracy", "value")]), float(row[("accuracy", "sampling_error")])
    z = float(norm.ppf(0.5 + confidence / 2))
    low, high = max(0.0, value - z * err), min(1.0, value + z * err)
    gate_low, gate_high = wilson(round(gate["accuracy"] * gate["n"]), gate["n"], confidence)
    return {
        "estimator": f"nannyml CBPE {nannyml.__version__} ({problem}, {k} classes)",
        "assumptions": CBPE_ASSUMPTIONS,
        "fitted_on": f"{len(reference)} gate-time evaluation rows (candidate probabilities vs labels)",
        "estimated_accuracy": value,
        "sampling_error": err,
        "interval": [low, high],
        "confidence": confidence,
        "n": len(analysis),
        "gate_accuracy": gate["accuracy"],
        "gate_interval": [gate_low, gate_high],
        "below_gate": intervals_disjoint_below(high, gate_low),
    }


def classification_report(y: np.ndarray, pred: np.ndarray, classes: list[Any]) -> Any:
    """Evidently's ClassificationPreset on the labelled rows (a Snapshot: HTML and workspace run)."""
    import pandas as pd
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset

    df = pd.DataFrame({"target": [str(classes[i]) for i in y], "prediction": [str(classes[i]) for i in pred]})
    task = (
        BinaryClassification(target="target", prediction_labels="prediction", pos_label=str(classes[-1]))
        if len(classes) == 2
        else MulticlassClassification(target="target", prediction_labels="prediction")
    )
    ds = Dataset.from_pandas(
        df, data_definition=DataDefinition(categorical_columns=["target", "prediction"], classification=[task])
    )
    return Report([ClassificationPreset()]).run(current_data=ds)
