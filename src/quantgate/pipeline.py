"""The governance steps, orchestrator-agnostic: flows/ wraps each one as a Prefect task.

Each step takes values and returns values; the only side effects are in ``record_candidate``
(MLflow run + registration), which runs last so that every earlier failure leaves the
registry untouched.
"""

from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from quantgate.environment import versions
from quantgate.errors import DataError, ValidationFailed
from quantgate.onboarding import ModelConfig, load_model_config
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.evaluate.audit import FlipAudit
    from quantgate.evaluate.metrics import Comparison
    from quantgate.models.wrapped import WrappedModel
    from quantgate.policy import Policy, Verdict
    from quantgate.quantize.recipes import QuantizationResult, Recipe
    from quantgate.validate import CalibrationReport, DataProfile

EXPERIMENT = "quantgate-quantization"
#: where a source model's reference-data profile is stored (in its training run)
PROFILE_ARTIFACT = "quantgate/data_profile.json"


@dataclass
class Source:
    version: ModelVersion
    config: ModelConfig

    @property
    def ref(self) -> str:
        return f"{self.version.name}/{self.version.version}"


@dataclass
class Datasets:
    calibration: pd.DataFrame
    evaluation: pd.DataFrame
    reference: pd.DataFrame
    paths: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)


@dataclass
class Evaluation:
    comparison: Comparison
    runtime: dict[str, float]
    sizes: dict[str, int]
    audit: FlipAudit | None = None


def discover_source(ref: str, settings: Settings | None = None) -> Source:
    """Resolve ``NAME[/VERSION|@ALIAS]`` and its onboarding (file wins over tags)."""
    from quantgate.registry.mlflow_registry import resolve_version

    mv = resolve_version(ref, settings)
    return Source(mv, load_model_config(mv.name, dict(mv.tags), settings))


def ungoverned_versions(models: list[str] | None = None, settings: Settings | None = None) -> list[str]:
    """Source versions of onboarded models that no ``<name>-quantized`` version points at.

    One registry search per model for the governed children (their ``quantgate.source`` tags).
    """
    from quantgate.registry.mlflow_registry import client

    s = settings or get_settings()
    cl = client(s)
    names = models or sorted(p.stem for p in s.path("registry/models").glob("*.yaml"))
    todo = []
    from mlflow.exceptions import MlflowException

    from quantgate.errors import RegistryError

    for name in names:
        try:
            sources = cl.search_model_versions(f"name='{name}'")
        except MlflowException as exc:  # never skip a model silently: the sweep would look clean
            raise RegistryError(
                f"registry search for onboarded model '{name}' failed: {exc.message.splitlines()[0]}",
                "check the MLflow store (MLFLOW_TRACKING_URI) and the model name in registry/models/",
            ) from exc
        children = cl.search_model_versions(f"name='{c.quantized_name(name)}'") if sources else []
        governed = {v.tags.get(c.TAG_SOURCE) for v in children}
        todo += [
            f"{name}/{v.version}"
            for v in sorted(sources, key=lambda v: int(v.version))
            if f"{name}/{v.version}" not in governed
        ]
    return todo


def load_datasets(cfg: ModelConfig, settings: Settings | None = None) -> Datasets:
    from quantgate.data.datasets import file_digest, read_table

    paths = {
        "calibration": cfg.calibration_data,
        "evaluation": cfg.evaluation_data,
        "reference": cfg.reference_data or cfg.calibration_data,
    }
    frames, resolved, digests = {}, {}, {}
    for role, rel in paths.items():
        p = cfg.resolve(rel, settings)
        if not p.exists():
            raise DataError(
                f"{role} data for '{cfg.name}' not found: {p}",
                f"fix {role}_data in registry/models/{cfg.name}.yaml (or run quantgate demo)",
            )
        frames[role] = read_table(p)
        resolved[role], digests[role] = str(p), file_digest(p)
    for role in ("evaluation",):
        if cfg.label not in frames[role].columns:
            raise DataError(
                f"{role} data {resolved[role]} has no label column '{cfg.label}'", "set label: in the onboarding file"
            )
    return Datasets(frames["calibration"], frames["evaluation"], frames["reference"], resolved, digests)


