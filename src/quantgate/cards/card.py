"""Render the model card, in the Hugging Face card format, from the run's real values.

- **Metadata** (the YAML header): built with huggingface_hub's ``ModelCardData`` and
  ``EvalResult`` (``base_model``, ``base_model_relation: quantized``, ``model-index`` with fp32
  and quantized results overall and per group, ``license``, ``tags``), never hand-written YAML.
- **Body**: the Jinja2 template quantgate ships, or the project's own ``registry/model_card.md.j2``
  when it has one (see :func:`quantgate.project.model_card_template`), with the sections of
  *Model Cards for Model Reporting* (Mitchell et al., 2019). The template sees the context keys
  (what ``pipeline.card_context`` builds), ``card`` (values derived here: uses, intervals,
  search and flip-audit tables) and ``card_data`` (the YAML header).
- **JSON twin** (``model_card.json``): the same context, JSON-safe (NaN -> null), plus ``card``
  and ``card_data`` as a dict.

Pure: values in, text out; the only file read is the template.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from quantgate.errors import ConfigError
from quantgate.registry.contract import MAX_DESCRIPTION_CHARS
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from huggingface_hub import ModelCardData

Z95 = 1.959963984540054
HF_PIPELINE_TAGS = {"tabular-classification", "text-classification"}
PRECISIONS = ("int8", "int4", "fp8", "fp16", "bf16")
_OUT_OF_SCOPE = re.compile(
    r"\b(not for|not to be used|not intended|must not|should not|do not|don't|never|out of scope|only for)\b", re.I
)
# optional context keys this module understands (all may be absent)
OPTIONAL_KEYS = (
    "search_trace",
    "flip_audit",
    "license",
    "intended_use",
    "out_of_scope",
    "reading",
    "warnings",
    "coverage",
    "hardware",
    "plots",
    "served",
)


# --- small pure helpers ----------------------------------------------------------------------


def _f(v: Any) -> float | None:
    """A finite float or None (NaN / None / non-numbers are 'not measured')."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def share_interval(p: Any, n: Any, z: float = Z95) -> tuple[float, float] | None:
    """Wilson interval (:func:`quantgate.evaluate.intervals.wilson`) of a share ``p`` observed on
    ``n`` rows, or None when either is not measured; ``k = round(p * n)`` because ``p`` is a share
    of whole rows (an accuracy), and ``z`` becomes the two-sided confidence ``2 * Phi(z) - 1``."""
    pf, nf = _f(p), _f(n)
    if pf is None or nf is None or nf <= 0 or not 0.0 <= pf <= 1.0:
        return None
    from scipy.stats import norm

    from quantgate.evaluate.intervals import wilson as wilson_interval

    trials = round(nf)
    if trials < 1:
        return None
    return wilson_interval(round(pf * trials), trials, float(2 * norm.cdf(z) - 1))


