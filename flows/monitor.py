"""Prefect flow: one monitoring run for a deployed quantized model (scheduled in prefect.yaml)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from quantgate.settings import configure_environment


@flow(name="monitor-model", log_prints=True)
def monitor_model(model: str, window: str | None = None, log_hours: float | None = None) -> dict[str, Any]:
    """Score the window, log inferences, run Evidently drift, alert and emit an event on drift.

    ``log_hours``: the window is the inference log's last that many hours (see ``run_monitor``)."""
    from quantgate.monitor.job import run_monitor

    configure_environment()
    out = run_monitor(model, window=window, log_hours=log_hours)
    log = get_run_logger()
    for line in check_lines(out):
        log.info(line)
    log.info(
        "%s v%s (%s): drifted share %.2f -> %s",
        out.model,
        out.version,
        out.alias,
        out.drift["drifted_share"],
        "DRIFT" if out.drifted else ("drift NOT RUN" if out.drift["dataset_drift"] is None else "no drift"),
    )
    return {
        "model": out.model,
        "version": out.version,
        "alias": out.alias,
        "rows": out.rows,
        "drift": out.drift["dataset_drift"],  # None: not run (no column compared), never "no drift"
        "drifted_share": out.drift["drifted_share"],
        "drifted_columns": out.drift.get("drifted_columns", []),
        "run_id": out.run_id,
        "deliveries": out.deliveries,
        # added for issue 13 part 2 (the keys above are unchanged)
        "disagreement": out.disagreement,
        "disagreement_alert": out.disagreement_alert,
        "labels": out.labels,
        "estimate": out.estimate,
        "workspace": out.workspace,
        "event_emitted": out.event_emitted,
        "checks": check_lines(out),
    }


def check_lines(out: Any) -> list[str]:
    """One readable line per production check, "not run" with its reason when it could not run."""
    d, lab, est = out.disagreement, out.labels, out.estimate
    lines = []
    if out.drift.get("not_compared"):
        not_compared = "; ".join(f"{k} ({v})" for k, v in out.drift["not_compared"].items())
        lines.append(
            f"drift: NOT RUN, no column compared: {not_compared}"
            if out.drift["dataset_drift"] is None
            else f"drift: {out.drift['n_columns']} columns compared, not compared: {not_compared}"
        )
    if d.get("status") == "ok":
        lines.append(
            f"disagreement with fp32 {d['source']}: {d['k']}/{d['n']} = {100 * d['rate']:.1f}% "
            f"[{100 * d['interval'][0]:.1f}, {100 * d['interval'][1]:.1f}] vs gate {100 * d['gate_rate']:.1f}% "
            f"(p={d['p_value']:.2g}) -> {'ABOVE what was approved' if d['above_gate'] else 'ok'}"
        )
    else:
        lines.append(f"disagreement: not run ({d.get('reason')})" + (" -> ALERT" if d.get("error") else ""))
    if lab.get("status") == "ok":
        below = ", ".join(lab["groups_below_gate"]) or "none"
        lines.append(
            f"labelled accuracy ({lab['labelled_rows']} rows): {lab['accuracy']:.3f} "
            f"[{lab['interval'][0]:.3f}, {lab['interval'][1]:.3f}] vs gate {lab['gate_accuracy']:.3f}; "
            f"below gate: {'overall' if lab['below_gate'] else 'not overall'}, groups: {below}"
        )
    else:
        lines.append(f"labelled accuracy: not run ({lab.get('reason')})" + (" -> ALERT" if lab.get("error") else ""))
    if est.get("status") == "ok":
        lines.append(
            f"estimated accuracy ({est['estimator']}, {est['n']} rows): {est['estimated_accuracy']:.3f} "
            f"[{est['interval'][0]:.3f}, {est['interval'][1]:.3f}] vs gate {est['gate_accuracy']:.3f} "
            f"[{est['gate_interval'][0]:.3f}, {est['gate_interval'][1]:.3f}]"
            f"{' -> BELOW the gate' if est['below_gate'] else ''}"
        )
    else:
        lines.append(f"estimated accuracy: not run ({est.get('reason')})" + (" -> ALERT" if est.get("error") else ""))
    ws = out.workspace
    lines.append(
        f"Evidently workspace: {ws['path']} (quantgate monitor-ui)"
        if ws.get("status") == "ok"
        else f"Evidently workspace: not run ({ws.get('reason')})"
    )
    return lines
