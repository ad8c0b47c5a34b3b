"""The promotion ledger: every approval, rejection, promotion, refusal and rollback of a governed
model, hash-chained, stored in the MLflow store itself.

**Chain (pure, :func:`build_entry` / :func:`verify_chain`).** An entry is a flat JSON object. Its
``hash`` is ``"sha256:" + sha256(canonical JSON of the entry without "hash")``, canonical JSON
being ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8. Every
entry holds ``prev_hash``, the hash of the entry before it (:data:`GENESIS` for the first), and
``seq`` (1, 2, ...). Editing an entry changes its hash; removing one breaks the next entry's
``prev_hash`` and the ``seq`` run.

**Storage (MLflow, :class:`MlflowLedger`).** One run per entry in the experiment
``quantgate-ledger`` (visible in the MLflow UI, embedded or server), with the canonical entry in
tag ``quantgate.promotion.ledger.entry``, its hash in ``quantgate.promotion.ledger.hash``, the main fields as readable
tags, and ``entry.json`` as an artifact. The registered model's tag ``quantgate.promotion.ledger.head``
holds ``"<seq>:<hash>"`` of the last entry, so removing the *last* entry is detected too, and its
description ends with the recent history. A new entry chains to the head tag, never to whatever
run happens to be last, so a removed entry stays a visible gap.

Not done: appends from two processes at the same instant are not serialised (MLflow has no
transaction across runs); both entries would claim the same ``seq`` and ``verify`` reports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quantgate.cards.signing import canonical_json
from quantgate.registry import contract as c

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

GENESIS = "sha256:" + "0" * 64
ACTIONS = ("approval", "rejection", "promotion", "refusal", "rollback")
FIELDS = (
    "seq",
    "action",
    "model",
    "version",
    "previous_champion",
    "champion",
    "actor",
    "approved_by",
    "at",
    "policy_digest",
    "provenance_digest",
    "reason",
    "prev_hash",
)
TAG_PREFIX = "quantgate.promotion.ledger."
TAG_ENTRY = TAG_PREFIX + "entry"
TAG_HASH = TAG_PREFIX + "hash"
# readable copies of these fields are tags too (and are checked against the entry)
SHOWN = ("seq", "action", "model", "version", "previous_champion", "champion", "actor", "approved_by", "at")
DESCRIPTION_MARKER = "\n\n<!-- quantgate ledger -->\n"
DESCRIPTION_ROWS = 10


canonical = canonical_json  # the same canonical form the provenance statement is signed in


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry: over every field except ``hash`` itself."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return "sha256:" + hashlib.sha256(canonical(body)).hexdigest()


def build_entry(
    *,
    seq: int,
    prev_hash: str,
    action: str,
    model: str,
    version: str | None,
    actor: str,
    previous_champion: str | None = None,
    champion: str | None = None,
    approved_by: str | None = None,
    policy_digest: str | None = None,
    provenance_digest: str | None = None,
    reason: str = "",
    at: str | None = None,
) -> dict[str, Any]:
    """A new entry (with its ``hash``); values are strings or None so the JSON is stable."""
    if action not in ACTIONS:
        raise ValueError(f"ledger action '{action}' is not one of {', '.join(ACTIONS)}")
    entry: dict[str, Any] = {
        "seq": int(seq),
        "action": action,
        "model": model,
        "version": None if version is None else str(version),
        "previous_champion": None if previous_champion is None else str(previous_champion),
        "champion": None if champion is None else str(champion),
        "actor": actor,
        "approved_by": approved_by,
        "at": at or datetime.now(UTC).isoformat(timespec="microseconds"),
        "policy_digest": policy_digest,
        "provenance_digest": provenance_digest,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    entry["hash"] = entry_hash(entry)
    return entry


@dataclass
class LedgerReport:
    """The outcome of :func:`verify_chain` (plus store checks): ok when ``problems`` is empty."""

    model: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)
    head: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.ok:
            return [f"ledger of {self.model}: {self.entries} entries, chain intact (head {self.head or 'none'})"]
        return [f"ledger of {self.model}: {self.entries} entries, NOT intact:"] + [f"  FAIL {p}" for p in self.problems]


def verify_chain(
    entries: Sequence[Mapping[str, Any]], *, model: str, head: str | None = None, report: LedgerReport | None = None
) -> LedgerReport:
    """Check ``entries`` (in stored order by ``seq``) form one unbroken chain for ``model``.

    Each entry's ``hash`` must be the hash of its fields, ``prev_hash`` the previous entry's
    hash (:data:`GENESIS` first), ``seq`` 1, 2, ... without gaps, and ``head`` (``"seq:hash"``
    recorded elsewhere, when given) the last entry's.
    """
    rep = report or LedgerReport(model)
    rep.entries = len(entries)
    prev, want_seq = GENESIS, 1
    for e in entries:
        seq = e.get("seq")
        label = f"entry {seq}"
        if e.get("model") != model:
            rep.problems.append(f"{label} is about '{e.get('model')}', not '{model}'")
        if set(e) - {"hash"} != set(FIELDS):
            odd = sorted((set(e) - {"hash"}) ^ set(FIELDS))
            rep.problems.append(f"{label} has other fields than a ledger entry ({', '.join(odd)})")
        if e.get("hash") != entry_hash(e):
            rep.problems.append(f"{label} was edited: its content no longer matches its hash")
        if seq != want_seq:
            missing = f"entries {want_seq}..{seq - 1}" if isinstance(seq, int) and seq > want_seq else "order"
            rep.problems.append(f"{label} follows entry {want_seq - 1}: {missing} removed or out of place")
        if e.get("prev_hash") != prev:
            rep.problems.append(f"{label} does not chain to the entry before it (one was removed or edited)")
        prev = str(e.get("hash"))
        want_seq = (seq if isinstance(seq, int) else want_seq) + 1
    last = f"{entries[-1].get('seq')}:{entries[-1].get('hash')}" if entries else None
    rep.head = last
    if head is not None and head != last:
        rep.problems.append(
            f"the model's {c.TAG_LEDGER_HEAD} is {head}, but the last entry is {last or 'none'}: "
            "entries after it were removed (or the head tag was edited)"
        )
    return rep


# --- MLflow storage --------------------------------------------------------------------------


@dataclass
class StoredEntry:
    entry: dict[str, Any]
    run_id: str
    tags: dict[str, str]


def _tag_value(v: Any) -> str:
    return "" if v is None else str(v)


class MlflowLedger:
    """The ledger of every governed model in one MLflow store (see the module doc)."""

    def __init__(self, client: MlflowClient, artifact_root: str | None = None) -> None:
        """``artifact_root``: where the ledger experiment keeps artifacts when it is created
        (embedded store: under QUANTGATE_HOME; a server decides itself when None)."""
        self.client = client
        self.artifact_root = artifact_root

    def experiment_id(self, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(c.LEDGER_EXPERIMENT)
        if exp is not None:
            return str(exp.experiment_id)
        if not create:
            return None
        location = f"{self.artifact_root.rstrip('/')}/{c.LEDGER_EXPERIMENT}" if self.artifact_root else None
        try:
            return str(self.client.create_experiment(c.LEDGER_EXPERIMENT, artifact_location=location))
        except Exception:  # created by another process in between
            exp = self.client.get_experiment_by_name(c.LEDGER_EXPERIMENT)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def _runs(self, model: str, deleted: bool = False) -> list[Any]:
        from mlflow.entities import ViewType

        exp_id = self.experiment_id(create=False)
        if exp_id is None:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [exp_id],
                filter_string=f"tags.`{TAG_PREFIX}model` = '{model}'",
                run_view_type=ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY,
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def entries(self, model: str) -> list[StoredEntry]:
        """The stored entries of ``model`` in ``seq`` order (unparseable ones keep their place)."""
        out = []
        for run in self._runs(model):
            tags = dict(run.data.tags)
            try:
                entry = json.loads(tags.get(TAG_ENTRY, ""))
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                seq = tags.get(TAG_PREFIX + "seq", "")
                entry = {"seq": int(seq) if seq.isdigit() else -1, "model": model, "unreadable": True}
            out.append(StoredEntry(entry, run.info.run_id, tags))
        return sorted(out, key=lambda s: s.entry.get("seq") if isinstance(s.entry.get("seq"), int) else -1)

    def head(self, model: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(model).tags.get(c.TAG_LEDGER_HEAD)
        except MlflowException:
            return None

    def append(self, **fields: Any) -> dict[str, Any]:
        """Record one entry for ``fields["model"]`` (see :func:`build_entry`) and return it."""
        model = fields["model"]
        head = self.head(model)
        if head and ":" in head:
            seq_text, prev_hash = head.split(":", 1)
            seq = int(seq_text) + 1 if seq_text.isdigit() else 1
        else:  # no head tag: chain to the last stored entry (a new ledger has none)
            stored = self.entries(model)
            seq = (stored[-1].entry.get("seq", 0) + 1) if stored else 1
            prev_hash = str(stored[-1].entry.get("hash")) if stored else GENESIS
        entry = build_entry(seq=seq, prev_hash=prev_hash, **fields)
        exp_id = self.experiment_id()
        tags = {TAG_PREFIX + k: _tag_value(entry[k]) for k in SHOWN}
        tags |= {TAG_ENTRY: canonical(entry).decode(), TAG_HASH: entry["hash"]}
        name = f"{entry['action']} {model}" + (f" v{entry['version']}" if entry["version"] else "")
        run = self.client.create_run(exp_id, run_name=f"{seq:04d} {name}", tags=tags)
        self.client.log_text(run.info.run_id, json.dumps(entry, indent=2, sort_keys=True), "entry.json")
        self.client.set_terminated(run.info.run_id)
        self.client.set_registered_model_tag(model, c.TAG_LEDGER_HEAD, f"{seq}:{entry['hash']}")
        self._describe(model)
        return entry

    def _describe(self, model: str) -> None:
        """The registered model's description keeps its own text and ends with the recent history
        (as many of the last :data:`DESCRIPTION_ROWS` entries as MLflow's description limit holds)."""
        rm = self.client.get_registered_model(model)
        own = (rm.description or "").split(DESCRIPTION_MARKER, 1)[0]
        rows = [s.entry for s in self.entries(model)][-DESCRIPTION_ROWS:]
        while True:
            text = own + DESCRIPTION_MARKER + self._history(model, rows)
            if len(text) <= c.MAX_DESCRIPTION_CHARS or len(rows) <= 1:
                break
            rows = rows[1:]  # MLflow's SQL stores refuse a longer description: show fewer entries
        self.client.update_registered_model(model, description=text)

    @staticmethod
    def _history(model: str, rows: Sequence[Mapping[str, Any]]) -> str:
        lines = [
            f"**Ledger** (last {len(rows)}; all: experiment `{c.LEDGER_EXPERIMENT}`, "
            f"`quantgate history {model}`, `quantgate verify --ledger {model}`)",
            "",
            "| # | when (UTC) | action | version | champion before → after | by | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in reversed(rows):
            reason = str(e.get("reason") or "").replace("|", "/").replace("\n", " ")[:120]
            lines.append(
                f"| {e.get('seq')} | {str(e.get('at', ''))[:19]} | {e.get('action')} | {e.get('version') or ''} | "
                f"{e.get('previous_champion') or '-'} → {e.get('champion') or '-'} | {e.get('actor')} | {reason} |"
            )
        return "\n".join(lines)

    def verify(self, model: str, champion: str | None = None, check_champion: bool = True) -> LedgerReport:
        """Chain, tags, head and deleted runs of ``model``'s ledger; and, when ``check_champion``,
        that ``@champion`` is where the last promotion or rollback put it (``champion``)."""
        rep = LedgerReport(model)
        for run in self._runs(model, deleted=True):
            seq = run.data.tags.get(TAG_PREFIX + "seq", "?")
            rep.problems.append(f"entry {seq} was deleted (run {run.info.run_id} is in the MLflow trash)")
        stored = self.entries(model)
        for s in stored:
            if s.entry.get("unreadable"):
                rep.problems.append(f"entry {s.entry['seq']} (run {s.run_id}): tag {TAG_ENTRY} is not a ledger entry")
                continue
            if s.tags.get(TAG_HASH) != s.entry.get("hash"):
                rep.problems.append(f"entry {s.entry.get('seq')} (run {s.run_id}): tag {TAG_HASH} was edited")
            for k in SHOWN:
                if s.tags.get(TAG_PREFIX + k, "") != _tag_value(s.entry.get(k)):
                    rep.problems.append(
                        f"entry {s.entry.get('seq')} (run {s.run_id}): tag {TAG_PREFIX}{k} was edited "
                        f"('{s.tags.get(TAG_PREFIX + k, '')}', the entry says '{_tag_value(s.entry.get(k))}')"
                    )
        head = self.head(model)
        verify_chain([s.entry for s in stored], model=model, head=head, report=rep)
        if head is None and stored:
            rep.problems.append(f"the model's {c.TAG_LEDGER_HEAD} tag is missing (deleted?)")
        moves = [s.entry for s in stored if s.entry.get("action") in ("promotion", "rollback")]
        if check_champion and moves and moves[-1].get("champion") != champion:
            rep.problems.append(
                f"@champion is {champion or 'unset'}, but the last recorded move set it to "
                f"{moves[-1].get('champion')}: it was moved outside quantgate"
            )
        elif check_champion and not moves and champion is not None:
            rep.problems.append(
                f"@champion is {champion}, but no promotion is recorded: it was moved outside quantgate, or a "
                "promotion was interrupted before its entry (run quantgate promote again to record it)"
            )
        return rep
