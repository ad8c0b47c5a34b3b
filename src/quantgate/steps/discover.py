"""Discover: resolve a source version and its onboarding; find versions not yet governed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.onboarding import load_model_config
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings
from quantgate.steps.context import Source

if TYPE_CHECKING:
    pass


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
        # a version whose registration was killed half-way does not govern its source
        governed = {v.tags.get(c.TAG_SOURCE) for v in children if c.TAG_REGISTERING not in (v.tags or {})}
        todo += [
            f"{name}/{v.version}"
            for v in sorted(sources, key=lambda v: int(v.version))
            if f"{name}/{v.version}" not in governed
        ]
    return todo
