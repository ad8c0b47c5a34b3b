"""The steps of governing a causal language model (onboarded with ``task: text-generation``):
data -> source + faithful reading -> text checks -> quantize (an LM recipe) -> evaluate per
slice -> gate -> card -> record (the same signing, provenance and registration as classifiers).

Values in, values out, like the other steps; ``quantgate.flows.quantize_lm`` runs them as tasks.
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.errors import ConfigError, DataError, GateFailed, QuantgateError, first_rows
from quantgate.onboarding import TEXT_GENERATION, ModelConfig
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings
from quantgate.steps.context import Datasets, Source

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.evaluate.lm import LMEvaluation
    from quantgate.models.causal_lm import CausalLM
    from quantgate.policy import Policy, Verdict
    from quantgate.quantize.lm import LMQuantizationResult, LMRecipe

#: LM recipes ``recipe: auto`` tries, most compressed first (a real sensitivity search is later)
AUTO_ORDER = ("lm-int4-weight-only", "lm-int8-weight-only", "lm-bf16")
#: evaluation texts the faithful-reading checks score
FAITHFUL_TEXTS = 4


def is_language_model(cfg: ModelConfig) -> bool:
    return cfg.task == TEXT_GENERATION


@dataclass
class LMData:
    data: Datasets
    prompts: list[str] = field(default_factory=list)


# --- data --------------------------------------------------------------------------------------


def load_lm_datasets(cfg: ModelConfig, settings: Settings | None = None) -> LMData:
    """The calibration / evaluation (/ reference) text tables and the prompts file. A missing
    file, or a table without the text column, is a one-line DataError (nothing is loaded)."""
    from quantgate.data.datasets import file_digest, read_table

    roles = {"calibration": cfg.calibration_data, "evaluation": cfg.evaluation_data}
    if cfg.reference_data:
        roles["reference"] = cfg.reference_data
    frames, paths, digests = {}, {}, {}
    for role, rel in roles.items():
        p = cfg.resolve(rel, settings)
        if not p.exists():
            raise DataError(
                f"{role} data for '{cfg.name}' not found: {p}", f"fix {role}_data in registry/models/{cfg.name}.yaml"
            )
        frame = read_table(p)
        if cfg.text_column not in frame.columns:
            raise DataError(
                f"{role} data {p} has no text column '{cfg.text_column}' (columns: "
                f"{', '.join(map(str, frame.columns[:10]))})",
                f"set text_column: in registry/models/{cfg.name}.yaml to the column holding the passages",
            )
        missing = [s for s in cfg.slices if role == "evaluation" and s not in frame.columns]
        if missing:
            raise DataError(
                f"evaluation data {p} has no slice column(s) {', '.join(missing)}",
                f"add them to the evaluation data or drop them from slices: in registry/models/{cfg.name}.yaml",
            )
        frames[role], paths[role], digests[role] = frame, str(p), file_digest(p)
    prompts: list[str] = []
    if cfg.prompts:
        p = cfg.resolve(cfg.prompts, settings)
        if not p.is_file():
            raise DataError(
                f"prompts file for '{cfg.name}' not found: {p}",
                f"fix prompts: in registry/models/{cfg.name}.yaml (a text file, one prompt a line) or remove it",
            )
        try:
            prompts = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(
                f"prompts file {p} is not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8"
            ) from None
        if not prompts:
            raise DataError(f"prompts file {p} holds no prompt", "write one prompt a line, or remove prompts:")
        paths["prompts"], digests["prompts"] = str(p), file_digest(p)
    data = Datasets(
        frames["calibration"],
        frames["evaluation"],
        frames.get("reference", frames["calibration"]),
        paths,
        digests,
        reference_is_calibration="reference" not in frames,
    )
    return LMData(data, prompts)


# --- source ------------------------------------------------------------------------------------


def load_lm_source(source: Source) -> CausalLM:
    """The source version through its source kind (``text_generation``), in fp32."""
    from mlflow.models import Model

    from quantgate.models.causal_lm import CausalLM
    from quantgate.sources import SourceContext, load_source

    meta = Model.load(f"models:/{source.version.name}/{source.version.version}")
    loaded: Any = load_source(SourceContext(source.version, meta, source.config))
    if not isinstance(loaded, CausalLM):
        raise ConfigError(
            f"{source.ref} is onboarded with task: text-generation but is not a transformers text-generation model "
            f"(flavors: {', '.join(sorted(meta.flavors))})",
            'log it with mlflow.transformers.log_model(..., task="text-generation"), or fix task: in the onboarding',
        )
    return loaded


def check_lm_source_faithful(source: Source, lm: CausalLM, lm_data: LMData) -> dict[str, Any]:
    from quantgate.sources.text_generation import check_lm_faithful

    texts = _sample_texts(lm_data.data.evaluation, lm.text_column)
    return check_lm_faithful(
        f"models:/{source.version.name}/{source.version.version}", lm, texts, what=f"source {source.ref}"
    )


def _sample_texts(frame: pd.DataFrame, column: str, n: int = FAITHFUL_TEXTS) -> list[str]:
    texts = [t for t in frame[column].tolist() if isinstance(t, str) and t.strip()]
    return texts[:n]


# --- validate ----------------------------------------------------------------------------------


def validate_lm_data(cfg: ModelConfig, lm: CausalLM, lm_data: LMData, policy: Policy) -> dict[str, Any]:
    """GX and quantgate's checks on the text (quantgate.validate.lm_text); any failed required
    check is a DataError naming it (exit 2, nothing quantized or registered)."""
    from quantgate.validate import lm_text

    data = lm_data.data
    checks = []
    for role, frame in (("calibration", data.calibration), ("evaluation", data.evaluation)):
        checks += lm_text.gx_text_checks(frame, role, cfg.text_column, cfg.slices if role == "evaluation" else [])
        utf8, bad = lm_text.utf8_check(frame, role, cfg.text_column)
        checks.append(utf8)
        failed = [ch for ch in checks if ch.status == "failed" and ch.column == role]
        if failed:
            rows = f" (rows {first_rows(frame.index[bad])})" if bad else ""
            raise DataError(
                f"{role} text of '{cfg.name}' fails '{failed[0].name}': {failed[0].observed}{rows}",
                f"every row of '{cfg.text_column}' must be a non-empty UTF-8 passage: drop or fix those rows",
            )
    settings = policy.lm_evaluation
    lengths = [len(lm.tokenizer(str(t))["input_ids"]) for t in data.evaluation[cfg.text_column].tolist()]
    tok_checks, short = lm_text.token_checks(
        lengths, "evaluation", settings.prompt_tokens, settings.max_prompts > 0 and not lm_data.prompts
    )
    checks += tok_checks
    bad_tok = [ch for ch in tok_checks if ch.status == "failed"]
    if bad_tok:
        rows = f" (rows {first_rows(data.evaluation.index[short])})" if short else ""
        raise DataError(
            f"evaluation text of '{cfg.name}' fails '{bad_tok[0].name}': {bad_tok[0].observed}{rows}",
            "use longer passages, or lower lm_evaluation.prompt_tokens in the policy (or give a prompts: file)",
        )
    checks.append(lm_text.overlap_check(data.calibration, data.evaluation, cfg.text_column))
    checks += lm_text.not_run()
    return lm_text.summary(checks)


# --- quantize ----------------------------------------------------------------------------------


def resolve_lm_recipe(name_or_file: str | None, cfg: ModelConfig) -> LMRecipe | None:
    """The LM recipe to apply (a name or a recipe JSON file), or None for ``auto``."""
    import json

    from quantgate.errors import read_config_text
    from quantgate.quantize.lm import LM_REGISTRY, get_lm_recipe, lm_recipe_from_dict

    chosen = name_or_file or cfg.recipe
    if chosen == "auto":
        return None
    p = Path(chosen)
    if p.suffix == ".json":
        if not p.exists():
            raise DataError(f"recipe file not found: {p}")
        try:
            return lm_recipe_from_dict(json.loads(read_config_text(p, "recipe file")))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"recipe file {p} is not valid JSON: {exc}") from None
    if chosen not in LM_REGISTRY:
        raise ConfigError(
            f"recipe '{chosen}' is not a language-model recipe ('{cfg.name}' is onboarded with task: text-generation)",
            f"choose one of: {', '.join(sorted(LM_REGISTRY))}, or auto",
        )
    return get_lm_recipe(chosen)


def auto_recipes(policy: Policy) -> list[str]:
    """``recipe: auto``: the LM recipes, most compressed first, whose weight bits some blocking
    ``lm_rules`` entry of the policy judges (a bit width no blocking rule judges is not tried:
    nothing would stop a harmful candidate of it)."""
    from quantgate.quantize.lm import LM_REGISTRY

    out = []
    for name in AUTO_ORDER:
        bits = LM_REGISTRY[name][0].BITS
        if any(r.severity == "block" and r.applies_to(bits) for r in policy.lm_rules):
            out.append(name)
    return out


def quantize_lm(lm: CausalLM, recipe: LMRecipe) -> tuple[CausalLM, LMQuantizationResult]:
    """Apply one LM recipe to a copy of the source's module."""
    from quantgate.quantize.base import recipe_to_dict
    from quantgate.quantize.lm import apply_lm_recipe

    res = apply_lm_recipe(lm.module, recipe)
    cand = lm.with_module(res.module, recipe=recipe_to_dict(recipe), compute_dtype=res.compute_dtype)
    return cand, res


