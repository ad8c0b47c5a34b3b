"""Record: the card's context, then the MLflow run, the signed provenance and the registration, all or nothing."""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.environment import versions
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings
from quantgate.steps.context import EVAL_SCORES_ARTIFACT, Datasets, Evaluation, Source
from quantgate.steps.validate import written_dir

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.evaluate.metrics import Comparison
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy import Policy, Verdict
    from quantgate.quantize.recipes import QuantizationResult, Recipe
    from quantgate.validate import CalibrationReport


EXPERIMENT = "quantgate-quantization"


#: below this share of parameters stored quantized, the card says the candidate is mostly float
MIN_PARAM_SHARE = 0.5


def _coverage_warnings(qres: QuantizationResult) -> list[str]:
    share = qres.quantized_param_share
    out = []
    if share == share and share < MIN_PARAM_SHARE:
        kinds = ", ".join(
            f"{k} {v['quantized']}/{v['params']}" for k, v in sorted(qres.coverage.items()) if v.get("params")
        )
        out.append(
            f"only {100 * share:.0f}% of the parameters are quantized ({kinds}): most of the model stays in float"
        )
    return out + [f"quantization note: {n}" for n in qres.notes]


def card_identity(source: Source, recipe: Recipe, qres: QuantizationResult) -> dict[str, Any]:
    """What every card (classifier, regressor) says first: the quantized model's name, its source,
    the onboarding, the recipe (JSON and digest) and what the recipe changed, on which hardware."""
    from quantgate.quantize.recipes import recipe_to_dict

    return {
        "name": c.quantized_name(source.version.name),
        "source": {
            "name": source.version.name,
            "version": source.version.version,
            "description": source.config.description or source.version.description or "",
            "tags": dict(source.version.tags),
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
        "quantized_modules": qres.quantized,
        "float_modules": qres.kept_float,
        "coverage": {**qres.summary(), "recipe": None},
        "hardware": qres.hardware,
    }


def card_context(
    source: Source,
    recipe: Recipe,
    qres: QuantizationResult,
    ev: Evaluation,
    verdict: Verdict,
    report: CalibrationReport,
    data: Datasets,
    policy: Policy,
    search: dict[str, Any] | None = None,
    reading: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from quantgate.sources.faithful import logged_accuracy_warning

    cmp = ev.comparison
    return {
        **card_identity(source, recipe, qres),
        "metrics": {
            "n": cmp.n,
            "baseline": cmp.baseline,
            "candidate": cmp.candidate,
            "accuracy_drop": cmp.intervals["accuracy"].__dict__,
            "flip_rate": cmp.flip_rate,
            "intervals": {k: v.__dict__ for k, v in cmp.intervals.items() if not k.startswith("group:")},
        },
        "groups": [{**g.__dict__, "drop": g.drop, "interval": _group_interval(cmp, g)} for g in cmp.groups],
        "flip_audit": ev.audit.to_dict() if ev.audit is not None else None,
        "reading": reading or {},
        "warnings": [
            *(reading or {}).get("warnings", []),
            *filter(None, [logged_accuracy_warning((reading or {}).get("logged_accuracy"), cmp.baseline["accuracy"])]),
            *_coverage_warnings(qres),
        ],
        "search_trace": (search or {}).get("trace"),
        "search": search,
        "runtime": ev.runtime,
        "served": ev.served.to_dict() if ev.served is not None else None,
        "sizes": ev.sizes,
        "verdict": verdict.to_dict(),
        "validation": {
            "passed": report.passed,
            "checks": len(report.checks),
            "failed": [ch.name for ch in report.failed()],
        },
        "data": {"paths": data.paths, "digests": data.digests},
        "policy": {"name": policy.name, "digest": policy.digest},
        "environment": {"python": platform.python_version(), **versions()},
    }


def _group_interval(cmp: Comparison, g: Any) -> dict[str, float] | None:
    iv = cmp.intervals.get(f"group:{g.attribute}={g.group}")
    return iv.__dict__ if iv is not None else None


def _log_review_plots(
    card_md: str, card_ctx: dict[str, Any], run_id: str, settings: Settings
) -> tuple[str, dict[str, Any]]:
    """Log the reviewer's figures on the run (``plots/*.png``) and re-render the card so that it
    links them (the links need the run id). A figure that fails to render is named on the card
    as not rendered; it never blocks the record."""
    import mlflow

    from quantgate.cards.card import render_model_card
    from quantgate.cards.plots import plot_links, review_figures

    if card_ctx.get("regression") is not None:  # the review figures plot classifier metrics
        return card_md, card_ctx

    try:
        figures = review_figures(card_ctx)
        for path, fig in figures.items():
            mlflow.log_figure(fig, path)
    except Exception as exc:  # matplotlib / data errors: reported on the card, not hidden
        warning = f"review plots not rendered: {type(exc).__name__}: {exc}"
        ctx = {**card_ctx, "warnings": [*card_ctx.get("warnings", []), warning]}
        return render_model_card(ctx, settings)[0], ctx
    if not figures:
        return card_md, card_ctx
    ctx = {**card_ctx, "plots": plot_links(list(figures), run_id)}
    return render_model_card(ctx, settings)[0], ctx


def _classifier_fields(ev: Evaluation) -> tuple[dict[str, float], dict[str, str]]:
    """(run metrics, figure tags of the registered version) for a classifier's candidate."""
    cmp = ev.comparison
    metrics = {f"fp32_{k}": v for k, v in cmp.baseline.items()}
    metrics |= {f"quantized_{k}": v for k, v in cmp.candidate.items()}
    metrics |= {
        "accuracy_drop": cmp.drop("accuracy"),
        "accuracy_drop_ci_high": cmp.intervals["accuracy"].high,
        **ev.runtime,
        **{k: float(v) for k, v in ev.sizes.items()},
    }
    tags = {
        "quantgate.accuracy_fp32": f"{cmp.baseline['accuracy']:.4f}",
        "quantgate.accuracy_quantized": f"{cmp.candidate['accuracy']:.4f}",
    }
    return metrics, tags


def record_candidate(
    source: Source,
    candidate: WrappedModel,
    recipe: Recipe,
    ev: Evaluation,
    verdict: Verdict,
    report: CalibrationReport,
    card_md: str,
    card_ctx: dict[str, Any],
    data: Datasets,
    settings: Settings | None = None,
    flow_run: str | None = None,
    policy_path: str | None = None,
    builder: dict[str, Any] | None = None,
) -> ModelVersion:
    """Log the run and the candidate model, sign its provenance, then register it (atomically)
    per the convention. Signing happens before registration: if it fails, nothing is registered."""
    import mlflow

    from quantgate.cards.card import card_description, card_json
    from quantgate.cards.provenance import gate_summary, materials_from_context, prefect_builder
    from quantgate.cards.trust import attach_provenance
    from quantgate.faults import fault_point
    from quantgate.models.pyfunc import log_wrapped_model
    from quantgate.registry.mlflow_registry import ensure_experiment, register_candidate
    from quantgate.sources.faithful import check_faithful
    from quantgate.sources.python_model import PythonModelWrapped, log_python_model

    s = settings or get_settings()
    ensure_experiment(EXPERIMENT, s)
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
                "n_quantized": len(card_ctx["quantized_modules"]),
                "n_kept_float": len(card_ctx["float_modules"]),
            }
        )
        regression = getattr(ev, "kind", None) == "regression"  # steps.regression.RegressionEvaluation
        if regression:
            from quantgate.cards.regression_card import regression_card_json as card_json
            from quantgate.steps.regression import record_fields

            metrics, figure_tags = record_fields(ev)  # type: ignore[arg-type]
        else:
            metrics, figure_tags = _classifier_fields(ev)
        if ev.audit is not None:
            metrics["max_flip_ratio"] = ev.audit.max_ratio
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # NaN: not measured, not logged
        card_md, card_ctx = _log_review_plots(card_md, card_ctx, run.info.run_id, s)
        mlflow.log_text(verdict.to_json(), "verdict.json")
        mlflow.log_text(card_md, "model_card.md")
        mlflow.log_text(card_json(card_ctx), "model_card.json")
        mlflow.log_artifacts(str(written_dir(report.write_artifacts(Path(tmp) / "validation"))), "validation")
        mlflow.log_metrics({k: float(v) for k, v in report.metrics().items() if v == v})
        if ev.audit is not None:
            mlflow.log_text(json.dumps(ev.audit.to_dict(), indent=2, default=str), "flip_audit.json")
            if ev.audit.sample:
                mlflow.log_text(pd.DataFrame(ev.audit.sample).to_csv(index=False), "flip_audit_sample.csv")
        if ev.scores is not None:  # what monitoring's label-free accuracy estimator is fitted on
            scores_path = Path(tmp) / Path(EVAL_SCORES_ARTIFACT).name
            ev.scores.to_parquet(scores_path, index=False)
            mlflow.log_artifact(str(scores_path), str(Path(EVAL_SCORES_ARTIFACT).parent))
        card_path = Path(tmp) / "model_card.md"
        card_path.write_text(card_md)
        example = data.evaluation[candidate.input_columns].head(5)
        if isinstance(candidate, PythonModelWrapped):  # the source's own class, modules swapped in
            info = log_python_model(candidate, example, {"model_card": str(card_path)}, Path(tmp))
        else:
            arts = candidate.save(Path(tmp) / "candidate")
            arts["model_card"] = str(card_path)
            info = log_wrapped_model(candidate, arts, example)
        # what will be served is what was gated: the logged artifact, loaded back as MLflow serves it
        check_faithful(info.model_uri, candidate, data.evaluation, what=f"candidate of {source.ref}")
        tags = {
            c.TAG_SOURCE: source.ref,
            c.TAG_RECIPE: recipe.label,
            c.TAG_RECIPE_DIGEST: recipe.digest,
            c.TAG_VERDICT: verdict.status,
            c.TAG_POLICY_DIGEST: verdict.policy_digest,
            c.TAG_APPROVAL: "pending" if verdict.passed else "rejected",
            **figure_tags,
            "quantgate.speedup": (  # NaN: the ratio was not measured reliably on this host
                f"{ev.runtime['speedup']:.2f}" if ev.runtime["speedup"] == ev.runtime["speedup"] else "not measured"
            ),
            "quantgate.param_share": f"{card_ctx['coverage'].get('quantized_param_share', float('nan')):.3f}",
            **(
                {"quantgate.target": str(card_ctx["hardware"]["target"])}
                if (card_ctx.get("hardware") or {}).get("target")
                else {}
            ),
        }
        if not verdict.passed:
            tags["quantgate.failed_rules"] = ",".join(verdict.failed_rules)
        if drift_run := source.version.tags.get("quantgate.trigger.drift_run"):
            tags["quantgate.trigger.drift_run"] = drift_run  # the drift that caused this candidate
        tags |= attach_provenance(
            info.model_uri,
            run.info.run_id,
            name=card_ctx["name"],
            # name/version, plus the source artifact's digest when the card already computed it
            source={k: v for k, v in card_ctx["source"].items() if k in ("name", "version", "uri", "digest", "files")},
            materials=materials_from_context(card_ctx, policy_path=policy_path),
            builder=builder or prefect_builder(flow_run_id=flow_run),
            settings=s,
            # the verdict and every result tag are signed: approval, promotion and serving read them
            # from the verified statement, and a tag that differs from it fails verification
            gate=gate_summary(
                verdict=verdict.status,
                policy_name=verdict.policy_name,
                policy_digest=verdict.policy_digest,
                rules={r.rule_id: r.outcome for r in verdict.results},
                tags={k: v for k, v in tags.items() if c.result_tag(k)},
            ),
        )
        fault_point("sign")  # signed and logged, nothing registered yet
        return register_candidate(
            model_uri=info.model_uri,
            source=source.version,
            run_id=run.info.run_id,
            tags=tags,
            description=card_description(card_md),
            passed=verdict.passed,
            settings=s,
        )
