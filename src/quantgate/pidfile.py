"""Processes started in the background and recognised later by their pid file: ``quantgate stack``
keeps one per server, and stops exactly those.

A pid file (JSON) names the pid (also its process group: the process is started in a new session),
the process's start time, its command line, log and health URL. The start time is what makes
``stop_record`` safe: a pid the system has since given to another program is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from quantgate.errors import QuantgateError

STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class PidRecord:
    """A started process: its pid (= its process group), start time (to recognise it later), the
    command line, its log, and the URL its health is read from."""

    name: str
    pid: int
    started: str
    cmd: list[str]
    log: str
    health: str
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def pid_path(d: Path, name: str) -> Path:
    return d / f"{name}.pid"


def write_pid(d: Path, rec: PidRecord) -> Path:
    path = pid_path(d, rec.name)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(json.dumps(asdict(rec)))
    tmp.replace(path)
    return path


def read_pid(d: Path, name: str) -> PidRecord | None:
    path = pid_path(d, name)
    try:
        data = json.loads(path.read_text())
        return PidRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise QuantgateError(f"{path} is not a quantgate pid file ({exc})", f"remove it if no {name} runs") from None


def start_marker(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc; ``ps`` elsewhere), or None if no
    such live process. A zombie counts as gone."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, starttime field 22
        return None if fields[0] in ("Z", "X") else fields[19]
    out = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True, check=False)
    line = out.stdout.strip()
    return None if not line or line.startswith("Z") else line.split(None, 1)[1]


def is_ours(rec: PidRecord) -> bool:
    """The recorded process still runs and is the one we started (not a reused pid)."""
    return start_marker(rec.pid) == rec.started


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a group of only zombies still answers: count the leader's state when it is the only trace
    return not (start_marker(pgid) is None and not _other_members(pgid))


def _other_members(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_record(d: Path, rec: PidRecord, timeout: float = STOP_TIMEOUT_S) -> str:
    """Stop the process group ``up`` started (SIGTERM, then SIGKILL after ``timeout``) and remove
    its pid file. A pid now running something else is left alone. Returns what was done."""
    if is_ours(rec) or (start_marker(rec.pid) is None and _group_alive(rec.pid)):
        # our leader, or our leader gone with its children left (its pgid cannot be reused meanwhile)
        _signal_group(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(rec.pid):
            time.sleep(0.2)
        how = "stopped"
        if _group_alive(rec.pid):
            _signal_group(rec.pid, signal.SIGKILL)
            how = f"killed (still running {timeout:.0f} s after SIGTERM)"
        done = f"{rec.name} (pid {rec.pid}) {how}"
    elif start_marker(rec.pid) is not None:
        done = f"{rec.name}: pid {rec.pid} now belongs to another process; left alone"
    else:
        done = f"{rec.name} (pid {rec.pid}) was not running"
    pid_path(d, rec.name).unlink(missing_ok=True)
    return done


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
