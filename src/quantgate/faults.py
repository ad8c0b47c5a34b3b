"""Fault injection for the reliability sweep: kill this process at a named step.

``QUANTGATE_FAULT_INJECT=<point>`` makes :func:`fault_point` send SIGKILL to its own process when
that point is reached: no ``finally``, no ``except``, no cleanup runs, as when a machine dies or an
operator runs ``kill -9``. The suite (tests/reliability/) uses it to prove that a rerun after a
kill at any step leaves no duplicate version, no orphan alias and nothing verification accepts.
Unset (always, outside tests), it costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV_FAULT = "QUANTGATE_FAULT_INJECT"
#: the steps a governance run or a promotion can be killed at, in order
POINTS = (
    "discover",
    "validate",
    "quantize",
    "evaluate",
    "card",
    "sign",
    "register",
    "alias",
    "promote",
)


def fault_point(name: str) -> None:
    """SIGKILL this process if ``QUANTGATE_FAULT_INJECT`` names ``name``."""
    if os.environ.get(ENV_FAULT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
