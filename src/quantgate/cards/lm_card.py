"""The model card of a language-model candidate (pure: a context dict in, Markdown out).

Same role and sections as the classifier card (what it is, the verdict rule by rule, the
evidence, the data checks, what was quantized, provenance), with the figures of a language
model: perplexity, bits per byte, KL, top-1 and greedy-generation agreement, overall and per
slice with their intervals, and sample generations of fp32 and the candidate side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from quantgate.cards.card import json_safe

FIGURES = (
    ("perplexity (fp32 → candidate)", None),
    ("perplexity_ratio", "perplexity_ratio"),
    ("nll_increase", "nll_increase"),
    ("bits per byte (fp32 → candidate)", None),
    ("kl_mean", "kl_mean"),
    ("kl_p99", "kl_p99"),
    ("top1_agreement", "top1_agreement"),
    ("generation_agreement", "generation_agreement"),
)


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not measured"
    if isinstance(v, float) and (abs(v) < 1e-3 and v != 0):
        return f"{v:.2e}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _ci(f: Mapping[str, Any], metric: str) -> str:
    iv = (f.get("intervals") or {}).get(metric)
    if not iv:
        return ""
    return f" ({_num(iv.get('low'))}..{_num(iv.get('high'))})"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _figure_rows(f: Mapping[str, Any]) -> list[str]:
    return [
        f"| perplexity | {_num(f['baseline_perplexity'], 2)} → {_num(f['candidate_perplexity'], 2)} |",
        f"| perplexity ratio (95% CI) | {_num(f['perplexity_ratio'])}{_ci(f, 'perplexity_ratio')} |",
        f"| loss increase, nats/token | {_num(f['nll_increase'])}{_ci(f, 'nll_increase')} |",
        f"| bits per byte | {_num(f['baseline_bits_per_byte'])} → {_num(f['candidate_bits_per_byte'])} |",
        f"| KL mean / p99, nats | {_num(f['kl_mean'])} / {_num(f['kl_p99'])} |",
        f"| top-1 agreement | {_num(f['top1_agreement'])}{_ci(f, 'top1_agreement')} |",
        f"| generation agreement ({f.get('prompts', 0)} prompts) | "
        f"{_num(f.get('generation_agreement'))}{_ci(f, 'generation_agreement')} |",
    ]


def _slices(ev: Mapping[str, Any]) -> list[str]:
    rows = ev.get("slices") or []
    out = ["| slice | passages | tokens | perplexity fp32 → candidate | ratio (95% CI) | top-1 | disagreement ratio |"]
    out.append("|---|---|---|---|---|---|---|")
    for s in rows:
        f = s["figures"]
        out.append(
            f"| {_cell(s['column'])}={_cell(s['value'])} | {f['passages']} | {f['tokens']} | "
            f"{_num(f['baseline_perplexity'], 2)} → {_num(f['candidate_perplexity'], 2)} | "
            f"{_num(f['perplexity_ratio'])}{_ci(f, 'perplexity_ratio')} | {_num(f['top1_agreement'])} | "
            f"{_num(s['disagreement_ratio'], 2)} |"
        )
    if not rows:
        out = ["No slice was evaluated (the onboarding names no `slices:`, or every slice is too small)."]
    small = ev.get("small_slices") or []
    if small:
        listed = ", ".join(f"{c}={v} ({n})" for c, v, n in small[:20])
        more = f" and {len(small) - 20} more" if len(small) > 20 else ""
        out.append("")
        out.append(f"Slices under {ev.get('min_slice_size')} passages are listed, not judged: {listed}{more}.")
    gaps = ev.get("gaps") or []
    if gaps:
        out.append("")
        for g in gaps:
            out.append(
                f"- `{g['column']}`: worst slice {g['worst']} (ratio {_num(g['worst_ratio'])}), best {g['best']} "
                f"({_num(g['best_ratio'])}), gap {_num(g['gap'])}"
            )
    return out


def _examples(examples: Sequence[Mapping[str, Any]]) -> list[str]:
    if not examples:
        return ["No sample generations (no prompt was long enough)."]
    out = ["| prompt | fp32 continues | candidate continues | same |", "|---|---|---|---|"]
    for e in examples:
        out.append(
            f"| {_cell(e['prompt'])} | {_cell(e['fp32'])} | {_cell(e['candidate'])} | "
            f"{'yes' if e['fp32'] == e['candidate'] else 'no'} |"
        )
    return out


def _verdict(v: Mapping[str, Any]) -> list[str]:
    out = ["| rule | severity | observed | bound | outcome | evidence |", "|---|---|---|---|---|---|"]
    for r in v["rules"]:
        outcome = r["outcome"] if r["outcome"] in ("pass",) else f"**{r['outcome']}**"
        out.append(
            f"| {r['rule_id']} | {r['severity']} | {_num(r['observed'])} | {_num(r['bound'])} | {outcome} | "
            f"{_cell(r['evidence'])} |"
        )
    return out


def render_lm_card(ctx: Mapping[str, Any]) -> str:
    """The Markdown card of a language-model candidate (see the module docstring)."""
    src, rec, v, ev = ctx["source"], ctx["recipe"], ctx["verdict"], ctx["evaluation"]
    q, sizes, val = ctx["quantization"], ctx["sizes"], ctx["validation"]
    status = "passed" if v["status"] == "pass" else "FAILED"
    lines = [
        f"# {ctx['name']}: {rec['label']} of {src['name']} v{src['version']}",
        "",
        f"A quantized causal language model: **{rec['label']}** ({rec['summary']}) of `{src['name']}` version "
        f"{src['version']}, governed by quantgate. The gate ({ctx['policy']['name']}) **{status}**; "
        + (
            "approval pending: a person approves before it is promoted." if v["status"] == "pass" else "not promotable."
        ),
        "",
        f"Source: {src.get('model_class', 'causal LM')}, {src.get('parameters', '?'):,} parameters, "
        f"read from MLflow's transformers flavor (task text-generation).",
        "",
        "## Verdict",
        "",
        *_verdict(v),
        "",
        "## Language-model figures",
        "",
        f"Teacher-forced on {ev['overall']['passages']} held-out passages ({ev['overall']['tokens']:,} predicted "
        f"tokens, at most {ev['settings'].get('max_tokens')} a passage; {ev['settings'].get('truncated_passages')} "
        f"cut), paired-bootstrap intervals over passages ({ev['settings'].get('resamples')} resamples, "
        f"{ev['settings'].get('confidence')}); greedy generation on {ev['settings'].get('prompts')} prompts x "
        f"{ev['settings'].get('new_tokens')} tokens.",
        "",
        "### Overall",
        "",
        "| figure | value |",
        "|---|---|",
        *_figure_rows(ev["overall"]),
        "",
        "### By slice",
        "",
        *_slices(ev),
        "",
        "### Sample generations, fp32 vs candidate",
        "",
        *_examples(ev.get("examples") or []),
        "",
        "## What was quantized",
        "",
        f"{len(q['quantized'])} layers quantized, {len(q['kept_float'])} kept in float; weight bits "
        f"{q['weight_bits']}, compute dtype {q['compute_dtype']}; quantized parameter share "
        f"{_num(q.get('quantized_param_share'), 3)}.",
        "",
        f"Stored parameters: {sizes['baseline_bytes'] / 1e6:.2f} MB fp32 → {sizes['candidate_bytes'] / 1e6:.2f} MB "
        f"(ratio {_num(sizes['size_ratio'], 3)}); by kind: "
        + ", ".join(f"{k} {b / 1e6:.2f} MB" for k, b in sorted(q.get("size_by_kind", {}).items())),
        "",
    ]
    if q.get("skipped"):
        lines += ["Kept in float, and why:", ""]
        lines += [f"- `{n}`: {why}" for n, why in list(q["skipped"].items())[:30]]
        lines.append("")
    if q.get("group_sizes"):
        groups: dict[int, int] = {}
        for g in q["group_sizes"].values():
            groups[g] = groups.get(g, 0) + 1
        lines += ["int4 group sizes: " + ", ".join(f"{g} ({n} layers)" for g, n in sorted(groups.items())), ""]
    if ctx.get("trials"):
        lines += ["## Recipe choice", "", ctx.get("trials_note", ""), ""]
        lines += ["| recipe | outcome | reason |", "|---|---|---|"]
        lines += [f"| {t['label']} | {t['outcome']} | {_cell(t['reason'])} |" for t in ctx["trials"]]
        lines.append("")
    lines += ["## Data checks", "", f"Calibration and evaluation text: {val['summary']}", ""]
    lines += ["| check | role | status | observed | expected |", "|---|---|---|---|---|"]
    for ch in val["checks"]:
        lines.append(
            f"| {_cell(ch['name'])} | {ch.get('column') or ''} | {ch['status']} | {_cell(ch['observed'])} | "
            f"{_cell(ch['expected'])} |"
        )
    lines += [
        "",
        "## Faithful reading",
        "",
        f"quantgate's reading of the source equals the model of the pipeline MLflow loads on "
        f"{ctx['reading']['texts']} sample texts ({ctx['reading']['positions']} positions): next-token "
        f"log-probabilities within {_num(ctx['reading']['max_logprob_diff'])} (bound {ctx['reading']['bound']:g}), "
        "same token ids. The logged candidate passed the same check against the candidate gated here.",
        "",
        "## Hardware",
        "",
        *_hardware(ctx.get("hardware") or {}),
        "",
        "## Not measured here",
        "",
        "- speed (prefill tokens/s, decode ms/token): not part of this evaluation yet "
        "(`quantgate bench --lm` is planned);",
        "- the calibration text is validated but not used: the weight-only recipes need no calibration.",
        "",
        "## Provenance",
        "",
        f"Recipe digest `{rec['digest']}`; policy `{ctx['policy']['name']}` digest `{ctx['policy']['digest']}`; "
        "data digests: " + ", ".join(f"{k} `{d}`" for k, d in sorted(ctx["data"]["digests"].items())) + ". "
        "The signed in-toto statement is on the version's run (`quantgate verify`).",
    ]
    if ctx.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {w}" for w in ctx["warnings"]]]
    return "\n".join(lines) + "\n"


def _hardware(hw: Mapping[str, Any]) -> list[str]:
    """Where the verdict was measured, and the ISA it is recorded for."""
    host = hw.get("host") or {}
    if not hw.get("target"):
        return ["Not recorded."]
    return [
        f"Measured and gated on **{hw['target']}** ({host.get('cpu_model', '?')}, {host.get('cpu_count', '?')} CPUs, "
        f"{host.get('torch_threads', '?')} torch threads): the weight-only and bf16 CPU kernels are chosen by "
        "the ISA, so the verdict is recorded for this one (`quantgate.target`); `quantgate serve` on another "
        "ISA warns."
    ]


#: what the registered version's description keeps first when the card is over MLflow's limit
LM_DESCRIPTION_PRIORITY = (
    "## Verdict",
    "### Overall",
    "### Sample generations",
    "### By slice",
    "## Data checks",
    "## What was quantized",
    "## Faithful reading",
)


def lm_card_description(card_md: str) -> str:
    """The card as the version's description, cut by whole sections to MLflow's limit."""
    from quantgate.cards.card import fit_sections
    from quantgate.registry.contract import MAX_DESCRIPTION_CHARS

    if len(card_md) <= MAX_DESCRIPTION_CHARS:
        return card_md
    return fit_sections(card_md, MAX_DESCRIPTION_CHARS, LM_DESCRIPTION_PRIORITY)


def lm_card_json(ctx: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(dict(ctx)), indent=2, sort_keys=True, allow_nan=False)
