"""Metric math on arrays (pure): overall metrics, per-group metrics, fairness gaps, paired bootstrap.

Where the numbers come from:

- **Point estimates** (what the card shows and the gate judges) come from the libraries that own
  the definitions: ``sklearn.metrics`` (accuracy, balanced accuracy, F1, ROC-AUC, log loss,
  Brier), ``fairlearn.metrics`` (demographic-parity and equalized-odds gaps, per-group accuracy
  through ``MetricFrame``). Only the expected calibration error is ours (no library has it).
- **Bootstrap draws** come from one helper, :func:`paired_bootstrap`, built on
  ``scipy.stats.bootstrap(paired=True, method="percentile")``. Calling sklearn/fairlearn once per
  resample costs seconds per metric on 16k rows, so each resample is scored by the *weighted* form
  of the same definitions (a resample is the original rows weighted by how often each was drawn),
  vectorised over all resamples at once. ``tests/unit/test_metrics_weighted.py`` pins every
  weighted form to the library function called on the resampled rows.

Multi-class: probabilities are ``(n, k)``, ``k >= 2`` (binary is two columns), labels ``0..k-1``.
F1 is the positive-class F1 for ``k == 2`` and macro F1 (over the classes present in the labels or
the predictions) for ``k > 2``; ROC-AUC is one-vs-rest macro for ``k > 2`` and NaN when a class is
absent from the labels; fairness gaps for ``k > 2`` are the largest one-vs-rest gap over classes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quantgate.evaluate.catalog import HIGHER_IS_BETTER

#: resampled row indices per vectorized call of a bootstrap statistic: each (resamples, n) array
#: it makes (indices, weights) stays under ~160 MB, so a million evaluation rows fit on a laptop
BOOTSTRAP_CELLS = 20_000_000
#: an interval computed from fewer finite bootstrap draws than this share is flagged
MIN_FINITE_SHARE = 0.9
#: equal-width confidence bins of the expected calibration error
ECE_BINS = 10
_NAN = float("nan")


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
    """A paired-bootstrap percentile interval on a change (positive = the candidate is worse).

    ``nan_draws`` counts the resamples on which the statistic was undefined (e.g. ROC-AUC on a
    resample holding one class); the bounds are percentiles of the finite draws only, so
    ``flagged`` is set when fewer than :data:`MIN_FINITE_SHARE` of the ``resamples`` were finite:
    such bounds describe a biased subset of resamples and must not be trusted.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    nan_draws: int = 0
    resamples: int = 0
    flagged: bool = False


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


# --- point estimates (sklearn / fairlearn) ------------------------------------------------------


def _n_classes(y: np.ndarray, pred: np.ndarray, n_classes: int | None) -> int:
    if n_classes is not None:
        return int(n_classes)
    top = max(int(y.max()) if len(y) else 0, int(pred.max()) if len(pred) else 0)
    return max(2, top + 1)


def classification_metrics(y: np.ndarray, pred: np.ndarray, n_classes: int | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy and F1 (sklearn). F1 is the class-1 F1 for two classes and
    macro F1 for more; ``n_classes`` defaults to what the labels and predictions show (at least 2).
    Empty input is undefined (NaN)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    y, pred = np.asarray(y), np.asarray(pred)
    if len(y) == 0:
        return {"accuracy": _NAN, "balanced_accuracy": _NAN, "f1": _NAN}
    k = _n_classes(y, pred, n_classes)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": sklearn then averages over the classes in y, as we want
        warnings.simplefilter("ignore", UserWarning)
        bacc = float(balanced_accuracy_score(y, pred))
    if k == 2:
        f1 = f1_score(y, pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0)
    else:
        f1 = f1_score(y, pred, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(y, pred)), "balanced_accuracy": bacc, "f1": float(f1)}


