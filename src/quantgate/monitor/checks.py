"""The production checks of one monitoring window, beside drift: disagreement with the fp32 source,
accuracy on delayed labels, and accuracy estimated before labels arrive.

Each check returns ``{"status": "ok", ...}`` or ``{"status": "not run", "reason": ...}``: a check
that could not run says so in the run's tags, its ``production.json`` and the CLI, never silently.
A check that crashed (an unexpected error, not a known stop such as "no labels yet") also has
``"error"``, the error's line, and alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantgate.errors import QuantgateError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class WindowChecks:
    disagreement: dict[str, Any]
    labels: dict[str, Any]
    estimate: dict[str, Any]
    gate: dict[str, Any] | None = None
    #: Evidently snapshots made here (for the HTML artifacts and the workspace), by name
    snapshots: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"disagreement": self.disagreement, "labels": self.labels, "estimate": self.estimate, "gate": self.gate}


def _not_run(reason: str, error: str | None = None) -> dict[str, Any]:
    return {"status": "not run", "reason": reason, **({"error": error} if error else {})}


def _crashed(what: str, exc: Exception) -> dict[str, Any]:
    """An unexpected error: logged with its traceback, reported "not run" with the error's line, alerting."""
    from quantgate.monitor.production import error_line

    log.error("%s check failed: %s", what, error_line(exc), exc_info=True)
    return _not_run(error_line(exc), error=error_line(exc))


def _guard(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; an expected stop (QuantgateError) is reported as not run, an unexpected error
    as not run with its ``error`` line (which alerts)."""
    try:
        return {"status": "ok", **fn()}
    except QuantgateError as exc:
        return _not_run(str(exc))
    except Exception as exc:  # drift still counts; the crash alerts
        return _crashed(what, exc)


def run_window_checks(
    cl: Any,
    mv: Any,
    window: pd.DataFrame,
    served: pd.DataFrame,
    classes: list[Any],
    *,
    sample: int,
    alpha: float,
    settings: Any = None,
    served_proba: Callable[[pd.DataFrame], Any] | None = None,
    estimate_sample: int = 20_000,
    seed: int = 0,
) -> WindowChecks:
    """``window``: the inputs (with request_id/request_row when read from the log); ``served``: the
    served outputs row by row (``label``, and ``probability`` for a binary model).

    ``served_proba``: the served version's ``predict_proba`` (inputs -> (n, k) probabilities). The
    log keeps a binary model's positive-class probability but only the top score of a multi-class
    one, so for k > 2 a uniform sample of ``estimate_sample`` window rows is re-scored with it for
    the label-free estimate (the served labels stay the predictions it estimates the accuracy of).
    """
    from quantgate.monitor import production as p
    from quantgate.registry import contract as c

    try:
        gate = p.gate_figures(p.load_card(cl, mv.run_id))
    except QuantgateError as exc:
        reason = f"no gate-time figures: {exc}"
        return WindowChecks(_not_run(reason), _not_run(reason), _not_run(reason))
    except Exception as exc:  # the card could not be read (e.g. a download error): each check crashed
        crashed = _crashed("gate-time figures", exc)
        return WindowChecks(dict(crashed), dict(crashed), dict(crashed))
    checks = WindowChecks(_not_run("not reached"), _not_run("not reached"), _not_run("not reached"), gate)

    def disagreement() -> dict[str, Any]:
        source_ref = (mv.tags or {}).get(c.TAG_SOURCE)
        if not source_ref:
            raise p.DataError(f"{mv.name} v{mv.version} has no {c.TAG_SOURCE} tag naming its fp32 source")
        fp32 = p.load_fp32_source(source_ref)
        out = p.disagreement(window, served["label"], fp32, classes, gate, sample=sample, alpha=alpha)
        checks.snapshots["disagreement"] = p.disagreement_report(out.pop("indicator"))
        return {"source": source_ref, **out}

    def labels() -> dict[str, Any]:
        from quantgate.monitor.labels import join_labels, read_labels

        stored = read_labels(mv.name, settings)
        joined = join_labels(window.assign(label=served["label"].to_numpy()), stored)
        if joined.empty:
            raise p.DataError(
                f"no delayed labels for this window yet ({len(stored)} stored for {mv.name})",
                f"quantgate monitor-labels {mv.name} FILE",
            )
        out = p.labelled_accuracy(joined, classes, gate, alpha=alpha)
        y, pred = out.pop("y"), out.pop("pred")
        checks.snapshots["classification"] = p.classification_report(y, pred, classes)
        return {"labelled_rows": len(joined), "window_rows": len(window), **out}

    def estimate() -> dict[str, Any]:
        from quantgate.models.outputs import class_index

        if len(classes) == 2:
            if "probability" not in served.columns:
                raise p.DataError("the inference log has no positive-class probability column for CBPE")
            rows, proba = served, served["probability"].to_numpy(float)
            how = "the logged positive-class probability"
        else:
            if served_proba is None:
                raise p.DataError("CBPE on a multi-class model needs every class's probability, and no model was given")
            n = min(estimate_sample, len(window))
            picked = window.sample(n=n, random_state=seed) if n < len(window) else window
            rows, proba = served.loc[picked.index], served_proba(picked)
            how = f"every class's probability, re-scored by the served version on {n} of {len(window)} rows"
        scores = p.load_eval_scores(cl, mv.run_id)
        if scores is None:
            raise p.DataError(
                "the candidate has no gate-time evaluation scores (governed before they were stored)",
                "re-govern the source to store quantgate/eval_scores.parquet",
            )
        pred = class_index(rows["label"], classes, what="served labels")
        return {**p.estimate_accuracy_cbpe(scores, proba, pred, gate), "probabilities": how}

    checks.disagreement = _guard("disagreement", disagreement)
    checks.labels = _guard("delayed labels", labels)
    checks.estimate = _guard("accuracy estimate", estimate)
    return checks