def stored_profile(source: Source) -> DataProfile | None:
    """The reference-data profile stored with the source model at registration, if any."""
    import mlflow

    from quantgate.validate import read_profile

    if not source.version.run_id:
        return None
    folder, _, leaf = PROFILE_ARTIFACT.rpartition("/")
    stored = mlflow.artifacts.list_artifacts(run_id=source.version.run_id, artifact_path=folder)
    if not any(a.path.rsplit("/", 1)[-1] == leaf for a in stored):
        return None  # none stored: the suite is derived from the reference data file (the card says which)
    where = f"runs:/{source.version.run_id}/{PROFILE_ARTIFACT}"
    try:  # stored but unreadable is an error, never a quiet switch to another suite
        text = mlflow.artifacts.load_text(where)
    except OSError as exc:
        raise DataError(
            f"the reference profile stored with {source.ref} ({where}) cannot be read: {str(exc).splitlines()[0]}",
            "re-log the profile with the source model, or delete the artifact to derive the suite from reference_data",
        ) from exc
    return read_profile(text, source=where)


def signature_columns(source: Source) -> list[str]:
    """Input column names of the source version's MLflow signature ([] when it has none, or when it
    is a tensor signature, whose inputs have no column names)."""
    from mlflow.models import get_model_info

    sig = get_model_info(f"models:/{source.version.name}/{source.version.version}").signature
    if sig is None or sig.inputs is None or sig.inputs.is_tensor_spec() or not sig.inputs.has_input_names():
        return []
    return [str(n) for n in sig.inputs.input_names()]


def govern_calibration_data(
    cfg: ModelConfig,
    model: WrappedModel,
    data: Datasets,
    policy: Policy,
    settings: Settings | None = None,
    profile: DataProfile | None = None,
    signature: list[str] | None = None,
) -> CalibrationReport:
    """Calibration-data governance: the GX suite derived from the reference profile (plus the
    team's overrides in policies/expectations/), the policy's checks (rows, group coverage,
    leakage into the evaluation split, duplicates, label balance) and representativeness
    (Evidently drift vs the reference). The profile is the one stored with the model when given,
    else it is built from the reference data; every column of the model's MLflow ``signature``
    must be in it. Returns the report; never raises on bad data."""
    from quantgate.validate import expectations_file_for, govern_calibration

    s = settings or get_settings()
    profiled = profile.column_names if profile is not None else list(data.reference.columns)
    missing = [col for col in signature or [] if col not in profiled]
    if missing:
        raise DataError(
            f"the reference profile of '{cfg.name}' lacks the model's input column(s) {', '.join(missing)} "
            "(from its MLflow signature)",
            "the reference data must hold every column the model takes",
        )
    return govern_calibration(
        data.calibration,
        data.reference,
        evaluation=data.evaluation,
        label=cfg.label if cfg.label in data.reference.columns else None,
        sensitive_attributes=list(cfg.sensitive_attributes),
        text_columns=model.input_columns if model.task == "text-classification" else [],
        policy=policy.calibration,
        model_name=cfg.name,
        expectations_file=expectations_file_for(cfg.name, s.project_dir),
        profile=profile,
    )


def validate_calibration(
    cfg: ModelConfig,
    model: WrappedModel,
    data: Datasets,
    policy: Policy,
    settings: Settings | None = None,
    profile: DataProfile | None = None,
    signature: list[str] | None = None,
) -> CalibrationReport:
    """The flow's gate on calibration data: raises ValidationFailed, with the reports written
    under ``$QUANTGATE_HOME/validation/<model>/``, before anything is quantized or registered."""
    s = settings or get_settings()
    report = govern_calibration_data(cfg, model, data, policy, s, profile=profile, signature=signature)
    if not report.passed:
        out = report.write_artifacts(s.home_abs / "validation" / cfg.name)
        raise ValidationFailed(report.summary(), f"nothing was quantized or registered; reports: {_written_dir(out)}")
    return report


