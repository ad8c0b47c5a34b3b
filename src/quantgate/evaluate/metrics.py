"""Metric math on arrays (pure): overall metrics, per-group metrics, flips, paired bootstrap."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


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
