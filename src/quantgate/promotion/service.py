"""Promotion as one service: check -> ledger -> alias -> alert.

``promote`` and ``rollback`` resolve the quantized model, check the target (signed pass verdict,
approval, the ``verify`` hook: :func:`quantgate.cards.trust.verify_for_promotion`), move
``@champion`` / ``@previous`` and append the ledger entry all or nothing, then announce the move
through the outbox. A refusal is a ledger entry too. ``record_review`` books a reviewer's decision.
Registry primitives come from the MLflow adapter (:mod:`quantgate.registry.mlflow_registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quantgate.errors import RegistryError
from quantgate.registry import contract as c
from quantgate.registry.mlflow_registry import alias_version, client, default_actor, model_exists, resolve_version
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from quantgate.promotion.ledger import MlflowLedger


def ledger(settings: Settings | None = None) -> MlflowLedger:
    """The promotion ledger in this store (:mod:`quantgate.promotion.ledger`)."""
    from quantgate.promotion.ledger import MlflowLedger

    s = settings or get_settings()
    return MlflowLedger(client(s), s.artifacts_dir.as_uri() if s.embedded_mlflow else None)


def _quantized(cl: MlflowClient, source: str) -> str:
    name = source if source.endswith(c.SUFFIX) else c.quantized_name(source)
    if not model_exists(cl, name):
        raise RegistryError(
            f"'{source}' has no quantized versions ({name} is not registered)",
            f"run: quantgate quantize --model {source}",
        )
    return name


def _check_promotable(mv: ModelVersion, verify: Any) -> str | None:
    """Verdict, approval, then the ``verify`` hook (may raise, may return the provenance digest)."""
    verdict = mv.tags.get(c.TAG_VERDICT)
    approval = mv.tags.get(c.TAG_APPROVAL)
    label = f"{mv.name}/{mv.version}"
    if verdict != "pass":
        raise RegistryError(f"{label} failed its gate (verdict={verdict}); it can never be promoted")
    if approval != "approved":
        raise RegistryError(
            f"{label} is not approved (quantgate.approval={approval})",
            f"a reviewer sets tag quantgate.approval=approved on version {mv.version} in the MLflow UI (quantgate ui)",
        )
    digest = verify(mv) if verify is not None else None
    return digest if isinstance(digest, str) else None


def _record_refusal(
    book: MlflowLedger,
    name: str,
    version: str | None,
    mv: ModelVersion | None,
    champion: str | None,
    actor: str,
    exc: RegistryError,
    what: str,
) -> None:
    tags = dict(mv.tags) if mv is not None else {}
    book.append(
        action="refusal",
        model=name,
        version=version,
        actor=actor,
        previous_champion=champion,
        champion=champion,
        approved_by=tags.get(c.TAG_APPROVED_BY),
        policy_digest=tags.get(c.TAG_POLICY_DIGEST),
        provenance_digest=tags.get(c.TAG_APPROVED_DIGEST),
        reason=f"{what} refused: {exc.one_line()}",
    )


def _move_champion(
    cl: MlflowClient,
    book: MlflowLedger,
    mv: ModelVersion,
    previous: str | None,
    entry: dict[str, Any],
    version_tags: dict[str, str],
) -> dict[str, Any]:
    """@champion -> mv, @previous -> the old champion, tags on mv, one ledger entry: all or nothing.

    Order matters for a process killed half-way (no ``except`` runs then): @previous and the tags
    first, @champion next, the ledger entry last. A kill before @champion moves leaves the old
    champion serving; a kill after it leaves a champion whose ledger entry is missing, which the
    next ``promote`` of the same version records (see :func:`promote`)."""
    from quantgate.faults import fault_point

    name, version = mv.name, str(mv.version)
    old_previous = alias_version(cl, name, c.ALIAS_PREVIOUS)
    old_tags = {k: mv.tags.get(k) for k in version_tags}
    try:
        if previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_PREVIOUS, previous)
        for k, v in version_tags.items():
            cl.set_model_version_tag(name, version, k, v)
        cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, version)
        fault_point("promote")
        return book.append(**entry)
    except BaseException:
        if previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, previous)
        else:
            cl.delete_registered_model_alias(name, c.ALIAS_CHAMPION)
        if old_previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_PREVIOUS, old_previous)
        elif previous is not None:
            cl.delete_registered_model_alias(name, c.ALIAS_PREVIOUS)
        for k, v in old_tags.items():
            if v is None:
                cl.delete_model_version_tag(name, version, k)
            else:
                cl.set_model_version_tag(name, version, k, v)
        raise


@dataclass(frozen=True)
class _AliasMove:
    """A checked move of ``@champion`` on ``name`` to ``mv``, not yet made (see :func:`_checked_move`)."""

    settings: Settings
    cl: MlflowClient
    book: MlflowLedger
    name: str
    actor: str
    current: str | None
    mv: ModelVersion
    digest: str | None

    def entry(self, action: str, reason: str, previous: str | None) -> dict[str, Any]:
        version = str(self.mv.version)
        return {
            "action": action,
            "model": self.name,
            "version": version,
            "actor": self.actor,
            "previous_champion": previous,
            "champion": version,
            "approved_by": self.mv.tags.get(c.TAG_APPROVED_BY),
            "policy_digest": self.mv.tags.get(c.TAG_POLICY_DIGEST),
            "provenance_digest": self.digest or self.mv.tags.get(c.TAG_APPROVED_DIGEST),
            "reason": reason,
        }

    def apply(self, action: str, reason: str, version_tags: dict[str, str]) -> None:
        """Move the aliases, tag the version and append the ``action`` entry: all or nothing."""
        _move_champion(
            self.cl, self.book, self.mv, self.current, self.entry(action, reason, self.current), version_tags
        )

    def record_interrupted(self) -> bool:
        """@champion already points at this version: if the ledger does not say so (a promotion
        killed between the alias move and its entry), append the missing entry. True if it did."""
        stored = self.book.entries(self.name)
        last = stored[-1].entry if stored else {}
        if str(last.get("champion")) == str(self.mv.version):
            return False
        previous = self.mv.tags.get(c.TAG_PREVIOUS_CHAMPION)
        reason = "recorded late: @champion already pointed here but the ledger had no entry (an interrupted promotion)"
        self.book.append(**self.entry("promotion", reason, previous))
        return True


def _checked_move(
    source: str,
    requested: str | None,
    what: str,
    pick: Callable[[MlflowClient, str, str | None], str],
    *,
    settings: Settings | None,
    verify: Any,
    actor: str | None,
    refusal_names_target: bool,
) -> _AliasMove:
    """What promote and rollback share before an alias moves: the quantized model of ``source``,
    its ledger, the actor, the current ``@champion``; then ``pick(client, name, current)`` names the
    target version, which must pass :func:`_check_promotable`. A RegistryError on the way is
    recorded as a ``what`` refusal (naming the picked target when ``refusal_names_target`` and one
    was picked, else ``requested``) and raised."""
    s = settings or get_settings()
    cl = client(s)
    name = _quantized(cl, source)
    book = ledger(s)
    who = actor or default_actor(s)
    current = alias_version(cl, name, c.ALIAS_CHAMPION)
    target: str | None = None
    mv = None
    try:
        target = pick(cl, name, current)
        mv = resolve_version(f"{name}/{target}", s)
        digest = _check_promotable(mv, verify)
    except RegistryError as exc:
        named = target if refusal_names_target and target is not None else requested
        _record_refusal(book, name, named, mv, current, who, exc, what)
        raise
    return _AliasMove(s, cl, book, name, who, current, mv, digest)


def promote(
    source: str,
    version: str | None = None,
    *,
    settings: Settings | None = None,
    verify: Any = None,
    actor: str | None = None,
) -> tuple[ModelVersion, str | None]:
    """Move ``champion`` to an approved, passing version; refuse anything else.

    ``verify`` (optional callable taking the ModelVersion) runs last and may raise to refuse; what
    it returns, when a string, is recorded as the provenance digest. The old champion becomes
    ``@previous``. The promotion, or the refusal (for a registered model), is a ledger entry by
    ``actor`` (default :func:`default_actor`). Returns (new champion, previous champion or None).
    """

    def pick(cl: MlflowClient, name: str, current: str | None) -> str:
        if version is not None:
            return version
        candidate = alias_version(cl, name, c.ALIAS_CANDIDATE)
        if candidate is None:
            raise RegistryError(
                f"{name} has no '{c.ALIAS_CANDIDATE}' alias: no version passed its gate",
                "quantize again with another recipe or policy",
            )
        return candidate

    move = _checked_move(
        source, version, "promotion", pick, settings=settings, verify=verify, actor=actor, refusal_names_target=True
    )
    name, mv, previous = move.name, move.mv, move.current
    if previous == str(mv.version):
        move.record_interrupted()
        return mv, previous
    tags = {c.TAG_PROMOTED_AT: datetime.now(UTC).isoformat()}
    if previous is not None:
        tags[c.TAG_PREVIOUS_CHAMPION] = previous
    # a promotion without a verifier is recorded as such, never as "verified"
    move.apply("promotion", "approved and verified" if verify is not None else "approved; NOT verified", tags)
    from quantgate.notify.emit import promoted as notify_promoted  # the alert goes through the outbox

    notify_promoted(move.cl.get_model_version(name, mv.version), previous, settings=move.settings)
    return move.cl.get_model_version(name, mv.version), previous


def rollback(
    source: str,
    to: str | None = None,
    *,
    settings: Settings | None = None,
    verify: Any = None,
    actor: str | None = None,
) -> tuple[ModelVersion, str]:
    """Move ``champion`` back to ``to`` (default: ``@previous``); the replaced champion becomes
    ``@previous``. The target must pass the same checks as a promotion (verdict, approval,
    ``verify``). Only aliases move: the target version itself is left exactly as it was. Recorded
    in the ledger (refusals too, naming ``to``). Returns (new champion, the champion it replaced)."""

    def pick(cl: MlflowClient, name: str, current: str | None) -> str:
        if current is None:
            raise RegistryError(f"{name} has no @champion, so there is nothing to roll back")
        target = to if to is not None else alias_version(cl, name, c.ALIAS_PREVIOUS)
        if target is None:
            raise RegistryError(
                f"{name} has no @{c.ALIAS_PREVIOUS} alias to roll back to", "name a version: --to VERSION"
            )
        if str(target) == current:
            raise RegistryError(f"{name}/{target} is already @champion", "name another version: --to VERSION")
        return target

    move = _checked_move(
        source, to, "rollback", pick, settings=settings, verify=verify, actor=actor, refusal_names_target=False
    )
    assert move.current is not None  # pick refused a model without @champion
    move.apply("rollback", f"rolled back from v{move.current}", {})
    return move.cl.get_model_version(move.name, move.mv.version), move.current


def record_review(
    name: str, version: str, decision: str, *, settings: Settings | None = None, actor: str | None = None
) -> dict[str, Any]:
    """A ledger entry for a reviewer's decision on ``name/version`` (``approved`` -> approval,
    ``rejected`` -> rejection); who is the server's stamp when present, else ``actor``."""
    s = settings or get_settings()
    cl = client(s)
    mv = cl.get_model_version(name, version)
    action = {"approved": "approval", "rejected": "rejection"}.get(decision)
    if action is None:
        raise RegistryError(f"'{decision}' is not a review decision", "approved or rejected")
    champion = alias_version(cl, name, c.ALIAS_CHAMPION)
    stamped = mv.tags.get(c.TAG_APPROVED_BY)
    return ledger(s).append(
        action=action,
        model=name,
        version=str(version),
        actor=stamped or actor or "unknown (no server stamp)",
        previous_champion=champion,
        champion=champion,
        approved_by=stamped if action == "approval" else None,
        policy_digest=mv.tags.get(c.TAG_POLICY_DIGEST),
        provenance_digest=mv.tags.get(c.TAG_APPROVED_DIGEST),
        reason=f"{c.TAG_APPROVAL}={decision}",
    )
