"""Data drift between a reference window and a live window, computed by Evidently.

Evidently (0.7, new API) does the statistics and renders the HTML report; this module reads its
public result objects into a small typed result that the monitor can gate on, log and alert with, so the
rest of quantgate never depends on the shape of Evidently's output.

Evidently is imported inside :func:`detect_drift` only: it takes seconds to import, and
``import quantgate.monitor`` must stay cheap for the CLI.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quantgate.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ColumnKind = Literal["numerical", "categorical", "text"]
ScoreKind = Literal["p_value", "distance"]
#: ``ok``: every column asked for was compared; ``partial``: some were not (``not_compared`` says
#: which and why); ``not run``: none was, so there is no verdict at all (never "no drift")
DriftStatus = Literal["ok", "partial", "not run"]


class ColumnDrift(BaseModel):
    """The drift verdict of one column, as Evidently decided it."""

    model_config = ConfigDict(frozen=True)

    column: str
    kind: ColumnKind
    stattest: str
    score: float
    threshold: float
    score_kind: ScoreKind
    drifted: bool


class DriftResult(BaseModel):
    """Dataset-level drift verdict, per-column details, and the Evidently HTML report.

    ``html`` is large (several MB, the report embeds its JS), so it is kept out of ``repr`` and
    out of :meth:`to_dict`; write it with :meth:`write_html`. It is empty when Evidently was not
    run (no column could be compared).

    The verdict is over the columns Evidently answered for; every column asked for that was not
    compared is in ``not_compared`` with the reason. When none was compared, ``status`` is
    ``not run`` and ``dataset_drift`` is None: no verdict, never "no drift".
    """

    model_config = ConfigDict(frozen=True)

    dataset_drift: bool | None
    drifted_share: float
    n_drifted: int
    n_columns: int
    drift_share: float
    stattest_threshold: float | None
    n_reference: int
    n_current: int
    #: rows Evidently compared when a window was larger than ``max_rows`` (a uniform sample); else None
    sampled_reference: int | None = None
    sampled_current: int | None = None
    evidently_version: str
    columns: list[ColumnDrift]
    #: columns asked for but not compared, with why (empty in a window, no answer from Evidently)
    not_compared: dict[str, str] = Field(default_factory=dict)
    html: str = Field(repr=False)
    #: Evidently's Snapshot of the run (for the workspace); not serialised
    snapshot: Any = Field(default=None, repr=False, exclude=True)

    @property
    def status(self) -> DriftStatus:
        if not self.columns:
            return "not run"
        return "partial" if self.not_compared else "ok"

    @property
    def not_compared_text(self) -> str:
        """``"age (all values missing in the current window); sex (...)"``, for lines and alerts."""
        return "; ".join(f"{name} ({why})" for name, why in self.not_compared.items())

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the columns whose test fired, for alerts and logs."""
        return [c.column for c in self.columns if c.drifted]

    def write_html(self, path: str | Path) -> Path:
        """Write the Evidently report (parents created), so an alert can link to it."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.html, encoding="utf-8")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary without the HTML, for run logs, MLflow and alert details."""
        data = self.model_dump(mode="json", exclude={"html", "snapshot"})
        data["drifted_columns"] = self.drifted_columns
        data["status"] = self.status
        return data


