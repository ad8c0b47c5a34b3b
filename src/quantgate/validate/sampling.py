"""Draw a calibration set that the governance checks can pass: group coverage and no leakage.

A plain random sample of Adult misses the policy on its own: 2,000 random rows hold about 13
``Amer-Indian-Eskimo`` and 17 ``Other`` rows (minimum 30), and a handful of census records occur
in both the training and the test file. :func:`sample_calibration` is the helper a data owner
(or the demo) uses instead of ``df.sample``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from quantgate.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def sample_calibration(
    pool: pd.DataFrame,
    n: int,
    *,
    sensitive_attributes: Sequence[str] = (),
    min_group_rows: int = 30,
    exclude: pd.DataFrame | None = None,
    feature_columns: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """``n`` random rows of ``pool``, topped up so every group has ``min_group_rows`` rows.

    Rows whose features also occur in ``exclude`` (the evaluation split) are never drawn.
    Groups with fewer rows than that in the pool are taken whole (the governance check will
    still say so). Deterministic for a given ``seed``; the result may exceed ``n`` by the top-up.
    The rows keep ``pool``'s index, so the caller can drop them from the training data:
    ``train = pool.drop(calibration.index)``.
    """
    import numpy as np
    import pandas as pd

    from quantgate.validate.checks import row_hashes

    if n < 0:
        raise DataError(f"cannot sample {n} rows")
    missing = [a for a in sensitive_attributes if a not in pool.columns]
    if missing:
        raise DataError(f"sensitive attribute(s) not in the data: {', '.join(missing)}")
    cols = list(feature_columns) if feature_columns is not None else list(pool.columns)
    if pool.index.has_duplicates:
        raise DataError("the pool's index has duplicates", "reset it first: pool.reset_index(drop=True)")
    candidates = pool
    if exclude is not None and len(exclude):
        shared = [c for c in cols if c in exclude.columns]
        if shared:
            leak = np.isin(row_hashes(candidates, shared), np.unique(row_hashes(exclude, shared)))
            candidates = candidates.iloc[np.flatnonzero(~leak)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(candidates))
    chosen = np.zeros(len(candidates), dtype=bool)
    chosen[order[: min(n, len(candidates))]] = True
    for attr in sensitive_attributes:
        values = candidates[attr].to_numpy()
        for group in pd.unique(values[pd.notna(values)]):
            in_group = values == group
            short = min_group_rows - int((chosen & in_group).sum())
            if short <= 0:
                continue
            extra = [i for i in order if in_group[i] and not chosen[i]][:short]
            chosen[extra] = True
    picked = order[chosen[order]]  # keep the random order
    return candidates.iloc[picked]