def sizes(lm: CausalLM, res: LMQuantizationResult) -> dict[str, float]:
    from quantgate.quantize.lm import tensor_bytes

    base = sum(tensor_bytes(lm.module).values())
    cand = sum(res.size_by_kind.values())
    return {"baseline_bytes": base, "candidate_bytes": cand, "size_ratio": cand / base if base else float("nan")}


# --- evaluate / gate ---------------------------------------------------------------------------


def evaluate_lm_candidate(
    cfg: ModelConfig, policy: Policy, lm: CausalLM, cand: CausalLM, frame: pd.DataFrame, prompts: list[str]
) -> LMEvaluation:
    """The policy's ``lm_evaluation`` on a seeded sample of ``frame`` (per slice column), with
    the prompts file's prompts when one is given."""
    from quantgate.evaluate.lm import evaluate_lm

    s, b = policy.lm_evaluation, policy.bootstrap
    rows = frame
    if s.max_passages is not None and len(frame) > s.max_passages:
        rows = frame.sample(n=s.max_passages, random_state=b.seed)
    rows = rows.reset_index(drop=True)
    return evaluate_lm(
        lm.module,
        cand.module,
        lm.tokenizer,
        rows[cfg.text_column].astype(str).tolist(),
        rows[list(cfg.slices)] if cfg.slices else None,
        max_tokens=s.max_tokens,
        prompt_tokens=s.prompt_tokens,
        new_tokens=s.new_tokens,
        max_prompts=s.max_prompts,
        min_slice_size=policy.min_group_size,
        resamples=b.resamples,
        confidence=b.confidence,
        seed=b.seed,
        prompt_texts=prompts or None,
    )


