"""The model card of a regressor's candidate: its own template, the classifier card's helpers.

Same header (Hugging Face ``ModelCardData``), provenance, signature and approval path as a
classifier's card (:mod:`quantgate.cards.card`); the figures are the regression section of the
context (:func:`quantgate.steps.regression_card.regression_card_context`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from quantgate.cards.card import _env, _uses, base_model, card_data, card_tags, json_safe, license_of
from quantgate.errors import ConfigError

TEMPLATE = "model_card_regression.md.j2"


def regression_derived(ctx: dict[str, Any]) -> dict[str, Any]:
    """The ``card`` namespace the regression template sees (kept in the JSON twin)."""
    src = ctx["source"]
    return {
        "base_model": base_model(ctx),
        "source_uri": src.get("uri") or f"models:/{src['name']}/{src['version']}",
        "source_digest": src.get("digest"),
        "license": license_of(ctx),
        "tags": card_tags(ctx),
        "uses": _uses(ctx),
    }


def render_regression_card(ctx: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(Markdown with the metadata header, JSON twin) of a regressor's card."""
    import jinja2

    header = card_data(ctx).to_yaml()
    text = resources.files("quantgate").joinpath("templates", TEMPLATE).read_text()
    try:
        md = _env().from_string(text).render(**ctx, card=regression_derived(ctx), card_data=header)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"regression model card template {TEMPLATE} failed: {exc}") from exc
    return md, regression_twin(ctx)


def regression_twin(ctx: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = card_data(ctx).to_dict()  # type: ignore[no-untyped-call]
    twin: dict[str, Any] = json_safe({**ctx, "card": regression_derived(ctx), "card_data": meta})
    return twin


def regression_card_json(ctx: dict[str, Any]) -> str:
    """``model_card.json`` of a regressor's candidate, strict JSON."""
    return json.dumps(regression_twin(ctx), indent=2, sort_keys=True, allow_nan=False)
