"""The Evidently workspace under ``$QUANTGATE_HOME/evidently``: one project per served model, one run per
monitoring window, so Evidently's UI (``quantgate monitor-ui``) shows the history as plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantgate.settings import Settings


def workspace_dir(settings: Settings | None = None) -> Path:
    from quantgate.settings import get_settings

    return (settings or get_settings()).home_abs / "evidently"


def _project(ws: Any, name: str) -> Any:
    found = ws.search_project(name)
    if found:
        return found[0]
    project = ws.create_project(name, description=f"quantgate monitoring of {name} (one run per window)")
    _add_panels(project)
    return project


def _add_panels(project: Any) -> None:
    """Plots over time of what the drift run measures (Evidently's own dashboard panels)."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    project.dashboard.add_panel(
        line_plot_panel(
            "Share of drifted columns",
            [PanelMetric(legend="share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"})],
            size="half",
        )
    )
    project.dashboard.add_panel(
        bar_plot_panel(
            "Drifted columns",
            [PanelMetric(legend="count", metric="DriftedColumnsCount", metric_labels={"value_type": "count"})],
            size="half",
        )
    )
    project.dashboard.add_panel(
        line_plot_panel(
            "Disagreement with the fp32 source (sampled rows)",
            [PanelMetric(legend="rate", metric="MeanValue", metric_labels={"column": "disagrees"})],
            size="half",
        )
    )
    project.dashboard.add_panel(
        line_plot_panel("Accuracy on delayed labels", [PanelMetric(legend="accuracy", metric="Accuracy")], size="half")
    )


def add_runs(model: str, runs: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """Add each Evidently Snapshot of ``runs`` ({name: snapshot}) to the model's project; returns ids."""
    from evidently.ui.workspace import Workspace

    root = workspace_dir(settings)
    ws = Workspace(str(root))
    project = _project(ws, model)
    ids = {}
    for name, snapshot in runs.items():
        ref = ws.add_run(project.id, snapshot, name=name)
        ids[name] = str(ref.id)
    return {"path": str(root), "project": str(project.id), "runs": ids}
