"""Metric math on arrays (pure): overall metrics, per-group metrics, flips, paired bootstrap."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quantgate.evaluate.catalog import HIGHER_IS_BETTER


def _acc(y: np.ndarray, p: np.ndarray) -> float:
    return float((y == p).mean()) if len(y) else float("nan")


def _balanced_acc(y: np.ndarray, p: np.ndarray) -> float:
    classes = np.unique(y)
    return float(np.mean([(p[y == c] == c).mean() for c in classes])) if len(classes) else float("nan")


def _f1(y: np.ndarray, p: np.ndarray, positive: int = 1) -> float:
    tp = float(((p == positive) & (y == positive)).sum())
    fp = float(((p == positive) & (y != positive)).sum())
    fn = float(((p != positive) & (y == positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 0.0


@dataclass
class GroupMetric:
    attribute: str
    group: str
    n: int
    baseline_accuracy: float
    candidate_accuracy: float

    @property
    def drop(self) -> float:
        return self.baseline_accuracy - self.candidate_accuracy


@dataclass
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float


@dataclass
class Comparison:
    """Baseline vs candidate on the same rows: what the gate judges."""

    n: int
    baseline: dict[str, float]
    candidate: dict[str, float]
    groups: list[GroupMetric] = field(default_factory=list)
    intervals: dict[str, Interval] = field(default_factory=dict)
    flip_rate: float = 0.0
    sensitive: list[str] = field(default_factory=list)

    def drop(self, metric: str) -> float:
        return self.baseline[metric] - self.candidate[metric]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["groups"] = [{**asdict(g), "drop": g.drop} for g in self.groups]
        return d


def classification_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"accuracy": _acc(y, pred), "balanced_accuracy": _balanced_acc(y, pred), "f1": _f1(y, pred)}


def paired_bootstrap_drop(
    y: np.ndarray, base: np.ndarray, cand: np.ndarray, *, resamples: int, confidence: float, seed: int
) -> Interval:
    """Interval for accuracy(base) - accuracy(cand), resampling rows jointly (paired)."""
    est = _acc(y, base) - _acc(y, cand)
    if resamples <= 0 or len(y) == 0:
        return Interval(est, est, est, confidence)
    rng = np.random.default_rng(seed)
    diff = (y == base).astype(np.float64) - (y == cand).astype(np.float64)
    idx = rng.integers(0, len(y), size=(resamples, len(y)))
    drops = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return Interval(est, float(np.quantile(drops, alpha)), float(np.quantile(drops, 1 - alpha)), confidence)


def compare(
    y: np.ndarray,
    base_pred: np.ndarray,
    cand_pred: np.ndarray,
    *,
    groups: pd.DataFrame | None = None,
    min_group_size: int = 30,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Everything the gate needs, computed once on the same held-out rows."""
    y, base_pred, cand_pred = map(np.asarray, (y, base_pred, cand_pred))
    base = classification_metrics(y, base_pred)
    cand = classification_metrics(y, cand_pred)
    group_metrics: list[GroupMetric] = []
    if groups is not None:
        for attr in groups.columns:
            values = groups[attr].astype(str).to_numpy()
            for g in sorted(set(values)):
                mask = values == g
                if mask.sum() < min_group_size:
                    continue
                group_metrics.append(
                    GroupMetric(
                        attr, g, int(mask.sum()), _acc(y[mask], base_pred[mask]), _acc(y[mask], cand_pred[mask])
                    )
                )
    if group_metrics:
        base["worst_group_accuracy"] = min(g.baseline_accuracy for g in group_metrics)
        cand["worst_group_accuracy"] = min(g.candidate_accuracy for g in group_metrics)
    flip = float((base_pred != cand_pred).mean()) if len(y) else 0.0
    cand["flip_rate"] = flip
    interval = paired_bootstrap_drop(y, base_pred, cand_pred, resamples=resamples, confidence=confidence, seed=seed)
    return Comparison(len(y), base, cand, group_metrics, {"accuracy": interval}, flip)


# --- probability-based evaluation (what the gate uses) -----------------------------------------

#: metrics that get a paired-bootstrap interval on their baseline -> candidate change
BOOTSTRAPPED = (
    "accuracy",
    "balanced_accuracy",
    "f1",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
    "dp_difference",
    "eo_difference",
)