def _as_proba(proba: np.ndarray) -> np.ndarray:
    """(n, k) float64 probabilities whose rows sum to one.

    float32 model outputs are off by rounding (values a hair outside [0, 1], row sums 1 +- 1e-7,
    which sklearn warns about in float64): that noise is clipped and renormalised. Anything
    larger is an error, not a probability."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (n, k) with k >= 2, got {p.shape}")
    if not p.size:
        return p
    if not np.isfinite(p).all() or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ValueError("probabilities must be finite and within [0, 1]")
    p = np.clip(p, 0.0, 1.0)
    sums = p.sum(axis=1, keepdims=True)
    if np.abs(sums - 1).max() > 1e-3:
        worst = float(sums.ravel()[np.abs(sums - 1).argmax()])
        raise ValueError(f"probability rows must sum to one (a row sums to {worst})")
    return p / sums


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins.

    No library owns it, so it is ours: ``sum_b |sum_{i in b} (target_i - conf_i)| / n``. Binary
    (a 1-D positive-class probability or two columns): confidence = P(class 1), target = y == 1.
    Multi-class: top-label confidence = max probability, target = (argmax == y).
    """
    y = np.asarray(y)
    if len(y) == 0:
        return _NAN
    conf, target = _ece_inputs(y, np.asarray(proba, dtype=np.float64))
    return float(np.abs(_ece_bins(conf, bins).T @ (target - conf)).sum() / len(y))


def _ece_inputs(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if proba.ndim == 1:
        return proba, (y == 1).astype(np.float64)
    if proba.shape[1] == 2:
        return proba[:, 1], (y == 1).astype(np.float64)
    return proba.max(1), (proba.argmax(1) == y).astype(np.float64)


def _ece_bins(conf: np.ndarray, bins: int) -> np.ndarray:
    """(n, bins) one-hot of each row's confidence bin."""
    idx = np.clip((conf * bins).astype(int), 0, bins - 1)
    return (idx[:, None] == np.arange(bins)).astype(np.float64)


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """sklearn ROC-AUC: positive class for k == 2, one-vs-rest macro for k > 2; NaN (undefined)
    when a class is absent from ``y``."""
    from sklearn.metrics import roc_auc_score

    k = proba.shape[1]
    if len(np.unique(y)) < k:
        return _NAN
    if k == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(k))))


def _fair_classes(k: int) -> list[int]:
    """Classes whose one-vs-rest gap is measured: class 1 for binary (fairlearn's definition;
    class 0 gives the same gaps), every class for k > 2."""
    return [1] if k == 2 else list(range(k))


def _fairness_gaps(
    y: np.ndarray,
    pred: np.ndarray,
    sensitive: dict[str, np.ndarray] | None,
    min_group_size: int = 30,
    n_classes: int | None = None,
) -> tuple[float, float]:
    """Demographic-parity and equalized-odds differences (fairlearn's definitions: max-min
    selection rate; the larger of the max-min TPR and FPR gaps), per sensitive attribute over
    its groups of at least ``min_group_size`` rows; the largest gap over attributes (and, for
    k > 2, over the one-vs-rest gaps of every class) is reported. NaN when no attribute has two
    groups that large."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

    y, pred = np.asarray(y), np.asarray(pred)
    if not sensitive or len(y) == 0:
        return _NAN, _NAN
    k = _n_classes(y, pred, n_classes)
    dps: list[float] = []
    eos: list[float] = []
    for values in sensitive.values():
        names, counts = np.unique(values, return_counts=True)
        big = names[counts >= min_group_size]
        if len(big) < 2:
            continue
        keep = np.isin(values, big)
        groups, (yw, pw), weight = _compress(values[keep], y[keep], pred[keep])
        cs = _fair_classes(k)
        metrics: dict[str, Callable[..., float]] = {}
        for c in cs:
            for name, fn in (("sel", selection_rate), ("tpr", true_positive_rate), ("fpr", false_positive_rate)):
                metrics[f"{name}{c}"] = _one_vs_rest(fn, c)
        diff = MetricFrame(
            metrics=metrics,
            y_true=yw,
            y_pred=pw,
            sensitive_features=groups,
            sample_params={m: {"sample_weight": weight} for m in metrics},
        ).difference()
        dps.append(max(float(diff[f"sel{c}"]) for c in cs))
        eos.append(max(max(float(diff[f"tpr{c}"]), float(diff[f"fpr{c}"])) for c in cs))
    return (max(dps), max(eos)) if dps else (_NAN, _NAN)


def _one_vs_rest(fn: Callable[..., float], c: int) -> Callable[..., float]:
    def metric(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray) -> float:
        return float(fn((y_true == c).astype(int), (y_pred == c).astype(int), pos_label=1, sample_weight=sample_weight))

    return metric


def _compress(groups: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Collapse rows that agree on the group and every column into one row weighted by its count.

    fairlearn's MetricFrame spends Python time per row for every metric and group (seconds on 16k
    rows); on the collapsed rows with ``sample_weight`` its metrics give the same numbers.
    """
    names, code = np.unique(groups, return_inverse=True)
    keys, counts = np.unique(np.column_stack([code, *columns]), axis=0, return_counts=True)
    return names[keys[:, 0]], [keys[:, j] for j in range(1, keys.shape[1])], counts.astype(np.float64)


