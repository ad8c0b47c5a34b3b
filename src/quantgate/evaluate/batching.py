"""Accuracy at the batch sizes the model will be served at, and how much predictions depend on the batch.

Dynamic int8 computes its activation scales per batch, so a row's prediction can change with the
other rows it is batched with: the same held-out snippets scored by the rt-sentiment candidate gave
accuracy 0.7529 in one batching and 0.7492 in another. The gate therefore judges the candidate's
predictions as a server would produce them: the rows in their order, in consecutive batches of each
served batch size (:meth:`WrappedModel.predict_proba_served`), against the fp32 predictions of the
same rows. Batch 1 is one call per row, so a seeded sample of at most ``max_rows`` rows (the same
rows for every batch size) is scored; the card says so.

The comparison at each batch size is the evaluation's own (:func:`compare_proba`, same bootstrap),
so the gate can apply its rules to each one (``policy.verdict.gate_candidate(served=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quantgate.evaluate.metrics import Comparison

if TYPE_CHECKING:
    from quantgate.models.wrapped import WrappedModel


@dataclass
class ServedBatching:
    """The candidate at each served batch size, on the same (possibly sampled) evaluation rows."""

    batch_sizes: list[int]
    rows: int
    of_rows: int
    seed: int
    comparisons: dict[int, Comparison] = field(default_factory=dict)
    changed_share: float = float("nan")
    """share of the candidate's predicted classes that differ between the smallest and the largest
    served batch size (NaN with a single batch size)"""
    changed_between: tuple[int, int] = (0, 0)
    max_proba_change: float = float("nan")
    """largest change of any class probability between those two batchings"""

    @property
    def sampled(self) -> bool:
        return self.rows < self.of_rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_sizes": list(self.batch_sizes),
            "rows": self.rows,
            "of_rows": self.of_rows,
            "sampled": self.sampled,
            "seed": self.seed,
            "changed_share": self.changed_share,
            "changed_between": list(self.changed_between),
            "max_proba_change": self.max_proba_change,
            "by_batch_size": [
                {
                    "batch_size": b,
                    "n": c.n,
                    "baseline_accuracy": c.baseline.get("accuracy"),
                    "candidate_accuracy": c.candidate.get("accuracy"),
                    "accuracy_drop": c.drop("accuracy"),
                    "interval": [c.intervals["accuracy"].low, c.intervals["accuracy"].high]
                    if "accuracy" in c.intervals
                    else None,
                    "flip_rate": c.flip_rate,
                }
                for b, c in sorted(self.comparisons.items())
            ],
        }


def sample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Positions of the rows scored at every served batch size: all of them, or a seeded sample of
    ``max_rows`` kept in their original order (pure)."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def changed_share(proba_a: np.ndarray, proba_b: np.ndarray) -> tuple[float, float]:
    """(share of rows whose predicted class differs, largest probability change) between two
    scorings of the same rows (pure)."""
    if len(proba_a) == 0:
        return float("nan"), float("nan")
    share = float((proba_a.argmax(1) != proba_b.argmax(1)).mean())
    return share, float(np.abs(proba_a - proba_b).max())


def served_batching(
    candidate: WrappedModel,
    rows: pd.DataFrame,
    y: np.ndarray,
    base_proba: np.ndarray,
    *,
    batch_sizes: list[int],
    max_rows: int | None,
    seed: int,
    compare: Any,
) -> ServedBatching:
    """Score ``rows`` (or a seeded sample) at each batch size and compare each with the fp32
    probabilities ``base_proba`` of the same rows through ``compare(y, base, cand) -> Comparison``
    (the evaluation's :func:`compare_proba` with its groups and bootstrap bound in)."""
    pos = sample_rows(len(rows), max_rows, seed)
    sample = rows.iloc[pos]
    out = ServedBatching(sorted(batch_sizes), len(pos), len(rows), seed)
    probas: dict[int, np.ndarray] = {}
    for b in out.batch_sizes:
        probas[b] = candidate.predict_proba_served(sample, b)
        out.comparisons[b] = compare(y[pos], base_proba[pos], probas[b], pos)
    if len(out.batch_sizes) > 1:
        lo, hi = out.batch_sizes[0], out.batch_sizes[-1]
        out.changed_share, out.max_proba_change = changed_share(probas[lo], probas[hi])
        out.changed_between = (lo, hi)
    return out
