"""The suite's worker groups (tests/suite_schedule.py): every file a shared group or the slowest-first
list names exists, so a renamed test file cannot silently fall out of its group (and run its
shared session fixture, the demo run, on both workers)."""

from __future__ import annotations

from pathlib import Path

from suite_schedule import SHARED_GROUPS, SLOWEST_FIRST, xdist_group_of

TESTS = Path(__file__).resolve().parents[1]


def test_every_grouped_file_exists() -> None:
    for files in SHARED_GROUPS.values():
        for rel in files:
            assert (TESTS / rel).is_file(), rel


def test_every_slowest_first_entry_is_a_group_or_a_file() -> None:
    for entry in SLOWEST_FIRST:
        assert entry in SHARED_GROUPS or (TESTS / entry).is_file(), entry


def test_a_node_id_maps_to_its_file_or_its_shared_group() -> None:
    assert xdist_group_of("tests/e2e/test_demo_loop.py::test_x") == "demo-and-server"
    assert xdist_group_of("tests/integration/test_server_app.py::test_y[a::b]") == "demo-and-server"
    assert xdist_group_of("tests/unit/test_outputs.py::test_z") == "unit/test_outputs.py"
