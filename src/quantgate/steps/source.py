"""Source: the registered version read through its source kind, and the proof that the reading is the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.steps.context import Datasets, Faithfulness, Source

if TYPE_CHECKING:
    from quantgate.models.wrapped import WrappedModel


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
