"""Figures for the reviewer: what a person would rather look at than read (pure).

Values in, ``matplotlib.figure.Figure`` out; nothing is written or logged here (the record step
logs them on the candidate's run and links them from the card). Figures are built on
``Figure()`` directly, not through ``pyplot``: no global state, no GUI backend, and a figure
renders with Agg when saved.

- :func:`group_accuracy_figure`: per group, fp32 vs quantized accuracy with 95% Wilson
  intervals, and the drop with its paired-bootstrap interval against the policy's threshold.
- :func:`flip_audit_figure`: per group, its share of the data vs its share of the changed
  predictions; groups whose excess is significant (Holm-adjusted) are marked.
- :func:`search_tradeoff_figure`: every recipe the search tried, accuracy drop vs speedup,
  passing and failing trials apart, the chosen one marked, the tolerance drawn.

:func:`review_figures` builds whichever of them the card context has data for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: artifact paths on the candidate's run (the card links these)
GROUP_ACCURACY = "plots/group_accuracy.png"
FLIP_AUDIT = "plots/flip_audit.png"
SEARCH_TRADEOFF = "plots/search_tradeoff.png"

TITLES = {
    GROUP_ACCURACY: "Accuracy by group, fp32 vs quantized",
    FLIP_AUDIT: "Flip audit: who the changed predictions belong to",
    SEARCH_TRADEOFF: "Recipe search: accuracy vs speed",
}
FP32, QUANT, BAD, OK = "#4c72b0", "#dd8452", "#c44e52", "#55a868"


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _figure(rows: int, width: float = 10.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, max(2.5, 0.45 * rows + 1.6)), layout="constrained")


def _err(value: float, ci: Sequence[float] | None) -> tuple[float, float]:
    """(below, above) error-bar lengths; 0 when no interval."""
    if not ci or _f(ci[0]) is None or _f(ci[1]) is None:
        return 0.0, 0.0
    return max(0.0, value - float(ci[0])), max(0.0, float(ci[1]) - value)


def group_label(g: Mapping[str, Any]) -> str:
    return f"{g['attribute']}={g['group']} (n={g['n']})"


def group_accuracy_figure(groups: Sequence[Mapping[str, Any]], threshold: float | None = None) -> Figure:
    """``groups``: rows with attribute, group, n, baseline, candidate, baseline_ci, candidate_ci,
    drop, drop_ci (what ``card.derived(ctx)["groups"]`` gives). Left: both accuracies with their
    intervals; right: the drop (positive = worse) with its paired interval, 0 and ``threshold``
    drawn. Groups are in the given order, top to bottom."""
    rows = [g for g in groups if _f(g.get("baseline")) is not None and _f(g.get("candidate")) is not None]
    fig = _figure(len(rows), 11.0)
    acc, drop = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    labels = [group_label(g) for g in rows]
    ys = list(range(len(rows)))[::-1]
    for offset, key, color, name in ((0.15, "baseline", FP32, "fp32"), (-0.15, "candidate", QUANT, "quantized")):
        vals = [float(g[key]) for g in rows]
        errs = list(zip(*(_err(v, g.get(f"{key}_ci")) for v, g in zip(vals, rows, strict=True)), strict=True))
        acc.errorbar(
            vals,
            [y + offset for y in ys],
            xerr=[list(errs[0]), list(errs[1])] if rows else None,
            fmt="o",
            color=color,
            capsize=3,
            label=name,
        )
    acc.set_yticks(ys, labels)
    acc.set_xlabel("accuracy (95% Wilson interval)")
    acc.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, fontsize="small")
    acc.grid(axis="x", alpha=0.3)
    drops = [_f(g.get("drop")) or 0.0 for g in rows]
    derr = list(zip(*(_err(d, g.get("drop_ci")) for d, g in zip(drops, rows, strict=True)), strict=True))
    colors = [BAD if threshold is not None and d > threshold else QUANT for d in drops]
    drop.errorbar(
        [100 * d for d in drops],
        ys,
        xerr=[[100 * e for e in derr[0]], [100 * e for e in derr[1]]] if rows else None,
        fmt="none",
        ecolor="gray",
        capsize=3,
    )
    drop.scatter([100 * d for d in drops], ys, c=colors, zorder=3, label="drop (paired 95% interval)")
    drop.axvline(0, color="black", lw=0.8)
    if threshold is not None:
        drop.axvline(100 * threshold, color=BAD, ls="--", lw=1, label=f"policy threshold {100 * threshold:g} pt")
    if threshold is not None:  # the threshold always in view, with a margin
        lo, hi = drop.get_xlim()
        drop.set_xlim(lo, max(hi, 100 * threshold + 0.15 * (100 * threshold - lo)))
    drop.set_xlabel("accuracy drop, points (positive = worse)")
    drop.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1, fontsize="small")
    drop.grid(axis="x", alpha=0.3)
    fig.suptitle(TITLES[GROUP_ACCURACY] if rows else "No groups evaluated")
    return fig


def flip_audit_figure(audit: Mapping[str, Any]) -> Figure:
    """``audit``: ``FlipAudit.to_dict()``. Per group, its share of the evaluation rows and of the
    flips side by side; a group whose excess is significant (Holm-adjusted p < alpha) is marked
    with its ratio."""
    groups = list(audit.get("groups") or [])
    alpha = _f(audit.get("alpha")) or 0.05
    fig = _figure(len(groups))
    ax = fig.subplots()
    ys = list(range(len(groups)))[::-1]
    h = 0.38
    ax.barh([y + h / 2 for y in ys], [100 * g["base_share"] for g in groups], h, color=FP32)
    flip_colors = [BAD if _significant(g, alpha) else QUANT for g in groups]
    ax.barh(
        [y - h / 2 for y in ys],
        [100 * g["flip_share"] for g in groups],
        h,
        color=flip_colors,
    )
    for y, g in zip(ys, groups, strict=True):
        if _significant(g, alpha):
            ax.annotate(
                f" {g['ratio']:.1f}x, significant",
                (100 * g["flip_share"], y - h / 2),
                va="center",
                fontsize="small",
                color=BAD,
            )
    ax.set_yticks(ys, [f"{g['attribute']}={g['group']} (n={g['n']}, {g['flips']} flips)" for g in groups])
    ax.set_xlabel("% of rows / % of changed predictions")
    from matplotlib.patches import Patch

    handles = [Patch(color=FP32), Patch(color=QUANT)]
    names = ["share of rows", "share of flips"]
    if BAD in flip_colors:
        handles.append(Patch(color=BAD))
        names.append(f"share of flips, significant excess (Holm p < {alpha:g})")
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    n_flips, n = audit.get("n_flips", 0), audit.get("n", 0)
    fig.suptitle(f"{TITLES[FLIP_AUDIT]} ({n_flips} of {n} predictions changed)")
    return fig


def _significant(g: Mapping[str, Any], alpha: float) -> bool:
    p = _f(g.get("p_adjusted"))
    if p is None:
        p = _f(g.get("p_value"))
    return p is not None and p < alpha and (_f(g.get("ratio")) or 0.0) > 1.0


def search_tradeoff_figure(
    trials: Sequence[Mapping[str, Any]], chosen: str | None = None, tolerance: float | None = None
) -> Figure:
    """``trials``: the tuner's trace (label, passed, metrics.accuracy_drop, metrics.speedup).
    x: accuracy drop in points, y: speedup vs fp32; passing trials green, failing red, the
    ``chosen`` label starred, the overall ``tolerance`` a dashed vertical line. Trials that
    measured nothing (errors) are listed in the caption, not plotted."""
    fig = _figure(6, 9.0)
    ax = fig.subplots()
    plotted, skipped = [], []
    for t in trials:
        m = t.get("metrics") or {}
        x, y = _f(m.get("accuracy_drop")), _f(m.get("speedup"))
        (plotted if x is not None and y is not None else skipped).append((t, x, y))
    for passed, color, name in ((True, OK, "within tolerance"), (False, BAD, "rejected")):
        pts = [(100 * x, y) for t, x, y in plotted if bool(t.get("passed")) == passed]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=color, s=40, label=name, zorder=3)
    for t, x, y in plotted:
        ax.annotate(str(t.get("label")), (100 * x, y), textcoords="offset points", xytext=(5, 4), fontsize="small")
    star = [(100 * x, y) for t, x, y in plotted if chosen is not None and t.get("label") == chosen and t.get("passed")]
    if star:
        ax.scatter(*star[-1], marker="*", s=320, facecolors="none", edgecolors="black", label=f"chosen: {chosen}")
    if tolerance is not None:
        ax.axvline(100 * tolerance, color=BAD, ls="--", lw=1, label=f"tolerance {100 * tolerance:g} pt")
    ax.axhline(1.0, color="gray", lw=0.8)
    speeds = [y for _, _, y in plotted if y > 0]
    if speeds and max(speeds) / min(speeds) > 10:  # e.g. a runtime change next to int8 recipes
        ax.set_yscale("log")
    ax.set_xlabel("accuracy drop on the calibration rows, points (positive = worse)")
    ax.set_ylabel("speedup vs fp32 (x)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    title = f"{TITLES[SEARCH_TRADEOFF]}: {len(plotted)} recipe(s)"
    if skipped:
        title += f"; not measured: {', '.join(str(t.get('label')) for t, _, _ in skipped)}"
    fig.suptitle(title)
    return fig


def _group_threshold(verdict: Mapping[str, Any]) -> float | None:
    for r in verdict.get("rules", []) or []:
        if r.get("kind") == "max_group_drop" and _f(r.get("bound")) is not None:
            return float(r["bound"])
    return None


def review_figures(ctx: Mapping[str, Any]) -> dict[str, Figure]:
    """The figures the card context has data for, keyed by their artifact path."""
    from quantgate.cards.card import derived

    card = derived(ctx)
    out: dict[str, Figure] = {}
    if card["groups"]:
        out[GROUP_ACCURACY] = group_accuracy_figure(card["groups"], _group_threshold(ctx.get("verdict") or {}))
    audit = ctx.get("flip_audit")
    if isinstance(audit, Mapping) and audit.get("groups"):
        out[FLIP_AUDIT] = flip_audit_figure(audit)
    search = ctx.get("search") or {}
    trace = ctx.get("search_trace") or search.get("trace")
    if isinstance(trace, list) and trace:
        out[SEARCH_TRADEOFF] = search_tradeoff_figure(trace, _chosen(ctx, trace), _f(search.get("tolerance_overall")))
    return out


def _chosen(ctx: Mapping[str, Any], trace: list[Any]) -> str | None:
    """The label of the trial that produced the candidate (same recipe JSON), else the recipe's label."""
    recipe = ctx.get("recipe") or {}
    same = [t for t in trace if isinstance(t, Mapping) and t.get("passed") and t.get("recipe") == recipe.get("json")]
    return str(same[-1].get("label")) if same else recipe.get("label")


def plot_links(paths: Sequence[str], run_id: str) -> list[dict[str, str]]:
    """The card's links to logged figures: the MLflow server's ``get-artifact`` route, relative
    so that it resolves against the UI's own address (the version description is rendered there)."""
    from urllib.parse import urlencode

    return [
        {"title": TITLES.get(p, p), "path": p, "url": "get-artifact?" + urlencode({"path": p, "run_uuid": run_id})}
        for p in paths
    ]
