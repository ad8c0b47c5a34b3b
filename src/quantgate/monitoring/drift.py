"""Drift: the window against the reference, per column, through Evidently.

The verdict is over the columns Evidently answered for. A column left out (empty in a window, no
answer from Evidently) is named with why; when none is left, drift is **not run** and alerts: a
window nobody could compare is never "no drift".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quantgate.monitoring.context import Notice, not_run_notice
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.score import Scored

if TYPE_CHECKING:
    from quantgate.monitor.drift import DriftResult, DriftStatus


@dataclass(frozen=True)
class DriftCheck:
    result: DriftResult = field(repr=False)
    #: the spec's ``drift_share``: the dataset drifted when this share of columns or more did
    drift_share: float
    rows: int

    @property
    def status(self) -> DriftStatus:
        return self.result.status

    @property
    def drifted(self) -> bool:
        """True only on a verdict of drift (False for "no drift" and for "not run")."""
        return self.result.dataset_drift is True

    @property
    def line(self) -> str:
        r = self.result
        if self.status == "not run":
            return f"drift: NOT RUN, no column could be compared: {r.not_compared_text}"
        verdict = "DRIFT" if self.drifted else "no drift"
        sign = ">=" if self.drifted else "<"
        drifted = f": {', '.join(r.drifted_columns[:8])}" if r.drifted_columns else ""
        left_out = f"; not compared: {r.not_compared_text}" if r.not_compared else ""
        return (
            f"drift: {r.n_drifted}/{r.n_columns} columns drifted (share {r.drifted_share:.2f} {sign} "
            f"{self.drift_share}) -> {verdict}{drifted}{left_out}"
        )

    @property
    def notices(self) -> tuple[Notice, ...]:
        r = self.result
        if self.status == "not run":
            why = f"no column could be compared ({r.not_compared_text})"
            return (not_run_notice("drift", "drift", why, "drift.json", not_compared=r.not_compared, rows=self.rows),)
        if not self.drifted:
            return ()
        left_out = f"; not compared: {r.not_compared_text}" if r.not_compared else ""
        return (
            Notice(
                kind="drift",
                summary=f"{r.n_drifted}/{r.n_columns} columns drifted (share {r.drifted_share:.2f} >= "
                f"{self.drift_share}): {', '.join(r.drifted_columns[:8])}{left_out}",
                details={
                    "drifted_columns": r.drifted_columns,
                    "rows": self.rows,
                    **({"not_compared": r.not_compared} if r.not_compared else {}),
                },
                report="drift_report.html",
            ),
        )


def check_drift(served: Served, scored: Scored) -> DriftCheck:
    from quantgate.monitor.drift import detect_drift

    spec = served.spec
    result = detect_drift(
        scored.reference,
        scored.current,
        drift_share=spec.drift_share,
        categorical=["prediction"],
        max_rows=spec.drift_max_rows,
    )
    return DriftCheck(result, spec.drift_share, len(scored.current))