def _written_dir(files: dict[str, Path]) -> Path:
    """The folder ``write_artifacts`` wrote its files into."""
    return next(iter(files.values())).parent


def load_source_model(source: Source, data: Datasets) -> WrappedModel:
    """The source version through its source kind (quantgate.sources), read with the onboarding
    (input_columns, classes, output) and probed on a few evaluation rows."""
    from mlflow.models import Model

    from quantgate.registry.mlflow_registry import load_wrapped
    from quantgate.sources import SourceContext

    cfg, ev = source.config, data.evaluation
    ctx = SourceContext(
        source.version,
        Model.load(f"models:/{source.version.name}/{source.version.version}"),
        cfg,
        sample=ev.head(64),
        labels=list(ev[cfg.label].dropna().unique()) if cfg.label in ev.columns else [],
        columns=[col for col in ev.columns if col != cfg.label],
    )
    return load_wrapped(source.version, ctx)


@dataclass
class Faithfulness:
    """The proof that quantgate's reading of the source is the model itself, and what to warn about."""

    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def check_source_faithful(source: Source, model: WrappedModel, data: Datasets) -> Faithfulness:
    """Score evaluation rows through MLflow's own pyfunc and through quantgate's wrapper; raise
    UnfaithfulReading (nothing judged, nothing registered) when they differ. A baseline far from an
    accuracy the source's run logged is a warning for the card."""
    from quantgate.models.outputs import class_index
    from quantgate.registry.mlflow_registry import client
    from quantgate.sources.faithful import check_faithful, logged_accuracy

    uri = f"models:/{source.version.name}/{source.version.version}"
    report = check_faithful(uri, model, data.evaluation, what=f"source {source.ref}")
    warnings: list[str] = []
    if model.spec.get("output_ambiguous"):
        warnings.append(f"the model's output ({model.spec.get('output_note')}) was read as declared by output:")
    if source.version.run_id:
        metrics = client().get_run(source.version.run_id).data.metrics
        logged = logged_accuracy(metrics)
        if logged is not None:
            ev = data.evaluation
            y = class_index(ev[source.config.label], model.classes, what="evaluation labels")
            acc = float((model.predict_proba(ev).argmax(axis=1) == y).mean())
            if abs(acc - logged[1]) > 0.05:
                warnings.append(
                    f"baseline accuracy measured here {acc:.4f} is far from the {logged[1]:.4f} the source's run "
                    f"logged as '{logged[0]}' (different data, or a reading to check)"
                )
    return Faithfulness(report.to_dict(), warnings)


def resolve_recipe(name_or_file: str | None, cfg: ModelConfig) -> Recipe | None:
    """The fixed recipe to apply, or None for ``auto`` (search under the policy)."""
    from quantgate.quantize.recipes import get_recipe, recipe_from_dict

    chosen = name_or_file or cfg.recipe
    if chosen == "auto":
        return None
    p = Path(chosen)
    if p.suffix == ".json":
        if not p.exists():
            raise DataError(f"recipe file not found: {p}")
        return recipe_from_dict(json.loads(p.read_text()))
    return get_recipe(chosen)


def calibration_batches(model: WrappedModel, data: Datasets, n_batches: int = 8) -> list[tuple[Any, ...]]:
    """Example batches from the calibration data: what static recipes calibrate on."""
    return model.batches(data.calibration, 32)[:n_batches]


def _candidate(
    model: WrappedModel, result: QuantizationResult, recipe: Recipe, search: dict[str, Any] | None = None
) -> WrappedModel:
    from quantgate.quantize.recipes import recipe_to_dict

    candidate = model.with_module(result.module)  # same kind as the source (e.g. its PythonModel)
    candidate.spec["quantization"] = {
        "recipe": recipe_to_dict(recipe),
        "digest": recipe.digest,
        "quantized": result.quantized,
        "kept_float": result.kept_float,
        **({"search": search} if search else {}),
    }
    return candidate


