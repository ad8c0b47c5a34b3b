"""A regressor's fp32 baseline against its candidate (pure numpy / sklearn / scipy).

- **Metrics** (sklearn.metrics): MAE, RMSE, R², mean relative error (sklearn's mean absolute
  percentage error, as a share: 0.1 is 10%). Each for fp32 and the candidate, and a paired-bootstrap
  interval on the change through the project's one bootstrap (:func:`metrics.paired_bootstrap`).
  A change is signed so that positive is worse: the rise of MAE, RMSE and relative error, the fall
  of R².
- **Per group**: MAE of every group of every group column and of every pairwise intersection of
  sensitive attributes, groups under ``min_group_size`` rows not judged (as accuracy groups are),
  each with the interval of its MAE increase.
- **Large deviations** (the flip audit's analogue): a prediction whose candidate value moves from
  fp32's by more than a tolerance (relative to fp32's value, or absolute in the target's units);
  their share, and where they concentrate: a group's share of the deviations against its share of
  the rows, with a one-sided binomial test Holm-adjusted over the groups, as the flip audit does.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quantgate.evaluate.metrics import Interval, _intersections, paired_bootstrap

#: the regression figures, and which of them are better when higher
REGRESSION_METRICS = ("mae", "rmse", "r2", "mean_relative_error")
HIGHER_IS_BETTER = frozenset({"r2"})
#: rate-like figures a ``max`` rule may bound (0..1)
DEVIATION_METRICS = ("large_deviation_share", "max_deviation_ratio")
DEFINITIONS: dict[str, str] = {
    "mae": "mean absolute error (sklearn mean_absolute_error), in the target's units",
    "rmse": "root mean squared error (sklearn root_mean_squared_error), in the target's units",
    "r2": "coefficient of determination (sklearn r2_score)",
    "mean_relative_error": "mean of |error| / |target| (sklearn mean_absolute_percentage_error, a share)",
    "large_deviation_share": "share of rows whose candidate prediction moves from fp32's by more than the tolerance",
    "max_deviation_ratio": "largest deviation-share / data-share ratio of a group whose excess is significant",
}
_NAN = float("nan")
#: |y| below this is treated as this in the relative error (sklearn's epsilon is machine epsilon)
_EPS = float(np.finfo(np.float64).eps)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and mean relative error of ``pred`` against ``y`` (sklearn.metrics)."""
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, r2_score, root_mean_squared_error

    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    if len(y) == 0:
        return dict.fromkeys(REGRESSION_METRICS, _NAN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R² of fewer than two rows: sklearn warns and answers NaN
        r2 = float(r2_score(y, pred)) if len(y) > 1 else _NAN
    return {
        "mae": float(mean_absolute_error(y, pred)),
        "rmse": float(root_mean_squared_error(y, pred)),
        "r2": r2,
        "mean_relative_error": float(mean_absolute_percentage_error(y, pred)),
    }


def change(metric: str, base: float, cand: float) -> float:
    """Positive = worse: the rise of an error, the fall of R²."""
    return base - cand if metric in HIGHER_IS_BETTER else cand - base


def _draws(y: np.ndarray, base: np.ndarray, cand: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The change of every metric on each resample ``idx`` (resamples, n): shape (4, resamples).
    The same formulas as sklearn's, vectorised over the resamples."""
    yy = y[idx]
    eb, ec = np.abs(base[idx] - yy), np.abs(cand[idx] - yy)
    mae_b, mae_c = eb.mean(axis=1), ec.mean(axis=1)
    rmse_b, rmse_c = np.sqrt((eb**2).mean(axis=1)), np.sqrt((ec**2).mean(axis=1))
    ss_tot = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_b = 1 - (eb**2).sum(axis=1) / ss_tot
        r2_c = 1 - (ec**2).sum(axis=1) / ss_tot
    r2_b[ss_tot == 0] = _NAN  # a resample of one repeated target: R² is undefined (counted as a NaN draw)
    r2_c[ss_tot == 0] = _NAN
    denom = np.maximum(np.abs(yy), _EPS)
    mre_b, mre_c = (eb / denom).mean(axis=1), (ec / denom).mean(axis=1)
    return np.stack([mae_c - mae_b, rmse_c - rmse_b, r2_b - r2_c, mre_c - mre_b])


@dataclass
class RegressionGroup:
    """MAE of one group for fp32 and the candidate, with the interval of its increase."""

    attribute: str
    group: str
    n: int
    baseline_mae: float
    candidate_mae: float
    interval: Interval | None = None

    @property
    def increase(self) -> float:
        return self.candidate_mae - self.baseline_mae

    @property
    def relative_increase(self) -> float:
        return self.increase / self.baseline_mae if self.baseline_mae > 0 else _NAN

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "increase": self.increase, "relative_increase": self.relative_increase}


@dataclass
class DeviationGroup:
    attribute: str
    group: str
    n: int
    deviations: int
    data_share: float
    deviation_share: float
    ratio: float
    p_value: float
    adjusted_p: float = 1.0
    significant: bool = False


@dataclass
class LargeDeviations:
    """Predictions that moved from fp32's by more than ``tolerance`` (relative to |fp32| when
    ``relative``, else in the target's units), and where they concentrate."""

    tolerance: float
    relative: bool
    n: int
    count: int
    max_abs_change: float
    groups: list[DeviationGroup] = field(default_factory=list)
    alpha: float = 0.05

    @property
    def share(self) -> float:
        return self.count / self.n if self.n else _NAN

    @property
    def max_ratio(self) -> float:
        """The largest over-representation among groups whose excess is significant (Holm); 1.0 when
        none is; NaN when no group was audited (none named, or all under the minimum size)."""
        if not self.groups:
            return _NAN
        return max((g.ratio for g in self.groups if g.significant), default=1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "groups"},
            "share": self.share,
            "max_ratio": self.max_ratio,
            "groups": [asdict(g) for g in self.groups],
        }


