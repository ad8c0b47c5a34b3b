"""Flip audit (Compression-Identified Exemplars, Hooker et al. 2019/2020).

Which examples changed prediction under quantization, and is any group over-represented among
them relative to its share of the data? A group whose flip share is well above its base share
is the one quantization hurts; the test is a one-sided binomial test of the group's count
among the flips against its base rate. Every audited group is one more test, so the p-values
are Holm-adjusted over the groups (statsmodels ``multipletests``): with a dozen groups, one
of them reaching p < 0.05 by chance is likely, and a blocking policy rule must not fire on that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class FlipGroup:
    attribute: str
    group: str
    n: int
    base_share: float
    flip_share: float
    flips: int
    ratio: float
    p_value: float
    over_represented: bool
    p_adjusted: float = float("nan")
    """Holm-adjusted over every audited group: what significance is judged on."""


@dataclass
class FlipAudit:
    n: int
    n_flips: int
    flip_rate: float
    alpha: float = 0.05
    groups: list[FlipGroup] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_ratio(self) -> float:
        """Largest flip-share / base-share ratio among groups whose excess is significant
        (binomial test, Holm-adjusted over the groups); 1.0 when no group is: a handful of flips
        proves nothing. NaN (not measured) when no group was audited at all: no group columns,
        or every group under the minimum size."""
        if not self.groups:
            return float("nan")
        significant = [g.ratio for g in self.groups if g.p_adjusted < self.alpha]
        return max(significant) if significant else 1.0

    @property
    def over_represented(self) -> list[FlipGroup]:
        return [g for g in self.groups if g.over_represented]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_ratio"] = self.max_ratio
        return d


def flip_audit(
    rows: pd.DataFrame,
    y: np.ndarray,
    base_proba: np.ndarray,
    cand_proba: np.ndarray,
    *,
    group_columns: list[str],
    min_group_size: int = 30,
    alpha: float = 0.05,
    min_ratio: float = 1.5,
    sample_size: int = 20,
    seed: int = 0,
) -> FlipAudit:
    """Audit the flips; ``rows`` are the raw evaluation inputs (kept for the reviewer's sample).

    Works for any number of classes ``k`` (probabilities ``(n, k)``, binary as two columns): a
    flip is a changed argmax. The sample's ``*_probability`` columns are P(class 1) for a binary
    model (as before) and, for ``k > 2``, each model's probability of the class it predicted.
    """
    from scipy.stats import binomtest

    base_proba, cand_proba = np.asarray(base_proba), np.asarray(cand_proba)
    if base_proba.ndim != 2 or base_proba.shape != cand_proba.shape or base_proba.shape[1] < 2:
        raise ValueError(f"probabilities must both have shape (n, k >= 2): {base_proba.shape}, {cand_proba.shape}")
    base_pred, cand_pred = base_proba.argmax(1), cand_proba.argmax(1)
    flipped = base_pred != cand_pred
    n, k = len(flipped), int(flipped.sum())
    audit = FlipAudit(n, k, k / n if n else 0.0, alpha)
    for attr in group_columns:
        if attr not in rows.columns:
            continue
        values = rows[attr].astype(str).to_numpy()
        for g in sorted(set(values)):
            m = values == g
            size = int(m.sum())
            if size < min_group_size:
                continue
            base_share = size / n
            gk = int((flipped & m).sum())
            flip_share = gk / k if k else 0.0
            ratio = flip_share / base_share if base_share else 0.0
            p = float(binomtest(gk, k, base_share, alternative="greater").pvalue) if k else 1.0
            audit.groups.append(FlipGroup(attr, g, size, base_share, flip_share, gk, ratio, p, False))
    if audit.groups:
        from statsmodels.stats.multitest import multipletests

        adjusted = multipletests([g.p_value for g in audit.groups], alpha=alpha, method="holm")[1]
        for fg, pa in zip(audit.groups, adjusted, strict=True):
            fg.p_adjusted = float(pa)
            fg.over_represented = bool(k and fg.ratio >= min_ratio and fg.p_adjusted < alpha)
    if k:
        rng = np.random.default_rng(seed)
        idx = np.flatnonzero(flipped)
        pick = np.sort(rng.choice(idx, size=min(sample_size, k), replace=False))
        sample = rows.iloc[pick].copy()
        sample["label"] = y[pick]
        sample["fp32_prediction"] = base_pred[pick]
        sample["fp32_probability"] = _shown_probability(base_proba[pick], base_pred[pick])
        sample["quantized_prediction"] = cand_pred[pick]
        sample["quantized_probability"] = _shown_probability(cand_proba[pick], cand_pred[pick])
        audit.sample = sample.astype(object).where(sample.notna(), None).to_dict(orient="records")
    return audit


def _shown_probability(proba: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """What a reviewer reads beside a prediction: P(class 1) for binary, else P(predicted class)."""
    p = proba[:, 1] if proba.shape[1] == 2 else proba[np.arange(len(pred)), pred]
    return np.asarray(p, dtype=np.float64).round(4)