def quantize_candidate(
    model: WrappedModel, recipe: Recipe, data: Datasets | None = None
) -> tuple[WrappedModel, QuantizationResult]:
    """Apply one fixed recipe (static recipes calibrate on the calibration data)."""
    from quantgate.quantize.recipes import apply_recipe

    calib = calibration_batches(model, data) if data is not None else None
    result = apply_recipe(model.module, recipe, calibration=calib)
    return _candidate(model, result, recipe), result


@dataclass
class Search:
    recipe: Recipe
    candidate: WrappedModel
    result: QuantizationResult
    trace: list[dict[str, Any]]
    sensitivity: dict[str, float]


def search_recipe(cfg: ModelConfig, policy: Policy, model: WrappedModel, data: Datasets) -> Search:
    """Accuracy-aware search under the policy's tolerances, on the *calibration* data.

    The tuner never sees the evaluation rows the gate judges on, so choosing the recipe cannot
    overfit the gate. Raises GateFailed (nothing registered) when no recipe meets the tolerance.
    """
    from quantgate.errors import DataError, GateFailed
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
        cfg.group_columns,
        tolerance_overall=tol_overall,
        tolerance_group=tol_group,
        objective=policy.search.objective,
        budget_trials=policy.search.budget_trials,
        budget_seconds=policy.search.budget_seconds,
        calibration=calibration_batches(model, data),
        min_group_rows=policy.min_group_size,
    )
    trace = res.trace_dicts()
    if res.best is None or res.result is None:
        tried = "; ".join(f"{t['label']}: {t['reason']}" for t in trace) or "no trial ran"
        raise GateFailed(
            f"no recipe for '{cfg.name}' met the tolerance (accuracy drop <= {tol_overall:g}) "
            f"within the search budget: {tried}",
            "loosen the policy, raise search.budget_*, or name a recipe with --recipe",
        )
    search = {
        "trace": trace,
        "sensitivity": res.sensitivity,
        "tolerance_overall": tol_overall,
        "tolerance_group": tol_group,
        "objective": policy.search.objective,
        "tuned_on": "calibration",
    }
    return Search(res.best, _candidate(model, res.result, res.best, search), res.result, trace, res.sensitivity)


