"""Render the model card from the run's real values through the team-editable template.

The template is ``registry/model_card.md.j2`` in the project: a team edits wording and
sections there without touching code. The JSON twin (``model_card.json``) holds the same
values for machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quantgate.errors import ConfigError
from quantgate.settings import Settings, get_settings

TEMPLATE = Path("registry") / "model_card.md.j2"


def render_card(context: dict[str, Any], settings: Settings | None = None) -> str:
    import jinja2

    path = (settings or get_settings()).path(TEMPLATE)
    if not path.exists():
        raise ConfigError(
            f"model card template not found: {path}", "run quantgate from the project root or set QUANTGATE_PROJECT_DIR"
        )
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * float(v):.2f}%"
    env.filters["num"] = lambda v, nd=4: "n/a" if v is None else f"{float(v):.{nd}f}"
    try:
        return env.from_string(path.read_text()).render(**context)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"model card template {path} failed: {exc}") from exc


def card_json(context: dict[str, Any]) -> str:
    return json.dumps(context, indent=2, sort_keys=True, default=str)