@dataclass
class RegressionComparison:
    """fp32 vs the candidate on the same rows: what the regression rules judge."""

    n: int
    baseline: dict[str, float]
    candidate: dict[str, float]
    intervals: dict[str, Interval] = field(default_factory=dict)  # change of each metric, positive = worse
    groups: list[RegressionGroup] = field(default_factory=list)
    deviations: LargeDeviations | None = None
    sensitive: list[str] = field(default_factory=list)

    def change(self, metric: str) -> float:
        return change(metric, self.baseline[metric], self.candidate[metric])

    def value(self, metric: str) -> float:
        """A candidate figure a ``max``/``min`` rule bounds."""
        if metric == "large_deviation_share":
            return self.deviations.share if self.deviations is not None else _NAN
        if metric == "max_deviation_ratio":
            return self.deviations.max_ratio if self.deviations is not None else _NAN
        return float(self.candidate.get(metric, _NAN))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "intervals": {k: asdict(v) for k, v in self.intervals.items()},
            "groups": [g.to_dict() for g in self.groups],
            "deviations": self.deviations.to_dict() if self.deviations is not None else None,
            "sensitive": self.sensitive,
        }


def large_deviations(
    base: np.ndarray,
    cand: np.ndarray,
    *,
    tolerance: float,
    relative: bool,
    table: pd.DataFrame | None = None,
    min_group_size: int = 30,
    alpha: float = 0.05,
) -> LargeDeviations:
    """Rows whose prediction moved by more than ``tolerance``, and a binomial test per group of
    ``table`` (groups of at least ``min_group_size`` rows) that they are over-represented there,
    Holm-adjusted over the groups (statsmodels), as :func:`quantgate.evaluate.audit.flip_audit` does."""
    from scipy.stats import binomtest

    base, cand = np.asarray(base, np.float64), np.asarray(cand, np.float64)
    moved = np.abs(cand - base)
    limit = tolerance * np.maximum(np.abs(base), _EPS) if relative else tolerance
    big = moved > limit
    n, k = len(base), int(big.sum())
    out = LargeDeviations(tolerance, relative, n, k, float(moved.max()) if n else _NAN, alpha=alpha)
    if table is None or not n:
        return out
    for attr in table.columns:
        col = table[attr].to_numpy()
        for g in sorted(pd.unique(col)):
            member = col == g
            ng = int(member.sum())
            if ng < min_group_size:
                continue
            gk = int(big[member].sum())
            data_share = ng / n
            dev_share = gk / k if k else 0.0
            p = float(binomtest(gk, k, data_share, alternative="greater").pvalue) if k else 1.0
            ratio = dev_share / data_share if data_share else _NAN
            out.groups.append(DeviationGroup(str(attr), str(g), ng, gk, data_share, dev_share, ratio, p))
    if out.groups:
        from statsmodels.stats.multitest import multipletests

        reject, adjusted = multipletests([g.p_value for g in out.groups], alpha=alpha, method="holm")[:2]
        for g, r, a in zip(out.groups, reject, adjusted, strict=True):
            g.adjusted_p, g.significant = float(a), bool(r)
    return out


