"""Everything quantgate does to MLflow, in one adapter.

Registry writes are the last step of a flow and are undone if any part fails, so bad input or
a crash never leaves a half-registered version or a moved alias.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quantgate.errors import RegistryError
from quantgate.registry import contract as c
from quantgate.settings import Settings, configure_mlflow, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from quantgate.models.wrapped import WrappedModel


def client(settings: Settings | None = None) -> MlflowClient:
    """A client on the configured store. Changes no global state: MLflow's fluent API is pointed
    at the store once, by ``quantgate.settings.configure_mlflow`` (CLI and flow start-up)."""
    from mlflow.tracking import MlflowClient

    s = settings or get_settings()
    if s.embedded_mlflow:
        s.home_abs.mkdir(parents=True, exist_ok=True)  # the SQLite file's directory
    return MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri)


def ensure_experiment(name: str, settings: Settings | None = None) -> str:
    """Create the experiment with its artifacts under QUANTGATE_HOME (never ./mlruns)."""
    import mlflow

    s = settings or get_settings()
    configure_mlflow(s)  # the runs that follow are started with the fluent API
    cl = client(s)
    exp = cl.get_experiment_by_name(name)
    if exp is None:
        location = (s.artifacts_dir / name).as_uri() if s.embedded_mlflow else None
        exp_id = cl.create_experiment(name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def _exists(cl: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        cl.get_registered_model(name)
        return True
    except MlflowException:
        return False


def resolve_version(ref: str, settings: Settings | None = None) -> ModelVersion:
    """``name``, ``name/VERSION`` or ``name@ALIAS`` -> ModelVersion (latest when unqualified)."""
    from mlflow.exceptions import MlflowException

    cl = client(settings)
    name, version, alias = c.parse_model_ref(ref)
    if not _exists(cl, name):
        known = sorted(m.name for m in cl.search_registered_models(max_results=200))
        raise RegistryError(
            f"no registered model named '{name}'",
            f"registered: {', '.join(known) or 'none (run `quantgate demo` or register one)'}",
        )
    try:
        if alias:
            return cl.get_model_version_by_alias(name, alias)
        if version:
            if not version.isdigit():
                raise RegistryError(f"version '{version}' of '{name}' is not a number", "use NAME/3 or NAME@alias")
            return cl.get_model_version(name, version)
    except MlflowException:
        what = f"alias '{alias}'" if alias else f"version {version}"
        versions = sorted(int(v.version) for v in cl.search_model_versions(f"name='{name}'"))
        raise RegistryError(
            f"model '{name}' has no {what}", f"versions: {', '.join(map(str, versions)) or 'none'}"
        ) from None
    versions = cl.search_model_versions(f"name='{name}'")
    if not versions:
        raise RegistryError(f"model '{name}' has no versions")
    return max(versions, key=lambda v: int(v.version))


def load_wrapped(mv: ModelVersion, context: Any = None) -> WrappedModel:
    """Load a registered version as a WrappedModel through its source kind (``quantgate.sources``),
    refusing flavors quantgate cannot quantize. ``context`` (a SourceContext) brings the onboarding
    and data that tensor models need; without it, only what the version records is used."""
    from mlflow.models import Model

    from quantgate.sources import SourceContext, load_source

    ctx = context or SourceContext(mv, Model.load(f"models:/{mv.name}/{mv.version}"))
    return load_source(ctx)


def register_candidate(
    *,
    model_uri: str,
    source: ModelVersion,
    run_id: str,
    tags: dict[str, str],
    description: str,
    passed: bool,
    settings: Settings | None = None,
) -> ModelVersion:
    """Register under ``<source>-quantized``; alias ``candidate`` only if the gate passed.

    All or nothing: if tagging or aliasing fails, the new version is deleted and the previous
    ``candidate`` alias restored.
    """
    cl = client(settings)
    name = c.quantized_name(source.name)
    created_model = False
    if not _exists(cl, name):
        cl.create_registered_model(
            name,
            tags={"quantgate.source_model": source.name},
            description=f"Governed quantized versions of `{source.name}` (quantgate).",
        )
        created_model = True
    previous = _alias_version(cl, name, c.ALIAS_CANDIDATE)
    mv = None
    try:
        # a tracking server checks that a models:/<LoggedModel id> source names its model_id
        rest = model_uri.removeprefix("models:/")
        model_id = rest if model_uri.startswith("models:/") and "/" not in rest and "@" not in rest else None
        mv = cl.create_model_version(
            name, model_uri, run_id=run_id, tags=tags, description=description, model_id=model_id
        )
        _wait_ready(cl, name, mv.version)
        if passed:
            cl.set_registered_model_alias(name, c.ALIAS_CANDIDATE, mv.version)
        return cl.get_model_version(name, mv.version)
    except BaseException:
        if mv is not None:
            cl.delete_model_version(name, mv.version)
        if previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_CANDIDATE, previous)
        if created_model:
            cl.delete_registered_model(name)
        raise


def _wait_ready(cl: MlflowClient, name: str, version: str, timeout: float = 60) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if cl.get_model_version(name, version).status == "READY":
            return
        time.sleep(0.2)
    raise RegistryError(f"{name}/{version} did not become READY in {timeout:.0f}s")


def _alias_version(cl: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(cl.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(
    source: str, version: str | None = None, *, settings: Settings | None = None, verify: Any = None
) -> tuple[ModelVersion, str | None]:
    """Move ``champion`` to an approved, passing version; refuse anything else.

    ``verify`` (optional callable taking the ModelVersion) runs last and may raise to refuse.
    Returns (new champion, previous champion version or None).
    """
    cl = client(settings)
    name = source if source.endswith(c.SUFFIX) else c.quantized_name(source)
    if not _exists(cl, name):
        raise RegistryError(
            f"'{source}' has no quantized versions ({name} is not registered)",
            f"run: quantgate quantize --model {source}",
        )
    if version is None:
        target = _alias_version(cl, name, c.ALIAS_CANDIDATE)
        if target is None:
            raise RegistryError(
                f"{name} has no '{c.ALIAS_CANDIDATE}' alias: no version passed its gate",
                "quantize again with another recipe or policy",
            )
        version = target
    mv = resolve_version(f"{name}/{version}", settings)
    verdict = mv.tags.get(c.TAG_VERDICT)
    approval = mv.tags.get(c.TAG_APPROVAL)
    if verdict != "pass":
        raise RegistryError(f"{name}/{version} failed its gate (verdict={verdict}); it can never be promoted")
    if approval != "approved":
        raise RegistryError(
            f"{name}/{version} is not approved (quantgate.approval={approval})",
            f"a reviewer sets tag quantgate.approval=approved on version {version} in the MLflow UI (quantgate ui)",
        )
    if verify is not None:
        verify(mv)
    previous = _alias_version(cl, name, c.ALIAS_CHAMPION)
    if previous == str(mv.version):
        return mv, previous
    cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, mv.version)
    try:
        cl.set_model_version_tag(name, mv.version, c.TAG_PROMOTED_AT, datetime.now(UTC).isoformat())
        if previous is not None:
            cl.set_model_version_tag(name, mv.version, c.TAG_PREVIOUS_CHAMPION, previous)
    except BaseException:
        if previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, previous)
        else:
            cl.delete_registered_model_alias(name, c.ALIAS_CHAMPION)
        raise
    return cl.get_model_version(name, mv.version), previous


def registry_snapshot(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every governed version with tags and aliases (for `quantgate status` and tests)."""
    cl = client(settings)
    rows = []
    for rm in cl.search_registered_models(max_results=500):
        aliases: dict[str, list[str]] = {}
        for alias, ver in (rm.aliases or {}).items():
            aliases.setdefault(str(ver), []).append(alias)
        for mv in cl.search_model_versions(f"name='{rm.name}'"):
            rows.append(
                {
                    "name": rm.name,
                    "version": int(mv.version),
                    "aliases": sorted(aliases.get(mv.version, [])),
                    "tags": dict(mv.tags),
                    "run_id": mv.run_id,
                    "source": mv.source,
                }
            )
    return sorted(rows, key=lambda r: (r["name"], r["version"]))