def _infer_kinds(
    df: pd.DataFrame,
    columns: list[str],
    numeric: list[str] | None,
    categorical: list[str] | None,
    text: list[str] | None,
) -> dict[str, ColumnKind]:
    """Column kinds: explicit lists win, the rest follow the dtype (numbers vs everything else).

    Done here rather than by Evidently's auto-mapping so a column's kind (and thus its test)
    does not flip between windows with different cardinalities.
    """
    import pandas as pd

    kinds: dict[str, ColumnKind] = {}
    for names, kind in ((numeric, "numerical"), (categorical, "categorical"), (text, "text")):
        for name in names or []:
            if name in kinds and kinds[name] != kind:
                raise DataError(
                    f"column '{name}' is listed as both {kinds[name]} and {kind}",
                    "list each column in one of numeric / categorical / text",
                )
            kinds[name] = kind  # type: ignore[assignment]
    for name in columns:
        if name in kinds:
            continue
        dtype = df[name].dtype
        is_number = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        kinds[name] = "numerical" if is_number else "categorical"
    return {name: kinds[name] for name in columns}


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _score_kind(drifted: bool, score: float, threshold: float) -> ScoreKind:
    """Which way the score reads, from Evidently's own verdict rather than the test's name.

    A p-value test drifts when ``score < threshold``, a distance when ``score >= threshold``;
    the two rules disagree on every (score, threshold) pair, so the verdict tells them apart.
    """
    return "p_value" if drifted == (score < threshold) else "distance"