def compare_regression(
    y: np.ndarray,
    base: np.ndarray,
    cand: np.ndarray,
    *,
    groups: pd.DataFrame | None = None,
    sensitive: list[str] | None = None,
    min_group_size: int = 30,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    deviation_tolerance: float = 0.05,
    deviation_relative: bool = True,
) -> RegressionComparison:
    """fp32 (``base``) and candidate (``cand``) predictions against targets ``y`` on the same rows:
    metrics, intervals on every change, per-group MAE (and pairwise intersections of the sensitive
    attributes) with intervals, large deviations and where they concentrate."""
    y, base, cand = (np.asarray(a, np.float64).ravel() for a in (y, base, cand))
    if not (len(y) == len(base) == len(cand)):
        raise ValueError(f"lengths differ: y {len(y)}, baseline {len(base)}, candidate {len(cand)}")
    b_m, c_m = regression_metrics(y, base), regression_metrics(y, cand)
    est = [change(m, b_m[m], c_m[m]) for m in REGRESSION_METRICS]
    ivs = paired_bootstrap(
        len(y),
        lambda idx: _draws(y, base, cand, idx),
        est,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    sens = [s for s in (sensitive or []) if groups is not None and s in groups.columns]
    table = _intersections(groups, sens) if groups is not None and len(groups.columns) else None
    out = RegressionComparison(len(y), b_m, c_m, dict(zip(REGRESSION_METRICS, ivs, strict=True)), sensitive=sens)
    if table is not None:
        out.groups = _group_errors(y, base, cand, table, min_group_size, resamples, confidence, seed)
        if out.groups:
            out.baseline["worst_group_mae"] = max(g.baseline_mae for g in out.groups)
            out.candidate["worst_group_mae"] = max(g.candidate_mae for g in out.groups)
    out.deviations = large_deviations(
        base,
        cand,
        tolerance=deviation_tolerance,
        relative=deviation_relative,
        table=table,
        min_group_size=min_group_size,
    )
    return out


def _group_errors(
    y: np.ndarray,
    base: np.ndarray,
    cand: np.ndarray,
    table: pd.DataFrame,
    min_group_size: int,
    resamples: int,
    confidence: float,
    seed: int,
) -> list[RegressionGroup]:
    """MAE per group (sorted), groups under ``min_group_size`` rows left out; the interval of each
    group's MAE increase resamples that group's rows (paired), through the one bootstrap."""
    from sklearn.metrics import mean_absolute_error

    out: list[RegressionGroup] = []
    for attr in table.columns:
        col = table[attr].to_numpy()
        for g in sorted(pd.unique(col)):
            rows = np.nonzero(col == g)[0]
            if len(rows) < min_group_size:
                continue
            yy, bb, cc = y[rows], base[rows], cand[rows]
            b_mae, c_mae = float(mean_absolute_error(yy, bb)), float(mean_absolute_error(yy, cc))
            diff = np.abs(cc - yy) - np.abs(bb - yy)
            iv = paired_bootstrap(
                len(rows),
                lambda idx, d=diff: d[idx].mean(axis=1)[None, :],
                [c_mae - b_mae],
                resamples=resamples,
                confidence=confidence,
                seed=seed,
            )[0]
            out.append(RegressionGroup(str(attr), str(g), len(rows), b_mae, c_mae, iv))
    return out
