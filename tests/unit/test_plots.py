"""The reviewer's figures carry the given values (series, labels, marks), not a pixel snapshot;
the card links them only when they were logged."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_hex
from test_cards import make_context

from quantgate.cards import plots
from quantgate.cards.card import render_model_card
from quantgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

GROUPS = [
    {
        "attribute": "sex",
        "group": "Female",
        "n": 5421,
        "baseline": 0.92,
        "candidate": 0.91,
        "baseline_ci": (0.913, 0.927),
        "candidate_ci": (0.902, 0.917),
        "drop": 0.01,
        "drop_ci": (0.004, 0.016),
    },
    {
        "attribute": "race",
        "group": "Other",
        "n": 135,
        "baseline": 0.86,
        "candidate": 0.80,
        "baseline_ci": (0.79, 0.91),
        "candidate_ci": (0.72, 0.86),
        "drop": 0.06,
        "drop_ci": (-0.01, 0.13),
    },
]


def _vlines(ax: Any) -> dict[float, str]:
    """x of every vertical line -> its label."""
    return {
        round(float(line.get_xdata()[0]), 6): line.get_label()
        for line in ax.get_lines()
        if len(set(np.atleast_1d(line.get_xdata()))) == 1 and len(line.get_xdata()) == 2
    }


def test_group_accuracy_figure_shows_both_models_and_the_threshold() -> None:
    fig = plots.group_accuracy_figure(GROUPS, threshold=0.03)
    acc, drop = fig.axes
    assert [t.get_text() for t in acc.get_yticklabels()] == ["sex=Female (n=5421)", "race=Other (n=135)"]
    series = {c.get_label(): c for c in acc.containers}
    assert set(series) == {"fp32", "quantized"}
    # top to bottom in the given order: y descends
    fp32_x = series["fp32"].lines[0].get_xdata()
    quant_x = series["quantized"].lines[0].get_xdata()
    assert list(fp32_x) == [0.92, 0.86] and list(quant_x) == [0.91, 0.80]
    # error bars: the Wilson interval of each point
    segs = series["quantized"].lines[2][0].get_segments()
    assert [tuple(np.round(s[:, 0], 6)) for s in segs] == [(0.902, 0.917), (0.72, 0.86)]
    # drops in points, the 3-pt threshold drawn, the group over it marked
    pts = drop.collections[-1]
    assert list(np.round(pts.get_offsets()[:, 0], 6)) == [1.0, 6.0]
    colors = [to_hex(c) for c in pts.get_facecolors()]
    assert colors == [plots.QUANT, plots.BAD]
    assert _vlines(drop)[3.0] == "policy threshold 3 pt" and 0.0 in _vlines(drop)
    assert "policy threshold 3 pt" in [t.get_text() for t in drop.get_legend().get_texts()]


AUDIT = {
    "n": 3000,
    "n_flips": 100,
    "alpha": 0.05,
    "groups": [
        {
            "attribute": "grp",
            "group": "g0",
            "n": 300,
            "base_share": 0.1,
            "flip_share": 0.8,
            "flips": 80,
            "ratio": 8.0,
            "p_value": 1e-40,
            "p_adjusted": 1e-39,
        },
        {
            "attribute": "grp",
            "group": "g1",
            "n": 2700,
            "base_share": 0.9,
            "flip_share": 0.2,
            "flips": 20,
            "ratio": 0.22,
            "p_value": 1.0,
            "p_adjusted": 1.0,
        },
    ],
}


def test_flip_audit_figure_marks_the_concentrated_group() -> None:
    fig = plots.flip_audit_figure(AUDIT)
    (ax,) = fig.axes
    rows, flips = ax.containers
    assert [round(b.get_width(), 6) for b in rows] == [10.0, 90.0]
    assert [round(b.get_width(), 6) for b in flips] == [80.0, 20.0]
    assert [to_hex(b.get_facecolor()) for b in flips] == [plots.BAD, plots.QUANT]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "grp=g0 (n=300, 80 flips)",
        "grp=g1 (n=2700, 20 flips)",
    ]
    assert [t.get_text() for t in ax.texts] == [" 8.0x, significant"]
    assert "100 of 3000 predictions changed" in fig.get_suptitle()


def test_flip_audit_figure_does_not_mark_an_excess_that_is_not_significant() -> None:
    audit = copy.deepcopy(AUDIT)
    audit["groups"][0]["p_adjusted"] = 0.2  # p_value < 0.05 alone, not after Holm
    (ax,) = plots.flip_audit_figure(audit).axes
    assert to_hex(ax.containers[1][0].get_facecolor()) == plots.QUANT and not ax.texts


TRACE = [
    {"label": "ort-fp32", "passed": True, "metrics": {"accuracy_drop": 0.0, "speedup": 1.3}, "recipe": {"t": 1}},
    {"label": "dynamic-int8", "passed": True, "metrics": {"accuracy_drop": 0.004, "speedup": 1.7}, "recipe": {"t": 2}},
    {"label": "int4", "passed": False, "metrics": {"accuracy_drop": 0.02, "speedup": 0.9}, "recipe": {"t": 3}},
    {"label": "ort-static", "passed": False, "metrics": {}, "recipe": {"t": 4}},
]


def test_search_tradeoff_figure_has_every_trial_the_choice_and_the_tolerance() -> None:
    fig = plots.search_tradeoff_figure(TRACE, chosen="dynamic-int8", tolerance=0.01)
    (ax,) = fig.axes
    by_label = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert by_label["within tolerance"].tolist() == [[0.0, 1.3], [0.4, 1.7]]
    assert by_label["rejected"].tolist() == [[2.0, 0.9]]
    assert by_label["chosen: dynamic-int8"].tolist() == [[0.4, 1.7]]
    assert [t.get_text() for t in ax.texts] == ["ort-fp32", "dynamic-int8", "int4"]
    assert _vlines(ax)[1.0] == "tolerance 1 pt"
    assert "4" not in fig.get_suptitle().split(":")[1] and "not measured: ort-static" in fig.get_suptitle()
    assert ax.get_yscale() == "linear"


def test_search_tradeoff_uses_a_log_scale_for_a_wide_speed_range() -> None:
    trace = [dict(TRACE[0], metrics={"accuracy_drop": 0.0, "speedup": 160.0}), TRACE[1]]
    assert plots.search_tradeoff_figure(trace).axes[0].get_yscale() == "log"


def _ctx() -> dict[str, Any]:
    ctx = make_context()
    ctx["flip_audit"] = AUDIT
    ctx["search"] = {"trace": TRACE, "tolerance_overall": 0.01}
    ctx["search_trace"] = TRACE
    ctx["recipe"]["json"] = {"t": 2}  # the trial that produced the candidate
    return ctx


def test_review_figures_from_a_card_context() -> None:
    figs = plots.review_figures(_ctx())
    assert list(figs) == [plots.GROUP_ACCURACY, plots.FLIP_AUDIT, plots.SEARCH_TRADEOFF]
    labels = [t.get_text() for t in figs[plots.GROUP_ACCURACY].axes[0].get_yticklabels()]
    assert labels == ["sex=Female (n=5421)", "sex=Male (n=10860)"]
    assert "chosen: dynamic-int8" in {c.get_label() for c in figs[plots.SEARCH_TRADEOFF].axes[0].collections}
    bare = make_context()
    bare["groups"] = []
    assert plots.review_figures(bare) == {}


def test_card_links_the_plots_only_when_logged() -> None:
    settings = Settings(project_dir=ROOT)
    md, _ = render_model_card(make_context(), settings)
    assert "## Plots" not in md and "get-artifact" not in md
    links = plots.plot_links([plots.GROUP_ACCURACY, plots.FLIP_AUDIT], "abc123")
    assert links[0]["url"] == "get-artifact?path=plots%2Fgroup_accuracy.png&run_uuid=abc123"
    md, twin = render_model_card({**make_context(), "plots": links}, settings)
    assert "## Plots" in md
    assert "![Accuracy by group, fp32 vs quantized](get-artifact?path=plots%2Fgroup_accuracy.png&run_uuid=abc123)" in md
    assert "(`plots/flip_audit.png`)" in md
    assert twin["plots"] == links


@pytest.mark.parametrize("bad", [[], [{"attribute": "a", "group": "b", "n": 3, "baseline": None, "candidate": 1}]])
def test_group_figure_without_usable_rows(bad: list[dict[str, Any]]) -> None:
    assert plots.group_accuracy_figure(bad).get_suptitle() == "No groups evaluated"