def proba_metrics(
    y: np.ndarray, proba: np.ndarray, *, sensitive: dict[str, np.ndarray] | None = None, min_group_size: int = 30
) -> dict[str, float]:
    """Every overall metric of one model on labels ``y`` (class indices ``0..k-1``) from its
    ``(n, k)`` probabilities. Log loss is over ``labels=range(k)``; Brier is sklearn's with
    ``scale_by_half=True`` (the classic Brier score for k == 2, half the summed squared error of
    the probability vector vs one-hot for k > 2, so it stays in [0, 1])."""
    from sklearn.metrics import brier_score_loss, log_loss

    y = np.asarray(y).astype(int)
    proba = _as_proba(proba)
    k = proba.shape[1]
    pred = proba.argmax(1)
    out = classification_metrics(y, pred, n_classes=k)
    if len(y) == 0:
        out.update(roc_auc=_NAN, log_loss=_NAN, brier=_NAN, ece=_NAN, dp_difference=_NAN, eo_difference=_NAN)
        return out
    labels = list(range(k))
    out["roc_auc"] = _roc_auc(y, proba)
    out["log_loss"] = float(log_loss(y, proba, labels=labels))
    if k == 2:
        out["brier"] = float(brier_score_loss(y, proba[:, 1], labels=labels))
    else:
        out["brier"] = float(brier_score_loss(y, proba, labels=labels, scale_by_half=True))
    out["ece"] = expected_calibration_error(y, proba)
    out["dp_difference"], out["eo_difference"] = _fairness_gaps(y, pred, sensitive, min_group_size, k)
    return out


# --- the one paired bootstrap -------------------------------------------------------------------