def gate_lm(
    cfg: ModelConfig, policy: Policy, ev: LMEvaluation, res: LMQuantizationResult, size: dict[str, float]
) -> Verdict:
    from quantgate.policy.verdict import gate_lm_candidate

    return gate_lm_candidate(
        cfg.name, policy, ev, weight_bits=res.weight_bits, extra={"size_ratio": size["size_ratio"]}
    )


@dataclass
class LMChoice:
    recipe: LMRecipe
    candidate: CausalLM
    result: LMQuantizationResult
    trials: list[dict[str, Any]]


def choose_lm_recipe(cfg: ModelConfig, policy: Policy, lm: CausalLM, lm_data: LMData) -> LMChoice:
    """``recipe: auto`` for a language model, for now: the recipes of :func:`auto_recipes` in
    order, each judged by the gate's own code on the **calibration** passages (never the
    evaluation passages the gate then judges); the first that passes is kept. A recipe that cannot
    run here (the int4 kernel, say) is a failed trial with its error's line. Not a sensitivity
    search: no layer is kept in higher precision to make a recipe pass (issue 27, later)."""
    from quantgate.quantize.lm import get_lm_recipe

    names = auto_recipes(policy)
    if not names:
        raise ConfigError(
            f"policy '{policy.name}' has no blocking lm_rules entry: recipe: auto has no bit width it may choose",
            "add blocking lm_rules (see policies/generative.yaml) or name a recipe",
        )
    trials: list[dict[str, Any]] = []
    for name in names:
        recipe = get_lm_recipe(name)
        try:
            cand, res = quantize_lm(lm, recipe)
        except QuantgateError as exc:
            trials.append({"label": recipe.label, "outcome": "error", "reason": exc.one_line()})
            continue
        ev = evaluate_lm_candidate(cfg, policy, lm, cand, lm_data.data.calibration, lm_data.prompts)
        verdict = gate_lm(cfg, policy, ev, res, sizes(lm, res))
        failed = verdict.failed_rules
        trials.append(
            {
                "label": recipe.label,
                "outcome": "pass" if not failed else "fail",
                "reason": "gate rules pass on the calibration passages"
                if not failed
                else f"fails {', '.join(failed)} on the calibration passages",
            }
        )
        if not failed:
            return LMChoice(recipe, cand, res, trials)
    tried = "; ".join(f"{t['label']}: {t['reason']}" for t in trials)
    raise GateFailed(
        f"no language-model recipe for '{cfg.name}' passed the policy on the calibration passages: {tried}",
        "loosen the policy's lm_rules or name a recipe with --recipe",
    )