def evaluate_candidate(
    cfg: ModelConfig, policy: Policy, baseline: WrappedModel, candidate: WrappedModel, data: Datasets
) -> Evaluation:
    """fp32 and candidate on the same held-out rows: metrics with paired-bootstrap intervals,
    per-group and intersectional accuracy, fairness gaps, the flip audit; latency side by side."""
    import torch

    from quantgate.evaluate.audit import flip_audit
    from quantgate.evaluate.metrics import compare_proba
    from quantgate.evaluate.runtime import artifact_size, side_by_side_latency

    torch.set_num_threads(get_settings().torch_threads)
    ev = data.evaluation
    from quantgate.models.outputs import class_index

    y = class_index(ev[cfg.label], baseline.classes, what=f"evaluation labels (column '{cfg.label}')")
    base_proba, cand_proba = baseline.predict_proba(ev), candidate.predict_proba(ev)
    declared = list(dict.fromkeys([*cfg.group_columns, *policy.slices]))
    missing = [g for g in declared if g not in ev.columns]
    if missing:
        raise DataError(
            f"evaluation data for '{cfg.name}' has no column(s) {', '.join(missing)} "
            "named as sensitive attributes or slices",
            "add them to the data or fix the declaration",
        )
    group_cols = declared
    b = policy.bootstrap
    cmp = compare_proba(
        y,
        base_proba,
        cand_proba,
        groups=ev[group_cols] if group_cols else None,
        sensitive=[a for a in cfg.sensitive_attributes if a in ev.columns],
        min_group_size=policy.min_group_size,
        resamples=b.resamples,
        confidence=b.confidence,
        seed=b.seed,
    )
    audit_cols = list(dict.fromkeys([*candidate.input_columns, *group_cols]))
    audit = flip_audit(
        ev[audit_cols],
        y,
        base_proba,
        cand_proba,
        group_columns=group_cols,
        min_group_size=policy.min_group_size,
        seed=b.seed,
    )
    runtime = side_by_side_latency(baseline, candidate, ev, batch_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        base_arts = baseline.save(Path(tmp) / "base")
        cand_arts = candidate.save(Path(tmp) / "cand")
        sizes = {
            "baseline_bytes": artifact_size(Path(base_arts["module"])),
            "candidate_bytes": artifact_size(Path(cand_arts["module"])),
        }
    return Evaluation(cmp, runtime, sizes, audit)


def gate(cfg: ModelConfig, policy: Policy, ev: Evaluation) -> Verdict:
    from quantgate.policy import gate_candidate

    extra = {
        "speedup": ev.runtime["speedup"],
        "size_ratio": ev.sizes["candidate_bytes"] / ev.sizes["baseline_bytes"],
        "max_flip_ratio": ev.audit.max_ratio if ev.audit is not None else float("nan"),
    }
    return gate_candidate(cfg.name, policy, ev.comparison, extra)


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
    from quantgate.quantize.recipes import recipe_to_dict

    cmp = ev.comparison
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
        "warnings": list((reading or {}).get("warnings", [])),
        "search_trace": (search or {}).get("trace"),
        "search": search,
        "runtime": ev.runtime,
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
    from quantgate.cards.provenance import materials_from_context, prefect_builder
    from quantgate.cards.trust import attach_provenance
    from quantgate.models.pyfunc import log_wrapped_model
    from quantgate.registry.mlflow_registry import ensure_experiment, register_candidate
    from quantgate.sources.faithful import check_faithful
    from quantgate.sources.python_model import PythonModelWrapped, log_python_model

    s = settings or get_settings()
    ensure_experiment(EXPERIMENT, s)
    cmp = ev.comparison
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
        metrics = {f"fp32_{k}": v for k, v in cmp.baseline.items()}
        metrics |= {f"quantized_{k}": v for k, v in cmp.candidate.items()}
        metrics |= {
            "accuracy_drop": cmp.drop("accuracy"),
            "accuracy_drop_ci_high": cmp.intervals["accuracy"].high,
            **ev.runtime,
            **{k: float(v) for k, v in ev.sizes.items()},
        }
        if ev.audit is not None:
            metrics["max_flip_ratio"] = ev.audit.max_ratio
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # NaN: not measured, not logged
        mlflow.log_text(verdict.to_json(), "verdict.json")
        mlflow.log_text(card_md, "model_card.md")
        mlflow.log_text(card_json(card_ctx), "model_card.json")
        mlflow.log_artifacts(str(_written_dir(report.write_artifacts(Path(tmp) / "validation"))), "validation")
        mlflow.log_metrics({k: float(v) for k, v in report.metrics().items() if v == v})
        if ev.audit is not None:
            mlflow.log_text(json.dumps(ev.audit.to_dict(), indent=2, default=str), "flip_audit.json")
            if ev.audit.sample:
                mlflow.log_text(pd.DataFrame(ev.audit.sample).to_csv(index=False), "flip_audit_sample.csv")
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
            "quantgate.accuracy_fp32": f"{cmp.baseline['accuracy']:.4f}",
            "quantgate.accuracy_quantized": f"{cmp.candidate['accuracy']:.4f}",
            "quantgate.speedup": f"{ev.runtime['speedup']:.2f}",
        }
        if not verdict.passed:
            tags["quantgate.failed_rules"] = ",".join(verdict.failed_rules)
        tags |= attach_provenance(
            info.model_uri,
            run.info.run_id,
            name=card_ctx["name"],
            # name/version, plus the source artifact's digest when the card already computed it
            source={k: v for k, v in card_ctx["source"].items() if k in ("name", "version", "uri", "digest", "files")},
            materials=materials_from_context(card_ctx, policy_path=policy_path),
            builder=builder or prefect_builder(flow_run_id=flow_run),
            settings=s,
        )
        return register_candidate(
            model_uri=info.model_uri,
            source=source.version,
            run_id=run.info.run_id,
            tags=tags,
            description=card_description(card_md),
            passed=verdict.passed,
            settings=s,
        )
