"""Quantize: one fixed recipe, or the accuracy-aware search under the policy, on the calibration rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantgate.errors import ConfigError, DataError, GateFailed, QuantgateError, UnsupportedModel, read_config_text
from quantgate.onboarding import ModelConfig
from quantgate.steps.context import Datasets, Evaluation, Search, group_columns

if TYPE_CHECKING:
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy import Policy, Verdict
    from quantgate.quantize.recipes import QuantizationResult, Recipe


def resolve_recipe(name_or_file: str | None, cfg: ModelConfig, policy: Policy | None = None) -> Recipe | None:
    """The fixed recipe to apply, or None for ``auto`` (search under the policy). Its hardware
    target is the onboarding's, else the policy's ``target``, else ``auto``."""
    from quantgate.quantize.recipes import get_recipe, recipe_from_dict

    chosen = name_or_file or cfg.recipe
    if chosen == "auto":
        return None
    p = Path(chosen)
    if p.suffix == ".json":
        if not p.exists():
            raise DataError(f"recipe file not found: {p}")
        try:
            spec = json.loads(read_config_text(p, "recipe file"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"recipe file {p} is not valid JSON: {exc}") from None
        if not isinstance(spec, dict):
            raise ConfigError(
                f"recipe file {p} holds a JSON {type(spec).__name__}, not an object",
                'a recipe is {"_type": ..., "_version": ..., "_data": {...}} (see docs/recipes.md)',
            )
        return recipe_from_dict(spec)
    import dataclasses

    spec_type = get_recipe(chosen)
    has_target = any(f.name == "target" for f in dataclasses.fields(spec_type))
    target = cfg.target_for(policy.target if policy is not None else None)
    return get_recipe(chosen, target=target) if has_target else spec_type


def calibration_batches(model: WrappedModel, data: Datasets, n_batches: int = 8) -> list[tuple[Any, ...]]:
    """Example batches from the calibration data: what static recipes calibrate on."""
    return model.batches(data.calibration, 32)[:n_batches]


def _candidate(
    model: WrappedModel, result: QuantizationResult, recipe: Recipe, search: dict[str, Any] | None = None
) -> WrappedModel:
    from quantgate.quantize.recipes import recipe_to_dict

    candidate = model.with_module(result.module)  # same kind as the source (e.g. its PythonModel)
    record = result.summary()
    candidate.spec["quantization"] = {
        **record,
        "recipe": recipe_to_dict(recipe),
        "resolved_recipe": record["recipe"],
        "digest": recipe.digest,
        **({"search": search} if search else {}),
    }
    return candidate


def quantize_candidate(
    model: WrappedModel, recipe: Recipe, data: Datasets | None = None
) -> tuple[WrappedModel, QuantizationResult]:
    """Apply one fixed recipe (static recipes calibrate on the calibration data)."""
    from quantgate.quantize.recipes import apply_recipe

    calib = calibration_batches(model, data) if data is not None else None
    try:
        result = apply_recipe(model.module, recipe, calibration=calib)
        candidate = _candidate(model, result, recipe)
        if data is not None:  # runs as the gate will run it: a full default batch, and batch 1
            candidate.predict_proba(data.calibration.head(256))
            candidate.predict_proba(data.calibration.head(1))
    except QuantgateError:
        raise
    except Exception as exc:
        raise recipe_failed(recipe, exc) from exc
    return candidate, result


def recipe_failed(recipe: Recipe, exc: BaseException) -> UnsupportedModel:
    """A fixed recipe that cannot be built, or whose candidate cannot run, on this model: one line
    naming the recipe and the error (exit 2, nothing registered), as the search records a failed
    trial (:func:`quantgate.quantize.tuner.error_line`)."""
    from quantgate.quantize.tuner import error_line

    return UnsupportedModel(
        f"recipe '{recipe.label}' failed on this model: {error_line(exc)}",
        "name another recipe with --recipe (quantgate recipes lists them), or recipe: auto to search",
    )


#: rule metrics the evaluation measures outside the prediction comparison (timing, files, the
#: flip audit): the search cannot anticipate them on its rows
NOT_FROM_PREDICTIONS = frozenset({"speedup", "size_ratio", "max_flip_ratio"})


def search_confidence(policy: Policy) -> tuple[float, int]:
    """The confidence (and bootstrap resamples) at which the search judges a drop's upper bound.

    The search keeps the first (fastest) of up to ``search.budget_trials`` trials that passes on
    the same calibration rows, so a trial that passes by chance is the one it would keep (on the
    demo text model: six int8 fallbacks failed on 1,000 rows, the seventh passed at -0.5 point,
    and the gate then refused it on the evaluation rows). Bonferroni over the trial budget:
    ``1 - (1 - confidence) / budget_trials``, with resamples enough for at least 10 draws in
    each tail of that interval."""
    import math

    conf = 1.0 - (1.0 - policy.bootstrap.confidence) / max(1, policy.search.budget_trials)
    tail = (1.0 - conf) / 2.0
    return conf, max(policy.bootstrap.resamples, math.ceil(10.0 / tail))


def gate_judge(
    cfg: ModelConfig, policy: Policy, *, correct_for_search: bool = True, screen: bool = False
) -> Callable[..., tuple[bool, str, dict[str, Any] | None]]:
    """How the search judges a trial the way the gate will: the policy's blocking rules on
    predictions (with the model's overrides), applied by the gate's own code
    (:func:`quantgate.policy.gate_candidate`) to a comparison of the search rows with the
    policy's bootstrap, so a drop rule is judged on the upper bound of its paired-bootstrap
    interval exactly as on the evaluation rows. Speed, size and flip-audit rules are left to
    the gate (the search has its objective for speed).

    The rules are judged twice and both must pass: at the policy's confidence (as the gate
    judges; a group rule that blocks only when its interval excludes 0 is strictest there) and
    at the search's Bonferroni confidence (:func:`search_confidence`; an upper bound is
    strictest there), since the search picks among several trials on the same rows.
    ``correct_for_search=False`` judges at the policy's confidence only: the gate's own decision
    on rows no search chose from (``scripts/bench_search_gate.py`` scores its evaluation rows so).
    ``screen=True`` (what :func:`search_recipe` uses, with ``correct_for_search=False``): a rule the
    gate judges on the upper bound of its interval is judged on its estimate, the screen of
    :func:`search_recipe` (the gate then certifies on the evaluation rows, :func:`certify`).

    Given the trial's ``candidate`` model, the accuracy rules are also judged at each of the
    policy's served batch sizes (``policy.serving``), scored by the gate's batching code
    (:func:`quantgate.evaluate.batching.served_batching`, same seeded sample of at most
    ``max_rows`` rows), and the worst batching decides, as in the gate. A trial that already
    fails at the search's own batching is not scored again (it cannot pass); its record says so.
    Returns ``(passed, reason, served)``: ``served`` is the batching record
    (:meth:`ServedBatching.to_dict`), or None when no served batching was scored."""
    import numpy as np

    from quantgate.policy import gate_candidate
    from quantgate.steps.evaluate import policy_compare, served_for

    rules = [r for r in policy.rules_for(cfg.name) if r.severity == "block" and r.metric not in NOT_FROM_PREDICTIONS]
    if screen:
        rules = [r.model_copy(update={"judge_on": "estimate"}) if r.judge_on == "upper_bound" else r for r in rules]
    judged = policy.model_copy(update={"rules": rules, "overrides": {}})
    levels = [(f"{policy.bootstrap.confidence:.0%}", policy)]  # (label, the policy judged at that confidence)
    if correct_for_search:
        conf, resamples = search_confidence(policy)
        strict = policy.bootstrap.model_copy(update={"confidence": conf, "resamples": resamples})
        levels.append(
            (
                f"{conf:.2%} (Bonferroni over {policy.search.budget_trials} trials)",
                policy.model_copy(update={"bootstrap": strict}),
            )
        )

    def judge(
        y: Any, base_proba: Any, cand_proba: Any, rows: Any, candidate: WrappedModel | None = None
    ) -> tuple[bool, str, dict[str, Any] | None]:
        if not rules:
            return True, "no blocking rule on predictions", None
        cols = [c for c in group_columns(cfg, policy) if c in rows.columns]
        compares = [policy_compare(cfg, p, rows, cols) for _, p in levels]
        pos = np.arange(len(rows))
        cmps = [compare(y, base_proba, cand_proba, pos) for compare in compares]
        verdicts = [gate_candidate(cfg.name, judged, cmp) for cmp in cmps]
        served = None
        if candidate is None:
            where = "served batch sizes not judged (no candidate model given)"
        elif any(v.failed_rules for v in verdicts):
            where = "served batch sizes not scored: it fails already at the search's batching"
        else:
            scored: list[tuple[Any, ...]] = []

            def recording(*args: Any) -> Any:  # the served scores, compared again at the other levels below
                scored.append(args)
                return compares[0](*args)

            served = served_for(policy, candidate, rows, y, base_proba, recording)
            per_level = [served.comparisons] + [
                dict(zip(served.comparisons, [compare(*a) for a in scored], strict=True)) for compare in compares[1:]
            ]
            verdicts = [
                gate_candidate(cfg.name, judged, cmp, served=by_size)
                for cmp, by_size in zip(cmps, per_level, strict=True)
            ]
            where = "judged at the search's batching and at served batch " + ", ".join(map(str, served.batch_sizes))
        failing = [(lvl, v) for (lvl, _), v in zip(levels, verdicts, strict=True) if v.failed_rules]
        lvl, verdict = failing[0] if failing else (levels[-1][0], verdicts[-1])
        failed = set(verdict.failed_rules)
        shown = [r for r in verdict.results if r.rule_id in failed] or verdict.results
        text = "; ".join(f"{r.rule_id} {r.outcome}: {r.evidence}" for r in shown)
        return (
            not failing,
            f"{'screen: ' if screen else ''}gate rules on the search rows at {lvl} confidence "
            f"{'(upper-bound rules on the estimate) ' if screen else ''}({where}): {text}",
            (served.to_dict() if served is not None else None),
        )

    return judge


def no_recipe_passed(name: str, trace: list[dict[str, Any]], tol_overall: float) -> GateFailed:
    """The GateFailed of a search in which no trial passed: each recipe and its reason (an error's
    line, or the rule it broke), and a hint that fits: when every trial crashed, a looser policy
    would not help."""
    tried = "; ".join(f"{t['label']}: {t['reason']}" for t in trace) or "no trial ran"
    errors = sum(1 for t in trace if t.get("error"))
    if trace and errors == len(trace):
        return GateFailed(
            f"no recipe for '{name}' could be tried: all {len(trace)} trial(s) failed with an error: {tried}",
            "each error names what broke; name a recipe that runs on this model with --recipe "
            "(quantgate recipes lists them), or fix the model's export",
        )
    counts = f"{len(trace)} trial(s), {errors} failed with an error" if errors else f"{len(trace)} trial(s)"
    return GateFailed(
        f"no recipe for '{name}' met the tolerance (accuracy drop <= {tol_overall:g}) "
        f"within the search budget ({counts}): {tried}",
        "loosen the policy, raise search.budget_*, or name a recipe with --recipe",
    )


def search_recipe(
    cfg: ModelConfig, policy: Policy, model: WrappedModel, data: Datasets, candidates: list[Recipe] | None = None
) -> Search:
    """Accuracy-aware search under the policy's tolerances, on the *calibration* data: the screen.

    The tuner never sees the evaluation rows the gate judges on. Each trial is screened as the gate
    judges (the policy's blocking rules on predictions, the gate's code, at the served batch sizes),
    but a rule the gate judges on its interval's upper bound is screened on its estimate, at the
    policy's confidence, without a correction for the number of trials: on a calibration set of a
    thousand rows a quantized recipe that loses nothing cannot show an upper bound within a one-point
    tolerance at a corrected level, and the search used to retreat to ``ort-fp32`` for that alone.
    The passing trials are ranked by the pick (:func:`quantgate.quantize.tuner.rank_passing`), and
    the flow certifies them in that order with the real gate on the evaluation rows (:func:`certify`).
    A recipe that fails on this model is a failed trial with its error's line, and the search goes
    on. Raises GateFailed (nothing registered; exit 3) when no trial passed, naming each recipe.
    ``candidates``: the recipes to try, in order (default: the tuner's, for the objective).
    """
    from quantgate.quantize.tuner import tune

    if cfg.label not in data.calibration.columns:
        raise DataError(
            f"recipe search needs labels: calibration data has no '{cfg.label}' column",
            "add the label to the calibration data or name a fixed recipe (--recipe)",
        )
    tol_overall, tol_group = policy.search_tolerances(cfg.name)
    res = tune(
        model,
        data.calibration,
        cfg.label,
        group_columns(cfg, policy),  # the gate's groups: per class for a classifier that names none
        tolerance_overall=tol_overall,
        tolerance_group=tol_group,
        objective=policy.search.objective,
        budget_trials=policy.search.budget_trials,
        budget_seconds=policy.search.budget_seconds,
        calibration=calibration_batches(model, data),
        min_group_rows=policy.min_group_size,
        target=cfg.target_for(policy.target),
        judge=gate_judge(cfg, policy, correct_for_search=False, screen=True),
        group_estimate_blocks=False,  # the judge applies the policy's own group rule
        candidates=candidates,
    )
    trace = res.trace_dicts()
    if res.best is None or res.result is None:
        raise no_recipe_passed(cfg.name, trace, tol_overall)
    conf, _ = certify_confidence(policy, len(res.ranked))
    search = {
        "trace": trace,
        "sensitivity": res.sensitivity,
        "tolerance_overall": tol_overall,
        "tolerance_group": tol_group,
        "objective": policy.search.objective,
        "tuned_on": "calibration",
        "judged_as": "screen: the gate's blocking rules on predictions on the calibration rows, at the search's "
        f"batching and at served batch sizes {list(policy.serving.batch_sizes)} (worst decides), at the policy's "
        f"{policy.bootstrap.confidence:.0%} confidence, upper-bound rules judged on their estimate; then the gate "
        "certifies the passing trials on the evaluation rows, best first, up to "
        f"{min(policy.search.certify, len(res.ranked))}, "
        f"each at {conf:.2%} (Bonferroni over the candidates it may certify)",
        "chosen_because": res.chosen_because,
        "summary": f"{len(trace)} trial(s) screened on the calibration rows, {len(res.ranked)} passed; "
        f"pick {res.chosen_because} (not yet certified on the evaluation rows)",
    }
    positions = [next(i for i, t in enumerate(res.trace) if t is trial) for _, _, trial in res.ranked]
    ranked = [
        (r, _candidate(model, q, r, search), q, pos) for (r, q, _), pos in zip(res.ranked, positions, strict=True)
    ]
    return Search(res.best, ranked[0][1], res.result, trace, res.sensitivity, ranked=ranked, search=search)


def certify_confidence(policy: Policy, candidates: int) -> tuple[float, int]:
    """The confidence (and bootstrap resamples) at which the gate certifies a searched candidate.

    The flow certifies up to ``K = min(search.certify, candidates)`` of them on the same evaluation
    rows and keeps the first that passes, so each is judged at ``1 - (1 - confidence) / K``
    (Bonferroni): the chance that any candidate whose true drop breaks a rule passes is at most
    ``1 - confidence``. ``K`` is fixed before the evaluation rows are read (the screen decided how
    many passed on the calibration rows). Resamples: enough for at least 10 draws in each tail."""
    import math

    k = max(1, min(policy.search.certify, candidates))
    conf = 1.0 - (1.0 - policy.bootstrap.confidence) / k
    tail = (1.0 - conf) / 2.0
    return conf, (policy.bootstrap.resamples if k == 1 else max(policy.bootstrap.resamples, math.ceil(10.0 / tail)))


@dataclass
class Certified:
    """The searched candidate the gate certified on the evaluation rows (or, when none passed, the
    pick with its failed verdict), its evaluation, and the policy it was judged under (the
    policy's bootstrap at the corrected confidence)."""

    recipe: Recipe
    candidate: WrappedModel
    result: QuantizationResult
    evaluation: Evaluation
    verdict: Verdict
    policy: Policy
    summary: str


def certify(
    policy: Policy,
    found: Search,
    evaluate: Callable[[Policy, WrappedModel], Evaluation],
    gate: Callable[[Policy, Evaluation], Verdict],
) -> Certified:
    """Certify the search's passing candidates with the real gate on the evaluation rows, best
    first (the pick's order), until one passes, at most ``search.certify`` of them, each at the
    corrected confidence (:func:`certify_confidence`). Each certification is written into its
    trial's ``pick`` and ``certified`` in the search trace (the card's search table). When none
    passes, the pick is returned with its failed verdict: the flow records it as refused, as for a
    fixed recipe. ``evaluate(policy, candidate)`` and ``gate(policy, evaluation)`` are the flow's steps."""
    k = min(policy.search.certify, len(found.ranked))
    conf, resamples = certify_confidence(policy, len(found.ranked))
    judged = (
        policy
        if k == 1
        else policy.model_copy(
            update={"bootstrap": policy.bootstrap.model_copy(update={"confidence": conf, "resamples": resamples})}
        )
    )
    trace = found.trace
    done: list[tuple[Any, ...]] = []
    outcomes = []
    for n, (recipe, candidate, result, pos) in enumerate(found.ranked[:k], start=1):
        ev = evaluate(judged, candidate)
        verdict = gate(judged, ev)
        failed = verdict.failed_rules
        what = f"certified {n}/{k} on the evaluation rows at {conf:.2%}: {verdict.status}" + (
            f" ({', '.join(failed)}: " + "; ".join(r.evidence for r in verdict.results if r.rule_id in failed) + ")"
            if failed
            else ""
        )
        trace[pos]["certified"] = {
            "order": n,
            "of": k,
            "confidence": conf,
            "status": verdict.status,
            "failed_rules": failed,
        }
        trace[pos]["pick"] = f"{trace[pos].get('pick', '')}; {what}"
        outcomes.append(f"{recipe.label} {verdict.status}" + (f" ({', '.join(failed)})" if failed else ""))
        done.append((recipe, candidate, result, ev, verdict))
        if verdict.passed:
            break
    for *_, pos in found.ranked[len(done) :]:
        trace[pos]["pick"] = f"{trace[pos].get('pick', '')}; not certified" + (
            f" (only {k} may be: search.certify)" if len(done) == k and not done[-1][4].passed else ""
        )
    chosen = done[-1] if done[-1][4].passed else done[0]
    verb = "certified" if chosen[4].passed else "no candidate passed the gate: recorded the pick, refused"
    summary = (
        f"{len(trace)} trial(s) screened on the calibration rows, {len(found.ranked)} passed; the gate certified "
        f"up to {k} on the evaluation rows, best first, each at {conf:.2%}"
        + (f" (Bonferroni over {k})" if k > 1 else "")
        + f": {'; '.join(outcomes)}; {verb} {chosen[0].label}"
    )
    unquantized = refusals(trace) if chosen[2].n_quantized == 0 else ""
    if unquantized:
        summary += f". It is not quantized: {unquantized}"
    search = chosen[1].spec["quantization"].get("search")
    if search is not None:
        search["summary"] = summary
        search["certified"] = {"confidence": conf, "resamples": resamples, "candidates": k, "outcomes": outcomes}
    return Certified(chosen[0], chosen[1], chosen[2], chosen[3], chosen[4], judged, summary)


def refusals(trace: list[dict[str, Any]]) -> str:
    """Why each quantized trial was not the one kept, from the trace: its screen's reason, or its
    pick and certification (what a run that ends unquantized must say)."""
    out = []
    for t in trace:
        if t.get("quantized", 0) == 0 and not t.get("error"):
            continue
        why = t.get("pick") if t.get("passed") else t.get("reason")
        out.append(f"{t['label']}: {why}")
    return "; ".join(out) or "no recipe that quantizes was tried"