# --- card and record ---------------------------------------------------------------------------


def lm_card_context(
    source: Source,
    lm: CausalLM,
    recipe: LMRecipe,
    res: LMQuantizationResult,
    ev: LMEvaluation,
    verdict: Verdict,
    validation: dict[str, Any],
    data: Datasets,
    policy: Policy,
    size: dict[str, float],
    reading: dict[str, Any],
    trials: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from quantgate.environment import versions
    from quantgate.hardware import host_info
    from quantgate.quantize.base import recipe_to_dict

    host = host_info()
    summary = res.summary()
    warnings = [f"quantization note: {n}" for n in res.notes]
    warnings += [f"{r.rule_id}: {r.evidence}" for r in verdict.results if r.outcome == "warn"]
    return {
        "kind": "language-model",
        "name": c.quantized_name(source.version.name),
        "source": {
            "name": source.version.name,
            "version": source.version.version,
            "description": source.config.description or source.version.description or "",
            "model_class": lm.spec.get("model_class"),
            "parameters": lm.spec.get("parameters"),
        },
        "config": source.config.model_dump(),
        "recipe": {
            "label": recipe.label,
            "type": recipe.TYPE,
            "backend": recipe.BACKEND,
            "summary": recipe.SUMMARY,
            "json": recipe_to_dict(recipe),
            "digest": recipe.digest,
        },
        "quantization": {
            **summary,
            "quantized": list(res.quantized),
            "kept_float": list(res.kept_float),
            "size_by_kind": dict(res.size_by_kind),
        },
        "sizes": size,
        "evaluation": ev.to_dict(),
        "verdict": verdict.to_dict(),
        "validation": validation,
        "reading": reading,
        "trials": trials or [],
        "trials_note": "recipe: auto tried the LM recipes most compressed first on the calibration passages; "
        "the first that passed the policy was kept (no sensitivity search yet)"
        if trials
        else "",
        "data": {"paths": data.paths, "digests": data.digests},
        "policy": {"name": policy.name, "digest": policy.digest},
        "warnings": warnings,
        "environment": {"python": platform.python_version(), **versions()},
        # the LM recipes' CPU kernels (torchao's int4/int8 weight-only, bf16) are chosen by the ISA:
        # the verdict holds for the ISA it was measured on, recorded as the target (serving on
        # another ISA warns, as for an int8 classifier built for one)
        "hardware": {"target": host["isa"], "requested_target": "auto", "host": host, "matches_host": True},
    }


def record_lm_candidate(
    source: Source,
    candidate: CausalLM,
    recipe: LMRecipe,
    verdict: Verdict,
    card_ctx: dict[str, Any],
    prompts: list[str],
    settings: Settings | None = None,
    flow_run: str | None = None,
    policy_path: str | None = None,
    builder: dict[str, Any] | None = None,
) -> ModelVersion:
    """Log the run and the candidate (quantgate's LM pyfunc), check that the logged artifact
    loads back to the same next-token distributions, sign its provenance, then register it with
    the registry's own all-or-nothing ``register_candidate`` (alias candidate, approval pending,
    only when the gate passed)."""
    import json

    import mlflow

    from quantgate.cards.lm_card import lm_card_description, lm_card_json, render_lm_card
    from quantgate.cards.provenance import gate_summary, materials_from_context, prefect_builder
    from quantgate.cards.trust import attach_provenance
    from quantgate.faults import fault_point
    from quantgate.models.causal_lm import CausalLM
    from quantgate.models.pyfunc_lm import log_causal_lm
    from quantgate.registry.mlflow_registry import ensure_experiment, register_candidate
    from quantgate.sources.text_generation import compare_next_tokens
    from quantgate.steps.record import EXPERIMENT

    s = settings or get_settings()
    ensure_experiment(EXPERIMENT, s)
    overall = card_ctx["evaluation"]["overall"]
    run_name = f"{source.version.name}-v{source.version.version}-{recipe.TYPE}"
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                c.TAG_SOURCE: source.ref,
                c.TAG_RECIPE: recipe.label,
                c.TAG_VERDICT: verdict.status,
                **({"quantgate.flow_run": flow_run} if flow_run else {}),
            }
        )
        mlflow.log_params(
            {
                "source": source.ref,
                "recipe": recipe.TYPE,
                "backend": recipe.BACKEND,
                "policy": verdict.policy_name,
                "n_quantized": len(card_ctx["quantization"]["quantized"]),
                "n_kept_float": len(card_ctx["quantization"]["kept_float"]),
            }
        )
        figures = {k: v for k, v in overall.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        mlflow.log_metrics({k: float(v) for k, v in {**figures, **card_ctx["sizes"]}.items() if v == v})
        card_md = render_lm_card(card_ctx)
        mlflow.log_text(verdict.to_json(), "verdict.json")
        mlflow.log_text(card_md, "model_card.md")
        mlflow.log_text(lm_card_json(card_ctx), "model_card.json")
        mlflow.log_text(json.dumps(card_ctx["validation"], indent=2), "validation/lm_text_checks.json")
        card_path = Path(tmp) / "model_card.md"
        card_path.write_text(card_md)
        arts = candidate.save(Path(tmp) / "candidate")
        arts["model_card"] = str(card_path)
        examples = [e["prompt"] for e in card_ctx["evaluation"].get("examples", [])][:2] or prompts[:2] or ["The"]
        info = log_causal_lm(candidate, arts, examples)
        # what will be served is what was gated: the logged artifact, loaded back as MLflow serves it
        served = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().lm
        assert isinstance(served, CausalLM)
        texts = examples + [p for p in prompts[:2] if p not in examples]
        compare_next_tokens(candidate, served, texts, what=f"logged candidate of {source.ref}")
        tags = {
            c.TAG_SOURCE: source.ref,
            c.TAG_RECIPE: recipe.label,
            c.TAG_RECIPE_DIGEST: recipe.digest,
            c.TAG_VERDICT: verdict.status,
            c.TAG_POLICY_DIGEST: verdict.policy_digest,
            c.TAG_APPROVAL: "pending" if verdict.passed else "rejected",
            "quantgate.task": TEXT_GENERATION,
            "quantgate.perplexity_fp32": f"{overall['baseline_perplexity']:.4f}",
            "quantgate.perplexity_quantized": f"{overall['candidate_perplexity']:.4f}",
            "quantgate.perplexity_ratio": f"{overall['perplexity_ratio']:.5f}",
            "quantgate.param_share": f"{card_ctx['quantization'].get('quantized_param_share', float('nan')):.3f}",
            c.TAG_TARGET: str(card_ctx["hardware"]["target"]),
        }
        if not verdict.passed:
            tags["quantgate.failed_rules"] = ",".join(verdict.failed_rules)
        tags |= attach_provenance(
            info.model_uri,
            run.info.run_id,
            name=card_ctx["name"],
            source={"name": source.version.name, "version": source.version.version},
            materials=materials_from_context(card_ctx, policy_path=policy_path),
            builder=builder or prefect_builder(flow_run_id=flow_run),
            settings=s,
            gate=gate_summary(
                verdict=verdict.status,
                policy_name=verdict.policy_name,
                policy_digest=verdict.policy_digest,
                rules={r.rule_id: r.outcome for r in verdict.results},
                tags={k: v for k, v in tags.items() if c.result_tag(k)},
            ),
        )
        fault_point("sign")
        return register_candidate(
            model_uri=info.model_uri,
            source=source.version,
            run_id=run.info.run_id,
            tags=tags,
            description=lm_card_description(card_md),
            passed=verdict.passed,
            settings=s,
        )
