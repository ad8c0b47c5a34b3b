"""`kill -9` of a governance run at each step, and of a promotion: the rerun leaves no duplicate
version, no orphan alias, no unsigned or half-registered version that verification accepts, and a
ledger that agrees with @champion (issue 26's reliability sweep).

The kill is real: ``QUANTGATE_FAULT_INJECT=<step>`` (quantgate.faults) makes the CLI process send
itself SIGKILL at that step, so no ``except`` or ``finally`` runs. Its own store (SQLite in a
temporary QUANTGATE_HOME), its own project copy and one Prefect server for the module.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import prefect_server, trained_adult_project

from quantgate.registry import contract as c

pytestmark = pytest.mark.integration

SOURCE = "adult-income"
QNAME = c.quantized_name(SOURCE)
RECIPE = "ort-fp32"  # lossless: the verdict is pass on any host, so every step up to the alias runs
#: the steps killed here, in the order the run reaches them (quantgate.faults.POINTS)
GOVERN_KILLS = ("discover", "validate", "quantize", "evaluate", "card", "sign", "register", "alias")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("kill")
    home = tmp / "home"
    env, source = trained_adult_project(tmp, home)
    with prefect_server(tmp, env) as api:
        yield {"env": env | {"PREFECT_API_URL": api}, "home": home, "source": source, "tmp": tmp}


def _cli(store: dict[str, Any], *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(store["env"])
    if fault:
        env["QUANTGATE_FAULT_INJECT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "quantgate.cli", *args],
        env=env,
        cwd=store["tmp"],
        text=True,
        capture_output=True,
        timeout=900,
        check=False,
    )


def _client(store: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{store['home'] / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _versions(store: dict[str, Any]) -> list[Any]:
    from mlflow.exceptions import MlflowException

    try:
        return _client(store).search_model_versions(f"name='{QNAME}'")
    except MlflowException:
        return []


def _aliases(store: dict[str, Any]) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {k: str(v) for k, v in _client(store).get_registered_model(QNAME).aliases.items()}
    except MlflowException:
        return {}


def _verified(store: dict[str, Any], ref: str) -> bool:
    return _cli(store, "verify", ref).returncode == 0


def _check_after_kill(store: dict[str, Any], step: str) -> None:
    """What a kill may leave: at most one version still marked as registering (never verified, never
    counted as governing its source; the next run deletes it), and an alias only at a version that
    verifies, or (a kill right after the alias moved) @candidate at the marked version."""
    versions = _versions(store)
    interrupted = [v for v in versions if c.TAG_REGISTERING in (v.tags or {})]
    complete = [v for v in versions if c.TAG_REGISTERING not in (v.tags or {})]
    assert len(complete) <= 1, f"after a kill at {step}: {len(complete)} complete versions"
    assert len(interrupted) <= 1, f"after a kill at {step}: {len(interrupted)} interrupted versions"
    for v in interrupted:
        assert step in ("register", "alias"), f"a version was left registering by a kill at {step}"
        assert not _verified(store, f"{QNAME}/{v.version}"), "an interrupted version verified"
    marked = {str(v.version) for v in interrupted}
    for alias, version in _aliases(store).items():
        if version in marked:  # killed between the alias and the last step: refused by verify (above),
            assert step == "alias" and alias == c.ALIAS_CANDIDATE  # so never approved, promoted or served
            continue
        assert _verified(store, f"{QNAME}/{version}"), f"@{alias} points at {version}, which does not verify"


def test_a_governance_run_killed_at_each_step_then_rerun(store: dict[str, Any]) -> None:
    for step in GOVERN_KILLS:
        killed = _cli(store, "quantize", "--model", store["source"], "--recipe", RECIPE, fault=step)
        assert killed.returncode == -9, f"{step}: {killed.returncode}\n{killed.stderr[-2000:]}"
        _check_after_kill(store, step)
        if step in ("register", "alias"):
            # the sweep still finds the source ungoverned: a half-registered version does not count
            swept = _cli(store, "status")
            assert swept.returncode == 0, swept.stderr[-2000:]
    done = _cli(store, "quantize", "--model", store["source"], "--recipe", RECIPE)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    versions = _versions(store)
    assert [c.TAG_REGISTERING in (v.tags or {}) for v in versions] == [False], "exactly one, complete"
    (mv,) = versions
    assert mv.tags[c.TAG_VERDICT] == "pass" and mv.tags[c.TAG_SOURCE] == store["source"]
    assert _aliases(store) == {c.ALIAS_CANDIDATE: str(mv.version)}
    assert _verified(store, f"{QNAME}@candidate")


def test_a_promotion_killed_after_the_alias_moved_is_recorded_on_rerun(store: dict[str, Any]) -> None:
    cl = _client(store)
    version = _aliases(store)[c.ALIAS_CANDIDATE]
    cl.set_model_version_tag(QNAME, version, c.TAG_APPROVAL, "approved")  # the embedded store: no identity
    killed = _cli(store, "promote", SOURCE, fault="promote")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _aliases(store)[c.ALIAS_CHAMPION] == version  # moved, but its ledger entry never written
    assert _cli(store, "verify", "--ledger", SOURCE).returncode != 0  # the ledger disagrees: noticed
    again = _cli(store, "promote", SOURCE)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    ledger = _cli(store, "verify", "--ledger", SOURCE)
    assert ledger.returncode == 0, ledger.stdout[-2000:] + ledger.stderr[-2000:]
    history = _cli(store, "history", SOURCE)
    assert history.returncode == 0 and "interrupted promotion" in history.stdout, history.stdout[-2000:]