def paired_bootstrap(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    estimates: Sequence[float],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> list[Interval]:
    """Percentile intervals for ``len(estimates)`` statistics of the same ``n`` rows.

    Rows are resampled jointly for everything the statistic compares (paired: baseline and
    candidate see the same rows) by ``scipy.stats.bootstrap`` over the row indices:
    ``statistic(idx)`` gets resampled indices of shape ``(resamples, n)`` and returns draws of
    shape ``(m, resamples)``. The seed fixes the indices (``default_rng(seed).integers(0, n,
    (resamples, n))``), so a seed gives the same draws for every statistic of the same rows.
    scipy's interval is NaN as soon as one draw is; NaN draws are counted instead and the
    percentiles taken over the finite ones (see :class:`Interval`).
    """
    from scipy.stats import DegenerateDataWarning, bootstrap

    est = [float(e) for e in estimates]
    if resamples <= 0 or n < 2:  # nothing to resample: a single row resamples to itself
        return [Interval(e, e, e, confidence) for e in est]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # NaN draws: counted below
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap(
            (np.arange(n),),
            lambda idx, axis=-1: statistic(np.atleast_2d(idx)),
            paired=True,
            vectorized=True,
            n_resamples=resamples,
            batch=max(1, BOOTSTRAP_CELLS // n),  # memory O(batch * n); the same draws for a seed
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    draws = np.asarray(res.bootstrap_distribution, dtype=np.float64).reshape(len(est), resamples)
    alpha = (1 - confidence) / 2
    out = []
    for e, d in zip(est, draws, strict=True):
        finite = d[np.isfinite(d)]
        lo, hi = (
            (float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))) if len(finite) else (_NAN, _NAN)
        )
        nan_draws = resamples - len(finite)
        out.append(Interval(e, lo, hi, confidence, nan_draws, resamples, len(finite) < MIN_FINITE_SHARE * resamples))
    return out


def paired_bootstrap_drop(
    y: np.ndarray, base: np.ndarray, cand: np.ndarray, *, resamples: int, confidence: float, seed: int
) -> Interval:
    """Interval for accuracy(base) - accuracy(cand), resampling rows jointly (paired)."""
    from sklearn.metrics import accuracy_score

    y, base, cand = map(np.asarray, (y, base, cand))
    est = float(accuracy_score(y, base) - accuracy_score(y, cand)) if len(y) else _NAN
    diff = (y == base).astype(np.float64) - (y == cand).astype(np.float64)
    return paired_bootstrap(
        len(y),
        lambda idx: diff[idx].mean(axis=1)[None, :],
        [est],
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )[0]


# --- label-based comparison ---------------------------------------------------------------------


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
    """Baseline vs candidate from predicted labels only (no probabilities): accuracy-family
    metrics, per-group accuracy, flip rate and intervals on the overall and group accuracy drops.
    Labels and predictions are class indices ``0..k-1``."""
    y, base_pred, cand_pred = map(np.asarray, (y, base_pred, cand_pred))
    k = _n_classes(y, np.concatenate([base_pred, cand_pred]), None)
    base = classification_metrics(y, base_pred, k)
    cand = classification_metrics(y, cand_pred, k)
    group_metrics: list[GroupMetric] = []
    table: pd.DataFrame | None = None
    if groups is not None and len(groups.columns):
        table = pd.DataFrame({c: groups[c].astype(str) for c in groups.columns}, index=groups.index)
        group_metrics = _group_metrics(y, base_pred, cand_pred, table, min_group_size)
    if group_metrics:
        base["worst_group_accuracy"] = min(g.baseline_accuracy for g in group_metrics)
        cand["worst_group_accuracy"] = min(g.candidate_accuracy for g in group_metrics)
    flip = float((base_pred != cand_pred).mean()) if len(y) else 0.0
    cand["flip_rate"] = flip
    intervals = {
        "accuracy": paired_bootstrap_drop(
            y, base_pred, cand_pred, resamples=resamples, confidence=confidence, seed=seed
        )
    }
    if table is not None and group_metrics:
        intervals |= _group_intervals(
            y, base_pred, cand_pred, table, group_metrics, resamples=resamples, confidence=confidence, seed=seed
        )
    return Comparison(len(y), base, cand, group_metrics, intervals, flip)


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
    """Baseline vs candidate on the same rows, from ``(n, k)`` class probabilities.

    Overall metrics, fairness gaps (largest over the sensitive attributes), per-group
    accuracy for every attribute and pairwise intersection of sensitive attributes (groups of
    at least ``min_group_size`` rows, through fairlearn's MetricFrame), and paired-bootstrap
    intervals on the change of every metric in :data:`BOOTSTRAPPED` and of every group's accuracy.
    """
    y = np.asarray(y).astype(int)
    base_proba, cand_proba = _as_proba(base_proba), _as_proba(cand_proba)
    if base_proba.shape != cand_proba.shape or base_proba.shape[0] != len(y):
        raise ValueError(f"shapes differ: y {y.shape}, baseline {base_proba.shape}, candidate {cand_proba.shape}")
    sens = [s for s in (sensitive or []) if groups is not None and s in groups.columns]
    fair_groups = {a: groups[a].astype(str).to_numpy() for a in sens} if groups is not None else {}
    base_pred, cand_pred = base_proba.argmax(1), cand_proba.argmax(1)
    flip = float((base_pred != cand_pred).mean()) if len(y) else 0.0
    baseline = proba_metrics(y, base_proba, sensitive=fair_groups, min_group_size=min_group_size)
    candidate = proba_metrics(y, cand_proba, sensitive=fair_groups, min_group_size=min_group_size)
    candidate["flip_rate"] = flip
    cmp = Comparison(len(y), baseline, candidate, flip_rate=flip, sensitive=sens)
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
    """Per-group accuracy of both models: fairlearn's MetricFrame (on rows collapsed with their
    counts as weights, see :func:`_compress`), groups in sorted order."""
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    def accuracy_of(col: int) -> Callable[..., float]:
        def metric(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray) -> float:
            return float(accuracy_score(y_true, y_pred[:, col], sample_weight=sample_weight))

        return metric

    def rows(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray) -> float:
        return float(sample_weight.sum())

    metrics = {"baseline": accuracy_of(0), "candidate": accuracy_of(1), "count": rows}
    out: list[GroupMetric] = []
    for attr in table.columns:
        groups, (yw, bw, cw), weight = _compress(table[attr].to_numpy(), y, base_pred, cand_pred)
        mf = MetricFrame(
            metrics=metrics,
            y_true=yw,
            y_pred=np.column_stack([bw, cw]),
            sensitive_features=groups,
            sample_params={m: {"sample_weight": weight} for m in metrics},
        )
        for g, row in mf.by_group.iterrows():
            n = round(row["count"])
            if n < min_group_size:
                continue
            out.append(GroupMetric(str(attr), str(g), n, float(row["baseline"]), float(row["candidate"])))
    return out


def _change(metric: str, base: Any, cand: Any) -> Any:
    """Positive = worse: the drop of a higher-is-better metric, the rise of a lower-is-better one."""
    return base - cand if metric in HIGHER_IS_BETTER else cand - base


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
    Group intervals are keyed ``group:<attribute>=<group>`` (accuracy drop), each resampling the
    group's own rows with the same seed.
    """
    point = [_change(m, cmp.baseline[m], cmp.candidate[m]) for m in BOOTSTRAPPED]
    b_rows = _WeightedModel(y, base_proba, fair_groups, min_group_size)
    c_rows = _WeightedModel(y, cand_proba, fair_groups, min_group_size)

    def statistic(idx: np.ndarray) -> np.ndarray:
        w = _counts(idx, len(y))
        mb, mc = b_rows.metrics(w), c_rows.metrics(w)
        return np.stack([_change(m, mb[m], mc[m]) for m in BOOTSTRAPPED])

    ivs = paired_bootstrap(len(y), statistic, point, resamples=resamples, confidence=confidence, seed=seed)
    intervals = dict(zip(BOOTSTRAPPED, ivs, strict=True))
    if table is not None:
        base_pred, cand_pred = base_proba.argmax(1), cand_proba.argmax(1)
        intervals |= _group_intervals(
            y, base_pred, cand_pred, table, cmp.groups, resamples=resamples, confidence=confidence, seed=seed
        )
    return intervals


def _group_intervals(
    y: np.ndarray,
    base_pred: np.ndarray,
    cand_pred: np.ndarray,
    table: pd.DataFrame,
    groups: list[GroupMetric],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Interval]:
    """Accuracy-drop interval of every group, keyed ``group:<attribute>=<group>``: each resamples
    the group's own rows with the same seed."""
    out = {}
    for g in groups:
        mask = table[g.attribute].to_numpy() == g.group
        out[f"group:{g.attribute}={g.group}"] = paired_bootstrap_drop(
            y[mask], base_pred[mask], cand_pred[mask], resamples=resamples, confidence=confidence, seed=seed
        )
    return out


# --- weighted forms: every resample at once ------------------------------------------------------


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Resampled row indices (B, n) -> how often each row was drawn, (B, n) float64 weights."""
    b = idx.shape[0]
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray, undefined: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), undefined)


def _weighted_auc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC of ``score`` for ``positive`` under row weights ``w`` (B, n): the probability that
    a positive outscores a negative, ties counting half (what sklearn's trapezoidal AUC equals);
    NaN where a resample has no positive or no negative."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ws = w[:, order]
    pos = positive[order]
    gp = np.add.reduceat(ws * pos, starts, axis=1)
    gn = np.add.reduceat(ws * ~pos, starts, axis=1)
    below = np.cumsum(gn, axis=1) - gn
    num = (gp * (below + 0.5 * gn)).sum(axis=1)
    return _ratio(num, gp.sum(axis=1) * gn.sum(axis=1), _NAN)


def _nanrange(x: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
    """max - min of ``x`` over ``valid`` entries along ``axis`` (NaN where none is valid)."""
    hi = np.where(valid, x, -np.inf).max(axis=axis)
    lo = np.where(valid, x, np.inf).min(axis=axis)
    return np.where(np.isfinite(hi) & np.isfinite(lo), hi - lo, _NAN)


def _cross(member: np.ndarray, per_class: np.ndarray) -> np.ndarray:
    """(n, G) group membership x (n, C) per-class indicator -> (n, G*C), one column per pair."""
    return (member[:, :, None] * per_class[:, None, :]).reshape(member.shape[0], -1)


class _WeightedModel:
    """One model's row-level quantities, so that every metric of every resample is a few matrix
    products with the (B, n) weight matrix. Mirrors :func:`proba_metrics` definition by definition."""

    def __init__(self, y: np.ndarray, proba: np.ndarray, sensitive: dict[str, np.ndarray], min_group_size: int):
        n, k = proba.shape
        self.k, self.min_group_size = k, min_group_size
        self.y, self.proba = y, proba
        classes = np.arange(k)
        self.onehot_y = (y[:, None] == classes).astype(np.float64)
        pred = proba.argmax(1)
        self.onehot_p = (pred[:, None] == classes).astype(np.float64)
        self.correct = (pred == y).astype(np.float64)
        self.hit = self.onehot_y * self.onehot_p  # (n, k): row is a hit of its class
        eps = np.finfo(proba.dtype).eps  # sklearn's log_loss clip
        p_true = proba[np.arange(n), y] if n else np.zeros(0)
        self.row_log_loss = -np.log(np.clip(p_true, eps, 1 - eps))
        if k == 2:
            self.row_brier = (proba[:, 1] - (y == 1)) ** 2
        else:
            self.row_brier = 0.5 * ((self.onehot_y - proba) ** 2).sum(axis=1)
        conf, target = _ece_inputs(y, proba)
        self.ece_rows = _ece_bins(conf, ECE_BINS) * (target - conf)[:, None]
        cs = _fair_classes(k)
        self.fair: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for values in sensitive.values():
            member = (values[:, None] == np.unique(values)).astype(np.float64)  # (n, G)
            yc, pc = self.onehot_y[:, cs], self.onehot_p[:, cs]  # (n, C)
            sel, pos, tp, fp = (_cross(member, a) for a in (pc, yc, yc * pc, (1 - yc) * pc))
            self.fair.append((member, sel, pos, tp, fp))

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        support, hits = w @ self.onehot_y, w @ self.hit
        predicted = w @ self.onehot_p
        recall = _ratio(hits, support, _NAN)
        present_y = support > 0
        out = {
            "accuracy": w @ self.correct / total,
            "balanced_accuracy": np.where(present_y, recall, 0.0).sum(1) / present_y.sum(1),
        }
        if self.k == 2:
            out["f1"] = _ratio(2 * hits[:, 1], support[:, 1] + predicted[:, 1], 0.0)
        else:
            f1 = _ratio(2 * hits, support + predicted, 0.0)
            present = (support + predicted) > 0
            out["f1"] = (f1 * present).sum(1) / present.sum(1)
        if self.k == 2:
            out["roc_auc"] = _weighted_auc(w, self.y == 1, self.proba[:, 1])
        else:
            out["roc_auc"] = np.mean([_weighted_auc(w, self.y == c, self.proba[:, c]) for c in range(self.k)], axis=0)
        out["log_loss"] = w @ self.row_log_loss / total
        out["brier"] = w @ self.row_brier / total
        out["ece"] = np.abs(w @ self.ece_rows).sum(axis=1) / total
        out["dp_difference"], out["eo_difference"] = self._gaps(w)
        return out

    def _gaps(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = w.shape[0]
        dps, eos = [], []
        for member, sel, pos, tp, fp in self.fair:
            g = member.shape[1]
            size = w @ member  # (B, G)
            valid = (size >= self.min_group_size)[:, :, None]  # (B, G, 1)
            shape = (b, g, -1)
            rate = _ratio((w @ sel).reshape(shape), size[:, :, None], _NAN)
            wpos = (w @ pos).reshape(shape)
            wneg = size[:, :, None] - wpos
            tpr = _ratio((w @ tp).reshape(shape), wpos, 0.0)  # fairlearn: no positives -> rate 0
            fpr = _ratio((w @ fp).reshape(shape), wneg, 0.0)
            enough = valid.sum(axis=1) >= 2  # (B, 1): an attribute needs two groups large enough
            dp = np.where(enough, _nanrange(rate, valid, axis=1), _NAN).max(axis=1)  # over classes
            eo = np.where(enough, np.maximum(_nanrange(tpr, valid, 1), _nanrange(fpr, valid, 1)), _NAN).max(axis=1)
            dps.append(dp)
            eos.append(eo)
        if not dps:
            return np.full(b, _NAN), np.full(b, _NAN)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            return np.nanmax(np.stack(dps), axis=0), np.nanmax(np.stack(eos), axis=0)
