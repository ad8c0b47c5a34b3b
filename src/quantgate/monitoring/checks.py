"""Checks: what the served model does in production against what the gate approved, beside drift.

- **disagreement**: a sample of the window re-scored with the fp32 source; the share whose label
  differs from the served one, against the gate's flip rate;
- **labels**: accuracy on the rows whose delayed label arrived, overall and per gate group;
- **estimate**: accuracy estimated before labels arrive (NannyML CBPE on the served probabilities).

Each is ``ok`` with its figures or ``not run`` with the reason: a known stop (no labels yet, a
candidate governed before its scores were stored) says so; a crash (any other error, a download
that failed) also carries the error's line and **alerts**, so a check that stopped working is
never silent. The statistics are :mod:`quantgate.monitor.production`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from quantgate.errors import QuantgateError
from quantgate.monitoring.context import Notice, not_run_notice
from quantgate.monitoring.resolve import Served
from quantgate.monitoring.score import LabelJoin, Scored, join_window_labels
from quantgate.monitoring.window import Window
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CheckName = Literal["disagreement", "labels", "estimate"]
#: how each check is named in lines and alerts, and the alert kind of its findings
TITLES: dict[str, str] = {
    "disagreement": "disagreement",
    "labels": "labelled accuracy",
    "estimate": "estimated accuracy",
}
KINDS: dict[str, str] = {"disagreement": "disagreement", "labels": "performance", "estimate": "performance"}


class _Version(Protocol):
    """What the checks read of the served version (a :class:`Served` or an MLflow ModelVersion)."""

    name: str
    version: Any
    run_id: str
    tags: Any


def _pct(value: float, interval: list[float]) -> str:
    return f"{100 * value:.1f}% ({100 * interval[0]:.1f}-{100 * interval[1]:.1f}%)"


@dataclass(frozen=True)
class ProductionCheck:
    name: CheckName
    status: Literal["ok", "not run"]
    #: the check's figures (JSON-safe), when it ran
    figures: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    #: the error's line when the check crashed (an alert of its own)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"status": "ok", **figures}`` or ``{"status": "not run", "reason": ..., ["error": ...]}``."""
        if self.status == "ok":
            return {"status": "ok", **self.figures}
        return {"status": "not run", "reason": self.reason, **({"error": self.error} if self.error else {})}

    @property
    def line(self) -> str:
        if self.status != "ok":
            return f"{TITLES[self.name]}: not run ({self.reason})" + (" -> ALERT" if self.error else "")
        f = self.figures
        if self.name == "disagreement":
            return (
                f"disagreement with fp32 {f['source']}: {f['k']}/{f['n']} = {100 * f['rate']:.1f}% "
                f"[{100 * f['interval'][0]:.1f}, {100 * f['interval'][1]:.1f}] vs gate {100 * f['gate_rate']:.1f}% "
                f"(p={f['p_value']:.2g}) -> {'ABOVE what was approved' if f['above_gate'] else 'ok'}"
            )
        if self.name == "labels":
            below = ", ".join(f["groups_below_gate"]) or "none"
            return (
                f"labelled accuracy ({f['labelled_rows']} rows): {f['accuracy']:.3f} "
                f"[{f['interval'][0]:.3f}, {f['interval'][1]:.3f}] vs gate {f['gate_accuracy']:.3f}; "
                f"below gate: {'overall' if f['below_gate'] else 'not overall'}, groups: {below}"
            )
        return (
            f"estimated accuracy ({f['estimator']}, {f['n']} rows): {f['estimated_accuracy']:.3f} "
            f"[{f['interval'][0]:.3f}, {f['interval'][1]:.3f}] vs gate {f['gate_accuracy']:.3f} "
            f"[{f['gate_interval'][0]:.3f}, {f['gate_interval'][1]:.3f}]"
            f"{' -> BELOW the gate' if f['below_gate'] else ''}"
        )

    @property
    def notices(self) -> tuple[Notice, ...]:
        """A crashed check's not-run alert (its findings alert through :class:`ProductionChecks`)."""
        if self.error is None:
            return ()
        return (not_run_notice(KINDS[self.name], TITLES[self.name], self.error, "production.json", error=self.error),)


