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
    UnfaithfulReading (nothing judged, nothing registered) when they differ. Also picks up an
    accuracy the source's run logged; the card compares it with the measured baseline."""
    from quantgate.registry.mlflow_registry import client
    from quantgate.sources.faithful import check_faithful, logged_accuracy

    uri = f"models:/{source.version.name}/{source.version.version}"
    check_missing_text(source, model, data)
    report = check_faithful(uri, model, data.evaluation, what=f"source {source.ref}")
    check_missing_inputs(source, model, data)
    warnings: list[str] = []
    order = check_class_order(source, model, data)
    if order:
        warnings.append(order)
    if model.spec.get("output_ambiguous"):
        warnings.append(f"the model's output ({model.spec.get('output_note')}) was read as declared by output:")
    logged = logged_accuracy(client().get_run(source.version.run_id).data.metrics) if source.version.run_id else None
    return Faithfulness(report.to_dict(), warnings, logged)


#: evaluation rows the guessed class order is checked on, and by how much another order must agree
#: better with the labels to be called a mis-reading (a weak model is near chance either way)
CLASS_ORDER_ROWS = 512
CLASS_ORDER_MARGIN = 0.10


def check_class_order(source: Source, model: WrappedModel, data: Datasets) -> str | None:
    """When the classes' order is the label values sorted (the model's output does not name them),
    check it against the labels: an order that agrees much better (a one-logit model whose
    positive class sorts first, say) is a ConfigError naming the order to declare; otherwise a
    warning for the card that the order was inferred."""
    if model.spec.get("classes_from") != "sorted labels":
        return None
    from quantgate.errors import ConfigError
    from quantgate.models.outputs import best_class_order, class_index

    cfg = source.config
    ev = data.evaluation  # a seeded sample: a file sorted by label would put one class in its head
    rows = ev.sample(n=CLASS_ORDER_ROWS, random_state=0) if len(ev) > CLASS_ORDER_ROWS else ev
    classes = model.classes
    y = class_index(rows[cfg.label], classes, what=f"evaluation labels (column '{cfg.label}')")
    order = best_class_order(y, model.predict_proba(rows), classes)
    if order.best != classes and order.best_accuracy - order.accuracy > CLASS_ORDER_MARGIN:
        raise ConfigError(
            f"{source.ref}'s output does not name its classes; read in the sorted order of the labels {classes}, "
            f"it is right on {order.accuracy:.1%} of {order.rows} evaluation rows, in the order {order.best} on "
            f"{order.best_accuracy:.1%}",
            f"set classes: {_yaml_list(order.best)} in registry/models/{cfg.name}.yaml (or the source version's "
            f"tag quantgate.classes={','.join(map(str, order.best))}): the model's classes in output order; "
            "nothing was judged or registered",
        )
    return (
        f"classes {classes} are the label values in sorted order (the model's output does not name them; "
        f"checked against the labels on {order.rows} rows): declare classes: to make the order explicit"
    )


def _yaml_list(values: list[object]) -> str:
    import yaml

    return str(yaml.safe_dump(values, default_flow_style=True, width=1_000_000)).strip()


def check_missing_text(source: Source, model: WrappedModel, data: Datasets) -> None:
    """Evaluation rows with no text cannot be judged: quantgate's reading would score the string
    'nan' (or 'None'), which is not what the model would be sent in serving."""
    if model.task != "text-classification":
        return
    from quantgate.errors import DataError, first_rows

    ev = data.evaluation
    col = model.input_columns[0]
    missing = ev[col].isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{int(missing.sum())} of the {len(ev)} evaluation rows for {source.ref} have no text in column '{col}' "
            f"(rows {first_rows(ev.index[missing])})",
            "drop them from the evaluation data, or fill them with the text the model is sent for them in serving "
            "(an empty string, say)",
        )


def check_missing_inputs(source: Source, model: WrappedModel, data: Datasets) -> None:
    """Evaluation rows with missing inputs are scored by the source before anything is judged: a
    model that returns NaN for them is an error naming the columns (not, later, a failed metric)."""
    import numpy as np

    from quantgate.sources.layout import non_finite_scores

    ev = data.evaluation
    cols = [c for c in model.input_columns if c in ev.columns]
    rows = ev[ev[cols].isna().any(axis=1)]
    if not len(rows):
        return
    bad = ~np.isfinite(model.predict_proba(rows)).all(axis=1)
    if bad.any():
        raise non_finite_scores(source.ref, rows[cols], bad, f"of the {len(ev)} evaluation rows")
