"""Where alerts go: routes, read from ``monitoring/<model>.yaml`` (``alerts:``) or, for a model
without its own routes, from the project's ``quantgate.yaml`` (``notifications: routes:``).

A route is one of:

- ``{block: "slack-ml-alerts"}``: a Prefect notification block saved on the Prefect server
  (``SlackWebhook``, ``MicrosoftTeamsWebhook`` or ``CustomWebhookNotificationBlock``), named by
  its document name or as ``"<block-type-slug>/<name>"``;
- ``{url: "https://..."}`` or ``{url_env: "VAR"}``: quantgate's own webhook (JSON body, or Slack
  Block Kit with ``type: slack`` or a hooks.slack.com URL).

Any route may say ``events: [drift, promoted, ...]`` to receive only those kinds.
``QUANTGATE_ALERT_WEBHOOK`` (settings ``alert_webhook``), when set, replaces every route.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantgate.errors import ConfigError
from quantgate.notify.events import Kind
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

#: the project-level file (at the project root) holding the default routes
PROJECT_FILE = "quantgate.yaml"
OVERRIDE_ENV = "QUANTGATE_ALERT_WEBHOOK"


class Route(BaseModel):
    """One alert destination (see the module docstring). Also ``monitoring/<model>.yaml``'s ``alerts`` item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "slack", "block"] | None = None
    url: str | None = None
    url_env: str | None = None
    block: str | None = None
    events: list[Kind] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Route:
        given = [k for k in ("url", "url_env", "block") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of url / url_env / block")
        if self.block is not None and self.type not in (None, "block"):
            raise ValueError(f"a block route takes no type '{self.type}' (the block's own type decides)")
        if self.block is None and self.type == "block":
            raise ValueError("type: block needs block: <name>")
        return self

    @property
    def kind(self) -> Literal["webhook", "slack", "block"]:
        if self.block is not None:
            return "block"
        return "slack" if self.type == "slack" else "webhook"

    def resolved_url(self) -> str | None:
        import os

        return self.url or (os.environ.get(self.url_env or "") or None)

    def wants(self, kind: str) -> bool:
        return self.events is None or kind in self.events

    @property
    def label(self) -> str:
        """A name safe to print and store: never the secret part of a URL."""
        if self.block is not None:
            return f"block:{self.block}"
        if self.url_env is not None:
            return f"{self.kind}:${self.url_env}"
        parts = urlsplit(self.url or "")
        digest = hashlib.sha256((self.url or "").encode()).hexdigest()[:8]
        return f"{self.kind}:{parts.scheme}://{parts.hostname or '?'}#{digest}"

    def to_json(self) -> str:
        return json.dumps(self.model_dump(exclude_none=True), sort_keys=True)


class _Notifications(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: list[Route] = Field(default_factory=list)
    #: outbox retry schedule (see quantgate.notify.outbox.Backoff)
    backoff_s: float = Field(default=30.0, ge=0)
    backoff_max_s: float = Field(default=3600.0, ge=0)
    max_attempts: int = Field(default=20, ge=1)
    lease_s: float = Field(default=120.0, gt=0)


class _ProjectFile(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # other sections belong to others

    notifications: _Notifications = Field(default_factory=_Notifications)


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
        for e in exc.errors()
    )


def monitoring_example(folder: Path) -> str:
    """What to copy a monitoring spec from: a spec or example in the project's monitoring/ folder
    (a `quantgate init` project has example-model.yaml.example, this repository adult-income.yaml)."""
    found = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yaml.example"))
    return f"see {found[0]}" if found else "see the README's 'Monitoring what was served' section"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping", monitoring_example(path.parent))
    return data


def model_routes(model: str, settings: Settings | None = None) -> list[Route] | None:
    """The ``alerts:`` of ``monitoring/<source>.yaml``; None when the model has no such file or key."""
    s = settings or get_settings()
    path = s.path(Path("monitoring") / f"{model.removesuffix(c.SUFFIX)}.yaml")
    if not path.is_file():
        return None
    raw = _read_yaml(path).get("alerts")
    if raw is None:
        return None
    try:
        return [Route.model_validate(r) for r in raw]
    except ValidationError as exc:
        raise ConfigError(f"invalid alert route in {path}: {_errors(exc)}") from None


def project_notifications(settings: Settings | None = None) -> _Notifications:
    """The ``notifications:`` section of the project's ``quantgate.yaml`` (defaults without the file)."""
    s = settings or get_settings()
    path = s.path(PROJECT_FILE)
    if not path.is_file():
        return _Notifications()
    try:
        return _ProjectFile.model_validate(_read_yaml(path)).notifications
    except ValidationError as exc:
        raise ConfigError(f"invalid {path}: {_errors(exc)}", "see the README, section Notifications") from None


def project_routes(settings: Settings | None = None) -> list[Route]:
    """``notifications.routes`` of the project's ``quantgate.yaml`` (none without the file)."""
    return list(project_notifications(settings).routes)


def routes_for(model: str, kind: str, settings: Settings | None = None) -> list[Route]:
    """The routes one alert goes to: the override, else the model's own routes, else the project's;
    then only those that want this kind."""
    s = settings or get_settings()
    if s.alert_webhook:
        return [Route(url_env=OVERRIDE_ENV)]
    own = model_routes(model, s)
    chosen = own if own is not None else project_routes(s)
    return [r for r in chosen if r.wants(kind)]