def json_safe(x: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, unknown objects -> str (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if hasattr(x, "__dict__"):
        return json_safe(vars(x))
    return str(x)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.4f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_cell(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[Mapping[str, Any]], limit: int = 50) -> dict[str, Any]:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    return {
        "columns": columns,
        "rows": [[_cell(r.get(c, "")) for c in columns] for r in rows[:limit]],
        "omitted": max(0, len(rows) - limit),
    }


# --- derived sections ------------------------------------------------------------------------


def _uses(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """Intended and out-of-scope uses: explicit keys win; else the onboarding ``description`` is
    split into sentences, and those that restrict use ("not for ...", "must not ...") are out of scope."""
    cfg = ctx.get("config", {}) or {}
    desc = str(cfg.get("description") or ctx.get("source", {}).get("description") or "").strip()
    intended = ctx.get("intended_use") or cfg.get("intended_use")
    out = ctx.get("out_of_scope") or cfg.get("out_of_scope")
    if intended is None or out is None:
        parts = [p.strip().rstrip(".;").strip() for p in re.split(r"(?<=[.;])\s+", desc) if p.strip()]
        restricted = [p for p in parts if _OUT_OF_SCOPE.search(p)]
        allowed = [p for p in parts if p not in restricted]
        if intended is None:
            intended = ". ".join(allowed) + "." if allowed else ""
        if out is None:
            out = [p[0].upper() + p[1:] + "." for p in restricted]
    out_list = [out] if isinstance(out, str) else list(out)
    return {"intended": str(intended), "out_of_scope": out_list, "description": desc}


def _interval(d: Any) -> tuple[float, float] | None:
    if isinstance(d, Mapping) and _f(d.get("low")) is not None and _f(d.get("high")) is not None:
        return float(d["low"]), float(d["high"])
    if isinstance(d, (list, tuple)) and len(d) == 2 and _f(d[0]) is not None and _f(d[1]) is not None:
        return float(d[0]), float(d[1])
    return None


def _overall(ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    m = ctx["metrics"]
    n = m.get("n")
    intervals = dict(m.get("intervals", {}) or {})
    if "accuracy" not in intervals and m.get("accuracy_drop"):
        intervals["accuracy"] = m["accuracy_drop"]
    from quantgate.evaluate.catalog import HIGHER_IS_BETTER

    rows = []
    for k, base in m["baseline"].items():
        cand = m["candidate"].get(k)
        b, cnd = _f(base), _f(cand)
        # "worse by": the drop of a higher-is-better metric, the rise of a lower-is-better one,
        # the same sign convention as the paired-bootstrap intervals beside it
        worse = None if b is None or cnd is None else (b - cnd if k in HIGHER_IS_BETTER else cnd - b)
        rows.append(
            {
                "metric": k,
                "baseline": b,
                "candidate": cnd,
                "drop": worse,
                "drop_ci": _interval(intervals.get(k)),
                "baseline_ci": share_interval(b, n) if k == "accuracy" else None,
                "candidate_ci": share_interval(cnd, n) if k == "accuracy" else None,
            }
        )
    return rows


def _groups(ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for g in ctx.get("groups", []) or []:
        b, cnd = _f(g.get("baseline_accuracy")), _f(g.get("candidate_accuracy"))
        drop_ci = _interval(g.get("interval")) or _interval((g.get("drop_low"), g.get("drop_high")))
        rows.append(
            {
                "attribute": g.get("attribute"),
                "group": g.get("group"),
                "n": g.get("n"),
                "baseline": b,
                "candidate": cnd,
                "drop": _f(g.get("drop"))
                if g.get("drop") is not None
                else (None if b is None or cnd is None else b - cnd),
                "baseline_ci": share_interval(b, g.get("n")),
                "candidate_ci": share_interval(cnd, g.get("n")),
                "drop_ci": drop_ci,
            }
        )
    return rows


def _search(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The tuner's search trace, whatever its exact shape: a list of trials, or a dict with
    ``trials`` (and optionally ``summary`` / ``chosen``)."""
    trace = ctx.get("search_trace")
    if not trace:
        return {"performed": False, "summary": "no search: fixed recipe", "chosen": None, **_table([])}
    summary, chosen, trials = "", None, trace
    if isinstance(trace, Mapping):
        summary = str(trace.get("summary", ""))
        chosen = trace.get("chosen")
        trials = trace.get("trials", [])
        if not trials:
            trials = [{k: v for k, v in trace.items() if k not in ("summary", "chosen")}]
    rows = [
        _trial_row(t) if isinstance(t, Mapping) else {"trial": t}
        for t in (trials if isinstance(trials, list) else [trials])
    ]
    summary = summary or str((ctx.get("search") or {}).get("summary") or "")
    summary = summary or f"{len(rows)} candidate recipe(s) tried on the calibration data"
    return {"performed": True, "summary": summary, "chosen": _cell(chosen) if chosen else None, **_table(rows)}


def _trial_row(t: Mapping[str, Any]) -> dict[str, Any]:
    """One tuner trial as a readable row (the full recipe JSON stays in model_card.json)."""
    if "label" not in t or "metrics" not in t:
        return dict(t)
    m = t.get("metrics") or {}
    return {
        "recipe": t["label"],
        "result": "pass" if t.get("passed") else "fail",
        "accuracy drop": m.get("accuracy_drop"),
        "worst group drop": m.get("worst_group_drop"),
        "agreement": m.get("agreement"),
        "speedup": m.get("speedup"),
        "quantized / float": f"{t.get('quantized', 0)} / {t.get('kept_float', 0)}",
        "seconds": t.get("seconds"),
        "reason": t.get("reason", ""),
        "pick": t.get("pick", ""),
    }


def _flip(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The flip audit (predictions that changed), if the evaluation computed one."""
    audit = ctx.get("flip_audit")
    if not audit:
        return {"computed": False, "summary": "flip audit not computed for this candidate", **_table([])}
    if isinstance(audit, Mapping):
        rows = audit.get("rows") or audit.get("groups") or audit.get("by_group")
        scalars = {k: v for k, v in audit.items() if not isinstance(v, (list, Mapping)) and k != "summary"}
        summary = str(audit.get("summary") or ", ".join(f"{k} {_cell(v)}" for k, v in scalars.items()))
        if isinstance(rows, list):
            return {"computed": True, "summary": summary, **_table([r for r in rows if isinstance(r, Mapping)])}
        return {
            "computed": True,
            "summary": summary,
            **_table([{"measure": k, "value": v} for k, v in scalars.items()]),
        }
    if isinstance(audit, list):
        return {
            "computed": True,
            "summary": f"{len(audit)} rows",
            **_table([r for r in audit if isinstance(r, Mapping)]),
        }
    return {"computed": True, "summary": _cell(audit), **_table([])}


def _precision_tags(recipe: Mapping[str, Any]) -> list[str]:
    text = " ".join(str(recipe.get(k, "")) for k in ("type", "label")).lower()
    return [p for p in PRECISIONS if p in text]


def license_of(ctx: Mapping[str, Any]) -> str:
    cfg = ctx.get("config", {}) or {}
    tags = ctx.get("source", {}).get("tags", {}) or {}
    return str(
        ctx.get("license") or cfg.get("license") or tags.get("quantgate.license") or tags.get("license") or "other"
    )


def card_tags(ctx: Mapping[str, Any]) -> list[str]:
    recipe = ctx.get("recipe", {})
    raw = ["quantgate", "quantized", *_precision_tags(recipe), recipe.get("type"), recipe.get("backend")]
    raw += [ctx.get("config", {}).get("task"), "pytorch", "mlflow"]
    out: list[str] = []
    for t in raw:
        if t and str(t) not in out:
            out.append(str(t))
    return out


def base_model(ctx: Mapping[str, Any]) -> str:
    """``<source name>/<version>``: the ``quantgate.source`` tag's form (a hub-style id)."""
    return f"{ctx['source']['name']}/{ctx['source']['version']}"


def card_data(ctx: Mapping[str, Any]) -> ModelCardData:
    """The Hugging Face metadata, with ``model-index`` results overall and per group."""
    from huggingface_hub import EvalResult, ModelCardData

    task = str(ctx.get("config", {}).get("task") or "classification")
    digest = ctx.get("data", {}).get("digests", {}).get("evaluation")
    common: dict[str, Any] = {
        "task_type": task,
        "dataset_type": "quantgate-evaluation",
        "dataset_name": f"{ctx['source']['name']} evaluation data",
        "dataset_split": "evaluation",
        "dataset_revision": digest,
    }
    results = []
    m = ctx["metrics"]
    for k, v in m["baseline"].items():
        for which, value in (("fp32", v), ("quantized", m["candidate"].get(k))):
            if _f(value) is not None:
                results.append(EvalResult(**common, metric_type=k, metric_name=f"{k} ({which})", metric_value=value))
    drop = m.get("accuracy_drop") or {}
    if _f(drop.get("estimate")) is not None:
        args = {k: drop[k] for k in ("low", "high", "confidence") if _f(drop.get(k)) is not None}
        results.append(
            EvalResult(
                **common,
                metric_type="accuracy_drop",
                metric_name="accuracy drop (fp32 - quantized)",
                metric_value=drop["estimate"],
                metric_args=args or None,
            )
        )
    if _f(m.get("flip_rate")) is not None:
        results.append(
            EvalResult(**common, metric_type="flip_rate", metric_name="flip rate", metric_value=m["flip_rate"])
        )
    for g in ctx.get("groups", []) or []:
        for which, key in (("fp32", "baseline_accuracy"), ("quantized", "candidate_accuracy")):
            if _f(g.get(key)) is not None:
                results.append(
                    EvalResult(
                        **{**common, "dataset_config": f"{g['attribute']}={g['group']}"},
                        metric_type="accuracy",
                        metric_name=f"accuracy ({which})",
                        metric_value=g[key],
                    )
                )
    kwargs: dict[str, Any] = {}
    if task in HF_PIPELINE_TAGS:
        kwargs["pipeline_tag"] = task
    return ModelCardData(
        model_name=str(ctx["name"]),
        base_model=base_model(ctx),
        base_model_relation="quantized",
        license=license_of(ctx),
        tags=card_tags(ctx),
        eval_results=results or None,
        **kwargs,
    )


def _default_groups(ctx: Mapping[str, Any]) -> str | None:
    """The label column when the groups are the default per-class ones (a classifier whose
    onboarding names no sensitive attribute or slice: its classes are the groups), else None.
    For the Factors section, which would otherwise say only "none declared"."""
    cfg = ctx.get("config", {}) or {}
    label = cfg.get("label")
    if not label or not str(cfg.get("task") or "").endswith("-classification"):
        return None
    if cfg.get("sensitive_attributes") or cfg.get("slices"):
        return None
    # a policy's slices: would be groups of other columns (the default applies only without them)
    if any(g.get("attribute") != label for g in ctx.get("groups", []) or []):
        return None
    return str(label)


def derived(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The ``card`` namespace the template sees (also kept in the JSON twin)."""
    src = ctx["source"]
    groups = _groups(ctx)
    worst = max((g for g in groups if g["drop"] is not None), key=lambda g: g["drop"], default=None)
    return {
        "base_model": base_model(ctx),
        "source_uri": src.get("uri") or f"models:/{src['name']}/{src['version']}",
        "source_digest": src.get("digest"),
        "license": license_of(ctx),
        "tags": card_tags(ctx),
        "uses": _uses(ctx),
        "overall": _overall(ctx),
        "groups": groups,
        "worst_group": worst,
        "default_groups": _default_groups(ctx),
        "search": _search(ctx),
        "flip": _flip(ctx),
    }


# --- rendering ---------------------------------------------------------------------------------


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = lambda v: "n/a" if _f(v) is None else f"{100 * float(v):.2f}%"
    env.filters["num"] = lambda v, nd=4: "n/a" if _f(v) is None else f"{float(v):.{nd}f}"
    env.filters["signed"] = lambda v, nd=4: "n/a" if _f(v) is None else f"{float(v):+.{nd}f}"
    env.filters["ci"] = lambda iv, nd=4: "n/a" if not iv else f"{float(iv[0]):.{nd}f} .. {float(iv[1]):.{nd}f}"
    env.filters["cell"] = _cell
    return env


def card_twin(context: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON twin: the context (JSON-safe) plus ``card`` and ``card_data``."""
    meta: dict[str, Any] = card_data(context).to_dict()  # type: ignore[no-untyped-call]
    twin: dict[str, Any] = json_safe({**context, "card": derived(context), "card_data": meta})
    return twin


def render_model_card(context: dict[str, Any], settings: Settings | None = None) -> tuple[str, dict[str, Any]]:
    """(Markdown with the YAML metadata header, JSON twin) for ``pipeline.card_context(...)``.

    A template that drops the ``---`` header gets it back; a template whose output does not
    parse as a Hugging Face card is an error naming the template.
    """
    import jinja2
    from huggingface_hub import ModelCard

    from quantgate.project import model_card_template

    path = model_card_template(settings or get_settings())
    data = card_data(context)
    header = data.to_yaml()
    values = {k: None for k in OPTIONAL_KEYS} | dict(context)
    try:
        text = _env().from_string(path.read_text()).render(**values, card=derived(context), card_data=header)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"model card template {path} failed: {exc}") from exc
    if not text.startswith("---"):
        text = f"---\n{header}\n---\n\n{text}"
    try:
        parsed = ModelCard(text)
    except Exception as exc:  # huggingface_hub raises ValueError or yaml errors
        raise ConfigError(f"model card rendered from {path} is not a valid Hugging Face card: {exc}") from exc
    if parsed.data.to_dict() != data.to_dict():  # type: ignore[no-untyped-call]
        raise ConfigError(f"{path} must start with the metadata header: ---\\n{{{{ card_data }}}}\\n---")
    return text, card_twin(context)


#: the parts of a long card the description keeps first (headings starting so), then the rest in order
DESCRIPTION_PRIORITY = (
    "## Verdict",
    "## How quantgate read",
    "## Plots",
    "### Overall",
    "## Model details",
    "### By group",
    "## Recipe search",
    "## Flip audit",
)


def card_description(card_md: str, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    """The card without its YAML header: the registered version's description (the MLflow UI
    renders Markdown but would show the YAML as text). A card longer than ``limit`` keeps its
    opening and the sections of :data:`DESCRIPTION_PRIORITY` that fit, in the card's order, and
    ends with a note naming what was left out and where the whole card is."""
    from huggingface_hub import ModelCard

    body = str(ModelCard(card_md).text).lstrip("\n")
    return body if len(body) <= limit else fit_sections(body, limit)


def _units(body: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``body`` as its opening and units ``(heading, text, head)``: each ``## `` section, or for
    one with ``### `` subsections each subsection, whose ``head`` is its section's text before
    the first subsection (written once, before the first subsection kept)."""
    parts = re.split(r"(?m)^(?=## )", body)
    units: list[tuple[str, str, str]] = []
    for part in parts[1:]:
        subs = re.split(r"(?m)^(?=### )", part)
        if len(subs) == 1:
            units.append((part.splitlines()[0], part, ""))
        else:
            units.extend((sub.splitlines()[0], sub, subs[0]) for sub in subs[1:])
    return parts[0], units


def fit_sections(body: str, limit: int, priority: tuple[str, ...] = DESCRIPTION_PRIORITY) -> str:
    """Markdown ``body`` cut to at most ``limit`` characters by whole sections (pure): the opening,
    then the units (see :func:`_units`) in ``priority`` order and then the card's, each if it still
    fits; written in the card's order, with a closing note naming the headings left out."""
    opening, units = _units(body)
    order = sorted(
        range(len(units)),
        key=lambda i: (next((k for k, pre in enumerate(priority) if units[i][0].startswith(pre)), len(priority)), i),
    )

    def note(left_out: list[int], kept: int) -> str:
        names = ", ".join(units[i][0].lstrip("# ").strip() for i in left_out)
        return (
            f"\n\n---\n*MLflow keeps at most {limit:,} characters of a description: this is {kept:,} of the card's "
            f"{len(body):,}. Left out here: {names}. The whole card is `model_card.md` on this version's run "
            "(Artifacts tab).*\n"
        )

    def render(chosen: set[int]) -> str:
        out, heads = [opening], set()
        for i, (_, text, head) in enumerate(units):
            if i in chosen:
                if head and head not in heads:
                    heads.add(head)
                    out.append(head)
                out.append(text)
        text = "".join(out).rstrip("\n")
        return text + note([i for i in range(len(units)) if i not in chosen], len(text))

    chosen: set[int] = set()
    for i in order:
        if len(render(chosen | {i})) <= limit:
            chosen.add(i)
    text = render(chosen)
    if len(text) > limit:  # the opening alone is too long: cut it at a line
        end = note(list(range(len(units))), 0)
        cut = opening[: max(0, limit - len(end) - 40)].rsplit("\n", 1)[0]
        text = cut + "\n\n(opening cut)" + note(list(range(len(units))), len(cut))
    return text[:limit]


def render_card(context: dict[str, Any], settings: Settings | None = None) -> str:
    """The Markdown card (kept for existing callers; see :func:`render_model_card`)."""
    return render_model_card(context, settings)[0]


def card_json(context: dict[str, Any]) -> str:
    """``model_card.json``: the JSON twin, strict JSON."""
    return json.dumps(card_twin(context), indent=2, sort_keys=True, allow_nan=False)
