"""How a regressor's output is read: one continuous value per row (pure numpy/pandas).

A model onboarded with ``task: tabular-regression`` or ``tensor-regression`` is read by the same
source kinds as a classifier (pt2, pickle, ...); only its output differs. The probe on a few
evaluation rows must show one finite float per row: several columns are a classifier's scores (or
a multi-output regressor, which quantgate does not govern), integers are labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from quantgate.errors import DataError
from quantgate.sources.base import SourceContext

#: how the card and the spec describe a regressor's output
VALUES_NOTE = "one continuous value per row, read as the prediction"


def regression_outputs(ctx: SourceContext, probe: Callable[[pd.DataFrame], Any]) -> dict[str, Any]:
    """Probe the model on the sample rows; return the spec keys of a regressor's output."""
    from quantgate.models.outputs import to_array

    if ctx.sample is None or not len(ctx.sample):
        raise DataError(f"no rows to probe {ctx.ref}'s output with", "the evaluation data is empty")
    arr = to_array(probe(ctx.sample))
    task = ctx.onboarding("task")
    if arr.shape[0] != len(ctx.sample):
        raise DataError(
            f"{ctx.ref} returned {arr.shape[0]} rows of output for {len(ctx.sample)} input rows",
            "quantgate governs models that answer one row per input row",
        )
    if arr.shape[1] != 1:
        raise DataError(
            f"{ctx.ref} is onboarded as {task} but returns {arr.shape[1]} values per row: a classifier's scores, "
            "or a multi-output regressor (not governed)",
            "for a classifier, set task: to a *-classification kind in the onboarding; a regressor must answer one "
            "value per row",
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(
            f"{ctx.ref} is onboarded as {task} but returns {arr.dtype} values (class labels?)",
            "for a classifier, set task: to a *-classification kind in the onboarding",
        )
    bad = ~np.isfinite(arr[:, 0])
    if bad.any():
        raise DataError(
            f"{ctx.ref} returned NaN or infinite predictions on {int(bad.sum())} of the {len(arr)} evaluation rows "
            "it was probed with",
            "drop or impute missing inputs in the evaluation data, or check the model",
        )
    return {"output": "values", "output_width": 1, "output_ambiguous": False, "output_note": VALUES_NOTE}