def expected_calibration_error(y: np.ndarray, p1: np.ndarray, bins: int = 10) -> float:
    """ECE of the positive-class probability over equal-width bins (binary)."""
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((p1 * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(float(y[m].mean()) - float(p1[m].mean()))
    return float(err)


def _roc_auc(y: np.ndarray, p1: np.ndarray) -> float:
    """Mann-Whitney form of ROC-AUC (ties count half); NaN when one class is absent."""
    pos, neg = y == 1, y == 0
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p1, kind="mergesort")
    ranks = np.empty(len(p1), dtype=np.float64)
    sorted_p = p1[order]
    # average ranks for ties
    _, inv, counts = np.unique(sorted_p, return_inverse=True, return_counts=True)
    cum = np.cumsum(counts)
    avg = cum - (counts - 1) / 2.0
    ranks[order] = avg[inv]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _fairness_gaps(
    y: np.ndarray, pred: np.ndarray, sensitive: dict[str, np.ndarray] | None, min_group_size: int = 30
) -> tuple[float, float]:
    """Demographic parity difference and equalized odds difference, fairlearn's definitions
    (max-min selection rate; max of the TPR and FPR max-min gaps), per sensitive attribute over
    its groups of at least ``min_group_size`` rows; the largest gap over attributes is reported."""
    if not sensitive or len(y) == 0:
        return float("nan"), float("nan")
    dps, eos = [], []
    for values in sensitive.values():
        sel, tpr, fpr = [], [], []
        for g in np.unique(values):
            m = values == g
            if m.sum() < min_group_size:
                continue
            sel.append(float(pred[m].mean()))
            pos, neg = m & (y == 1), m & (y == 0)
            if pos.any():
                tpr.append(float(pred[pos].mean()))
            if neg.any():
                fpr.append(float(pred[neg].mean()))
        if len(sel) >= 2:
            dps.append(max(sel) - min(sel))
            eos.append(max((max(tpr) - min(tpr)) if tpr else 0.0, (max(fpr) - min(fpr)) if fpr else 0.0))
    return (float(max(dps)), float(max(eos))) if dps else (float("nan"), float("nan"))


def proba_metrics(
    y: np.ndarray, proba: np.ndarray, *, sensitive: dict[str, np.ndarray] | None = None, min_group_size: int = 30
) -> dict[str, float]:
    """Every overall metric of one model on labels ``y`` (binary: classes 0/1)."""
    pred = proba.argmax(1)
    out = classification_metrics(y, pred)
    p1 = proba[:, -1].astype(np.float64)
    eps = 1e-7
    p_true = np.clip(proba[np.arange(len(y)), y.astype(int)], eps, 1.0) if len(y) else np.array([])
    out["roc_auc"] = _roc_auc(y, p1)
    out["log_loss"] = float(-np.log(p_true).mean()) if len(y) else float("nan")
    out["brier"] = float(((p1 - (y == 1)) ** 2).mean()) if len(y) else float("nan")
    out["ece"] = expected_calibration_error(y, p1)
    out["dp_difference"], out["eo_difference"] = _fairness_gaps(y, pred, sensitive, min_group_size)
    return out


def _intersections(groups: pd.DataFrame, sensitive: list[str]) -> pd.DataFrame:
    """Single attributes plus pairwise intersections of the sensitive ones (e.g. sex&race)."""
    cols = {c: groups[c].astype(str) for c in groups.columns}
    for i, a in enumerate(sensitive):
        for b in sensitive[i + 1 :]:
            cols[f"{a}&{b}"] = groups[a].astype(str) + "&" + groups[b].astype(str)
    return pd.DataFrame(cols, index=groups.index)


def compare_proba(
    y: np.ndarray,
    base_proba: np.ndarray,
    cand_proba: np.ndarray,
    *,
    groups: pd.DataFrame | None = None,
    sensitive: list[str] | None = None,
    min_group_size: int = 30,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Baseline vs candidate on the same rows, from class probabilities.

    Overall metrics, fairness gaps (largest over the sensitive attributes), per-group
    accuracy for every attribute and pairwise intersection of sensitive attributes (groups of
    at least ``min_group_size`` rows, through fairlearn's MetricFrame), and paired-bootstrap
    intervals on the change of every metric in :data:`BOOTSTRAPPED` and of every group's accuracy.
    """
    y = np.asarray(y).astype(int)
    sens = [s for s in (sensitive or []) if groups is not None and s in groups.columns]
    fair_groups = {a: groups[a].astype(str).to_numpy() for a in sens} if groups is not None else {}
    base_pred, cand_pred = base_proba.argmax(1), cand_proba.argmax(1)
    cmp = compare(y, base_pred, cand_pred, groups=None, resamples=0)
    cmp.sensitive = sens
    cmp.baseline = proba_metrics(y, base_proba, sensitive=fair_groups, min_group_size=min_group_size)
    cmp.candidate = proba_metrics(y, cand_proba, sensitive=fair_groups, min_group_size=min_group_size)
    cmp.candidate["flip_rate"] = cmp.flip_rate
    table = _intersections(groups, sens) if groups is not None and len(groups.columns) else None
    if table is not None:
        cmp.groups = _group_metrics(y, base_pred, cand_pred, table, min_group_size)
        if cmp.groups:
            cmp.baseline["worst_group_accuracy"] = min(g.baseline_accuracy for g in cmp.groups)
            cmp.candidate["worst_group_accuracy"] = min(g.candidate_accuracy for g in cmp.groups)
    cmp.intervals = _bootstrap_changes(
        y,
        base_proba,
        cand_proba,
        fair_groups,
        cmp,
        table,
        min_group_size,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    return cmp


def _group_metrics(
    y: np.ndarray, base_pred: np.ndarray, cand_pred: np.ndarray, table: pd.DataFrame, min_group_size: int
) -> list[GroupMetric]:
    from fairlearn.metrics import MetricFrame, count

    out: list[GroupMetric] = []
    for attr in table.columns:
        feats = table[attr].to_numpy()
        mf_b = MetricFrame(
            metrics={"accuracy": _acc, "count": count}, y_true=y, y_pred=base_pred, sensitive_features=feats
        )
        mf_c = MetricFrame(metrics={"accuracy": _acc}, y_true=y, y_pred=cand_pred, sensitive_features=feats)
        for g, row in mf_b.by_group.iterrows():
            n = int(row["count"])
            if n < min_group_size:
                continue
            out.append(
                GroupMetric(str(attr), str(g), n, float(row["accuracy"]), float(mf_c.by_group.loc[g, "accuracy"]))
            )
    return out


def _bootstrap_changes(
    y: np.ndarray,
    base_proba: np.ndarray,
    cand_proba: np.ndarray,
    fair_groups: dict[str, np.ndarray],
    cmp: Comparison,
    table: pd.DataFrame | None,
    min_group_size: int,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Interval]:
    """Paired bootstrap: the same resampled rows for baseline and candidate.

    For a higher-is-better metric the interval is on the *drop* (baseline - candidate); for a
    lower-is-better one on the *increase* (candidate - baseline); so "worse" is always positive.
    Group intervals are keyed ``group:<attribute>=<group>`` (accuracy drop).
    """

    def change(metric: str, b: float, c: float) -> float:
        return b - c if metric in HIGHER_IS_BETTER else c - b

    intervals: dict[str, Interval] = {}
    point = {m: change(m, cmp.baseline[m], cmp.candidate[m]) for m in BOOTSTRAPPED}
    if resamples <= 0 or len(y) == 0:
        intervals = {m: Interval(v, v, v, confidence) for m, v in point.items()}
    else:
        rng = np.random.default_rng(seed)
        draws: dict[str, list[float]] = {m: [] for m in BOOTSTRAPPED}
        from quantgate.progress import track

        for _ in track(range(resamples), f"bootstrap ({resamples} resamples)", resamples):
            idx = rng.integers(0, len(y), size=len(y))
            fg = {a: v[idx] for a, v in fair_groups.items()}
            mb = proba_metrics(y[idx], base_proba[idx], sensitive=fg, min_group_size=min_group_size)
            mc = proba_metrics(y[idx], cand_proba[idx], sensitive=fg, min_group_size=min_group_size)
            for m in BOOTSTRAPPED:
                draws[m].append(change(m, mb[m], mc[m]))
        alpha = (1 - confidence) / 2
        for m in BOOTSTRAPPED:
            arr = np.asarray(draws[m], dtype=np.float64)
            arr = arr[~np.isnan(arr)]
            lo, hi = (
                (float(np.quantile(arr, alpha)), float(np.quantile(arr, 1 - alpha)))
                if len(arr)
                else (float("nan"), float("nan"))
            )
            intervals[m] = Interval(point[m], lo, hi, confidence)
    if table is not None:
        base_pred, cand_pred = base_proba.argmax(1), cand_proba.argmax(1)
        for g in cmp.groups:
            mask = table[g.attribute].to_numpy() == g.group
            intervals[f"group:{g.attribute}={g.group}"] = paired_bootstrap_drop(
                y[mask], base_pred[mask], cand_pred[mask], resamples=resamples, confidence=confidence, seed=seed
            )
    return intervals