def above_gate(disagreement: Mapping[str, Any]) -> bool:
    return bool(disagreement.get("above_gate"))


def below_gate(labels: Mapping[str, Any], estimate: Mapping[str, Any]) -> bool:
    """Labelled accuracy (overall or a group's) or the label-free estimate below the gate's figure."""
    return bool(labels.get("below_gate") or labels.get("groups_below_gate") or estimate.get("below_gate"))


def disagreement_message(d: Mapping[str, Any]) -> str:
    return (
        f"{d['k']}/{d['n']} sampled rows ({100 * d['rate']:.1f}%, {100 * d['interval'][0]:.1f}-"
        f"{100 * d['interval'][1]:.1f}%) disagree with the fp32 source {d['source']}; the gate approved a "
        f"flip rate of {100 * d['gate_rate']:.1f}% (p={d['p_value']:.2g} < {d['alpha']})"
    )


def performance_message(labels: Mapping[str, Any], estimate: Mapping[str, Any]) -> tuple[str, dict[str, Any], str]:
    """The ``performance`` alert: which accuracy fell below the gate's (labelled, estimated or both),
    by how much, and the report to open (the labelled classification report when labels said so)."""
    below: dict[str, tuple[Mapping[str, Any], str]] = {}
    if labels.get("below_gate"):
        below["labelled"] = (
            labels,
            f"labelled accuracy {_pct(labels['accuracy'], labels['interval'])} on {labels['n']} delayed labels "
            f"is below the gate's {100 * labels['gate_accuracy']:.1f}% (p={labels['p_value']:.2g})",
        )
    if estimate.get("below_gate"):
        below["estimated"] = (
            estimate,
            f"estimated accuracy {_pct(estimate['estimated_accuracy'], estimate['interval'])} "
            f"({estimate['estimator']}, {estimate['n']} rows) lies below the gate's "
            f"{_pct(estimate['gate_accuracy'], estimate['gate_interval'])}",
        )
    parts = [text for _, text in below.values()]
    details: dict[str, Any] = {"kind": "performance", "below_gate": list(below)}
    for key, (check, _) in below.items():
        details[key] = {k: v for k, v in check.items() if k not in ("status", "groups")}
    if labels.get("groups_below_gate"):
        details["groups_below_gate"] = labels["groups_below_gate"]
        parts.append(f"group(s) below their gate figure: {', '.join(labels['groups_below_gate'])}")
    report = "classification_report.html" if labels.get("below_gate") else "production.json"
    return "; ".join(parts), details, report


@dataclass(frozen=True, eq=False)
class ProductionChecks:
    disagreement: ProductionCheck
    labels: ProductionCheck
    estimate: ProductionCheck
    #: the gate-time figures compared with (from the candidate's model card)
    gate: Mapping[str, Any] | None = None
    #: Evidently snapshots made here (HTML artifacts, workspace runs), by name
    snapshots: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def all(self) -> tuple[ProductionCheck, ...]:
        return (self.disagreement, self.labels, self.estimate)

    def to_dict(self) -> dict[str, Any]:
        """``production.json``."""
        return {**{c.name: c.as_dict() for c in self.all}, "gate": dict(self.gate) if self.gate else None}

    @property
    def disagreement_alert(self) -> bool:
        return above_gate(self.disagreement.figures)

    @property
    def performance_alert(self) -> bool:
        return below_gate(self.labels.figures, self.estimate.figures)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(c.line for c in self.all)

    @property
    def line(self) -> str:
        return "\n".join(self.lines)

    @property
    def notices(self) -> tuple[Notice, ...]:
        out = [n for c in self.all for n in c.notices]
        if self.disagreement_alert:
            d = self.disagreement.as_dict()
            details = {"kind": "disagreement", **{k: v for k, v in d.items() if k != "status"}}
            out.append(Notice("disagreement", disagreement_message(d), details, "production.json"))
        if self.performance_alert:
            summary, details, report = performance_message(self.labels.as_dict(), self.estimate.as_dict())
            out.append(Notice("performance", summary, details, report))
        return tuple(out)


