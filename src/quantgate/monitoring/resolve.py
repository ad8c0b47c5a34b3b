"""Resolve: the spec -> the served quantized version, in one name form.

The model is named once here: ``source`` (the source model, whose ``monitoring/<source>.yaml`` is
read and whose retraining a drift triggers) and ``name`` (its registered ``<source>-quantized``,
what was served and is tagged and alerted on). Every later step reads these two fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantgate.errors import RegistryError
from quantgate.monitoring.spec import MonitorSpec, load_monitor_spec
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from quantgate.models.wrapped import WrappedModel


@dataclass(frozen=True)
class Served:
    """The version ``spec.alias`` points at, loaded: what the window is compared with."""

    spec: MonitorSpec
    #: the source model (``adult-income``): the spec's name, what retraining retrains
    source: str
    #: the served registered model (``adult-income-quantized``)
    name: str
    version: str
    alias: str
    #: the candidate's run: its model card (the gate's figures) and gate-time scores
    run_id: str
    tags: Mapping[str, str]
    model: WrappedModel = field(repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def classes(self) -> list[Any]:
        return list(self.model.classes)

    @property
    def line(self) -> str:
        fp32 = self.tags.get(c.TAG_SOURCE, "no fp32 source tag")
        return f"monitoring {self.name} v{self.version} (@{self.alias}; fp32 source {fp32})"


def source_name(model: str) -> str:
    """``adult-income`` from ``adult-income`` or ``adult-income-quantized``."""
    return model.removesuffix(c.SUFFIX)


def resolve_served(model: str, settings: Settings | None = None) -> Served:
    """The spec of ``model`` (source or ``-quantized`` name) and the version behind its alias, loaded.

    There is deliberately no fallback to ``candidate``: monitoring a version nobody promoted would
    report on a model that serves no traffic. Only MLflow's "does not exist" reads as no such
    alias; any other registry error (server down, permission refused) is raised as it is.
    """
    from quantgate.registry.mlflow_registry import client, load_wrapped, no_such_alias

    s = settings or get_settings()
    source = source_name(model)
    spec = load_monitor_spec(source, s)
    source = source_name(spec.model)
    name = c.quantized_name(source)
    try:
        mv = client(s).get_model_version_by_alias(name, spec.alias)
    except Exception as exc:
        if not no_such_alias(exc):
            raise
        raise RegistryError(
            f"{name} has no '@{spec.alias}' version to monitor",
            f"approve a candidate and run: quantgate promote {source}",
        ) from None
    # what is monitored is loaded only after it verifies (signature, every file's digest, the
    # result tags): an altered artifact is never unpickled, and monitoring says so by name
    from quantgate.cards.trust import verify_version

    report = verify_version(mv, settings=s, check_policy_file=False)
    if not report.passed:
        raise RegistryError(
            f"{name}/{mv.version} (@{spec.alias}) is not monitored: it failed verification ({report.summary()})",
            f"run: quantgate verify {name}/{mv.version}",
        )
    return Served(
        spec=spec,
        source=source,
        name=name,
        version=str(mv.version),
        alias=spec.alias,
        run_id=str(mv.run_id),
        tags=dict(mv.tags or {}),
        model=load_wrapped(mv),
    )