def _read_results(
    snapshot: Any, kinds: dict[str, ColumnKind], not_compared: dict[str, str]
) -> tuple[list[ColumnDrift], float | None]:
    """Per-column results through Evidently 0.7's result objects (no snapshot dict, no type names).

    Each metric of the run is recognised by its class (``ValueDrift``, ``DriftedColumnsCount``);
    the value is the ``SingleValue``/``CountValue`` result, the verdict the ``ValueDrift`` test's
    ``TestStatus`` (FAIL = drifted; present because the report runs with ``include_tests=True``),
    and the method and threshold Evidently resolved for the column are the result's metric config
    (what its own report shows). A column whose metric carries no test is added to
    ``not_compared`` instead.
    """
    from evidently.core.metric_types import TestStatus
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    results: list[ColumnDrift] = []
    count_share: float | None = None
    for metric_id, result in snapshot.metric_results.items():
        metric = snapshot.context.get_metric(metric_id).to_metric()
        if isinstance(metric, DriftedColumnsCount):
            count_share = _as_float(result.share.value)
            continue
        if not isinstance(metric, ValueDrift):
            continue
        resolved = result.metric_value_location.metric.params
        score = _as_float(result.value)
        threshold = _as_float(resolved.get("threshold", metric.threshold))
        statuses = [t.status for t in result.tests]
        if not statuses:
            not_compared[str(metric.column)] = "Evidently returned no drift test"
            continue
        drifted = TestStatus.FAIL in statuses
        results.append(
            ColumnDrift(
                column=metric.column,
                kind=kinds.get(metric.column, "categorical"),
                stattest=str(resolved.get("method") or metric.method or "unknown"),
                score=score,
                threshold=threshold,
                score_kind=_score_kind(drifted, score, threshold),
                drifted=drifted,
            )
        )
    return results, count_share


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    text: list[str] | None = None,
    drift_share: float = 0.5,
    stattest_threshold: float | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> DriftResult:
    """Run Evidently's per-column drift tests and decide dataset drift.

    ``columns`` defaults to every column of ``reference`` that ``current`` also has (plus any
    listed in numeric/categorical/text). Stattests are Evidently's defaults for the sample size
    and column kind; ``stattest_threshold`` overrides every column's threshold. The dataset has
    drifted when the share of drifted columns is >= ``drift_share`` (Evidently's own rule).

    ``max_rows``: a window (reference or current) larger than this is compared through a uniform
    random sample of that many rows (seeded). Evidently's tests for large samples are distances
    (Wasserstein, Jensen-Shannon), which a 100k-row sample estimates closely; the result says
    how many rows were compared (``sampled_*``).

    A column with no value in either window is not compared, nor one Evidently gives no verdict
    for; both are named in ``not_compared``, and the verdict is over the rest. When no column is
    left the result is ``not run`` (``dataset_drift`` None), never "no drift".
    """
    if not 0.0 < drift_share <= 1.0:
        raise DataError(f"drift_share must be in (0, 1], got {drift_share}")
    if len(reference) == 0 or len(current) == 0:
        raise DataError(
            f"drift needs rows in both windows (reference: {len(reference)}, current: {len(current)})",
            "widen the monitoring window or wait for more inferences",
        )
    if columns is None:
        listed = [*(numeric or []), *(categorical or []), *(text or [])]
        columns = [c for c in reference.columns if c in current.columns]
        columns += [c for c in listed if c not in columns]
    columns = list(dict.fromkeys(str(c) for c in columns))
    if not columns:
        raise DataError("no columns to compare", "pass columns=[...] that both windows share")
    for name, df in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(f"{name} data lacks column(s): {', '.join(missing)}")
    kinds = _infer_kinds(reference, columns, numeric, categorical, text)
    n_reference, n_current = len(reference), len(current)
    sampled: dict[str, int | None] = {"reference": None, "current": None}
    if max_rows is not None:
        if len(reference) > max_rows:
            reference = reference[columns].sample(n=max_rows, random_state=seed)
            sampled["reference"] = max_rows
        if len(current) > max_rows:
            current = current[columns].sample(n=max_rows, random_state=seed + 1)
            sampled["current"] = max_rows

    # a column with no value in a window cannot be compared (Evidently refuses it): named, not a crash
    not_compared: dict[str, str] = {}
    for name, df in (("reference data", reference), ("current window", current)):
        for col in columns:
            if col not in not_compared and df[col].isna().all():
                not_compared[col] = f"all values missing in the {name}"
    compared = [c for c in columns if c not in not_compared]
    kinds = {c: k for c, k in kinds.items() if c in compared}

    import evidently

    result = {
        "drift_share": drift_share,
        "stattest_threshold": stattest_threshold,
        "n_reference": n_reference,
        "n_current": n_current,
        "sampled_reference": sampled["reference"],
        "sampled_current": sampled["current"],
        "evidently_version": str(evidently.__version__),
    }
    if not compared:
        log.warning("drift not run: no column could be compared (%s)", not_compared)
        return DriftResult(
            dataset_drift=None,
            drifted_share=0.0,
            n_drifted=0,
            n_columns=0,
            columns=[],
            not_compared=not_compared,
            html="",
            **result,
        )
    snapshot = _run_evidently(reference, current, kinds, drift_share, stattest_threshold)
    per_column, evidently_share = _read_results(snapshot, kinds, not_compared)
    got = {c.column for c in per_column}
    for col in compared:
        if col not in got and col not in not_compared:
            not_compared[col] = "Evidently returned no drift result"
    if not_compared:
        log.warning("drift compared %d of %d columns; not compared: %s", len(got), len(columns), not_compared)
    n_columns = len(per_column)
    n_drifted = sum(c.drifted for c in per_column)
    share = n_drifted / n_columns if n_columns else 0.0
    if not not_compared and evidently_share is not None and not math.isclose(share, evidently_share, abs_tol=1e-9):
        log.warning("drifted share %.4f differs from Evidently's %.4f", share, evidently_share)

    return DriftResult(
        dataset_drift=share >= drift_share if n_columns else None,
        drifted_share=share,
        n_drifted=n_drifted,
        n_columns=n_columns,
        columns=per_column,
        not_compared={c: not_compared[c] for c in columns if c in not_compared},
        html=snapshot.get_html_str(as_iframe=False),
        snapshot=snapshot,
        **result,
    )


def _run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, ColumnKind],
    drift_share: float,
    stattest_threshold: float | None,
) -> Any:
    """Evidently's DataDriftPreset over the ``kinds`` columns, with its tests (the per-column verdicts)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(kinds)
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
        text_columns=[c for c, k in kinds.items() if k == "text"],
    )
    ref_ds = Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition)
    cur_ds = Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition)
    report = Report(
        [DataDriftPreset(columns=columns, drift_share=drift_share, threshold=stattest_threshold)],
        include_tests=True,
    )
    return report.run(current_data=cur_ds, reference_data=ref_ds)