def _crashed(name: CheckName, what: str, exc: Exception) -> ProductionCheck:
    from quantgate.monitor.production import error_line

    log.error("%s check failed: %s", what, error_line(exc), exc_info=True)
    return ProductionCheck(name, "not run", reason=error_line(exc), error=error_line(exc))


def _guard(name: CheckName, fn: Callable[[], dict[str, Any]]) -> ProductionCheck:
    """Run one check: a known stop (QuantgateError) is not run; any other error is not run and alerts."""
    try:
        return ProductionCheck(name, "ok", fn())
    except QuantgateError as exc:
        return ProductionCheck(name, "not run", reason=str(exc))
    except Exception as exc:  # drift still counts; the crash alerts
        return _crashed(name, TITLES[name], exc)


def run_checks(served: Served, window: Window, scored: Scored, settings: Settings | None = None) -> ProductionChecks:
    """The three checks on this window, with the spec's sample sizes and significance."""
    from quantgate.registry.mlflow_registry import client

    s = settings or get_settings()
    spec, wrapped = served.spec, served.model
    return run_window_checks(
        client(s),
        served,
        window.rows,
        window.outputs,
        served.classes,
        sample=spec.disagreement_sample,
        alpha=spec.alpha,
        settings=s,
        served_proba=lambda rows: wrapped.predict_proba(rows[wrapped.input_columns]),
        estimate_sample=spec.estimate_sample,
        labels=scored.labels,
    )


def run_window_checks(
    cl: Any,
    mv: _Version,
    window: pd.DataFrame,
    served: pd.DataFrame,
    classes: list[Any],
    *,
    sample: int,
    alpha: float,
    settings: Any = None,
    served_proba: Callable[[pd.DataFrame], Any] | None = None,
    estimate_sample: int = 20_000,
    labels: LabelJoin | None = None,
    seed: int = 0,
) -> ProductionChecks:
    """``window``: the inputs (with request_id/request_row when read from the log); ``served``: the
    served outputs row by row (``label``, and ``probability`` for a binary model); ``labels``: the
    window joined to its delayed labels (read here when not given).

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
        return ProductionChecks(*(ProductionCheck(n, "not run", reason=reason) for n in KINDS))  # type: ignore[arg-type]
    except Exception as exc:  # the card could not be read (a download error): every check crashed with it
        return ProductionChecks(*(_crashed(n, "gate-time figures", exc) for n in KINDS))  # type: ignore[arg-type]
    snapshots: dict[str, Any] = {}

    def disagreement() -> dict[str, Any]:
        source_ref = (mv.tags or {}).get(c.TAG_SOURCE)
        if not source_ref:
            raise p.DataError(f"{mv.name} v{mv.version} has no {c.TAG_SOURCE} tag naming its fp32 source")
        fp32 = p.load_fp32_source(source_ref)
        out = p.disagreement(window, served["label"], fp32, classes, gate, sample=sample, alpha=alpha)
        snapshots["disagreement"] = p.disagreement_report(out.pop("indicator"))
        return {"source": source_ref, **out}

    def labelled() -> dict[str, Any]:
        assert joined.rows is not None
        if joined.rows.empty:
            raise p.DataError(
                f"no delayed labels for this window yet ({joined.stored} stored for {mv.name})",
                f"quantgate monitor-labels {mv.name} FILE",
            )
        out = p.labelled_accuracy(joined.rows, classes, gate, alpha=alpha)
        y, pred = out.pop("y"), out.pop("pred")
        snapshots["classification"] = p.classification_report(y, pred, classes)
        return {"labelled_rows": len(joined.rows), "window_rows": len(window), **out}

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

    joined = labels if labels is not None else join_window_labels(mv.name, window, served["label"], settings)
    if joined.rows is None:  # the label store could not be read: said, and alerting when it crashed
        labels_check = ProductionCheck("labels", "not run", reason=joined.reason, error=joined.error)
    else:
        labels_check = _guard("labels", labelled)
    return ProductionChecks(
        _guard("disagreement", disagreement),
        labels_check,
        _guard("estimate", estimate),
        gate,
        snapshots,
    )
