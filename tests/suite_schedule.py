"""How the suite is spread over xdist workers: the shared groups (files that must run on one
worker) and the slowest-first order. Read by tests/conftest.py's scheduler hooks; a plain module
(not conftest) so a unit test can import it without picking up another directory's conftest."""

from __future__ import annotations

# --- running the suite on two workers (pytest-xdist; scripts/run-tests.sh) ---
#
# Every test goes to a worker with its whole file (module fixtures are built once). Files that
# share an expensive session fixture *and* build on one another's state form one group, so they
# run on one worker, in collection order: the demo run (``demo_home``, ~200 s) is shared by the
# demo loop and the UI approval that follows it, and the ``quantgate_server`` of the server-app
# tests is one server whose state those tests build on. Other session fixtures (the governed
# adult-income store, the Prefect harness) are cheap enough to build once per worker.
#
# The grouping is a scheduler of our own (:func:`pytest_xdist_make_scheduler`), not xdist's
# ``xdist_group`` marker: xdist 3.8 applies that marker by rewriting ``item._nodeid``, which
# pytest 9.2's node ids (``Node._id``) no longer read, so with pytest 9.2 ``--dist loadgroup``
# silently schedules test by test.
SHARED_GROUPS = {
    "demo-and-server": (
        "e2e/test_demo_loop.py",
        "e2e/test_ui_approval.py",
        "e2e/test_approval_moves_champion.py",
        "e2e/test_server_ui.py",
        "integration/test_server_app.py",
        "integration/test_server_integrity.py",
    ),
}
_GROUP_OF = {f: g for g, files in SHARED_GROUPS.items() for f in files}


def xdist_group_of(nodeid: str) -> str:
    """The worker group of a test (its node id, ``tests/<file>::<name>``): its file's shared group,
    else the file."""
    rel = nodeid.split("::", 1)[0].removeprefix("tests/")
    return _GROUP_OF.get(rel, rel)


#: groups by measured time, slowest first (`make test PYTEST_ARGS=--durations=0`, docs/testing.md;
#: worker-seconds of the 2026-12-08 fresh-clone run on a 2-core AVX2 host, summed per file)
SLOWEST_FIRST: tuple[str, ...] = (
    "demo-and-server",  # ~1,600 s: the demo run alone is a third of it
    "integration/test_sources.py",  # ~1,900 s
    "integration/test_kill_steps.py",
    "integration/test_lm_govern.py",
    "reliability/test_bad_input.py",
    "integration/test_emulated_isa.py",
    "integration/test_disk_full.py",
    "integration/test_quantize_flow.py",
    "e2e/test_closed_loop.py",
    "integration/test_server_mode.py",
    "integration/test_regression_flow.py",
    "e2e/test_promote_on_approval.py",
    "integration/test_wheel.py",
    "integration/test_monitor.py",
    "integration/test_validate_governance.py",
    "unit/test_recipes_backends.py",
    "integration/test_govern_dask.py",
    "integration/test_deployments.py",
    "integration/test_recipes_roundtrip.py",
    "integration/test_stack.py",
)
