"""What every case of the bad-input sweep shares (importable as ``reliability_sweep``).

- :class:`ForkedCli` runs the real CLI in a child process per case (see ``cli_zygote.py``).
- :func:`store_state` is the whole MLflow store as data: quantgate's ``registry_snapshot`` plus the
  registered models' descriptions, tags and aliases, every version's description and status, every
  experiment and every run in it (status, times, tags, params, metrics), and a manifest of the
  artifact files. Two states compare equal only when nothing was written.
- :func:`record` appends the case's row to ``$QUANTGATE_RELIABILITY_OUT`` (JSON lines);
  ``scripts/reliability_report.py`` turns those rows into ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT_ENV = "QUANTGATE_RELIABILITY_OUT"
TRACEBACK = "Traceback (most recent call last)"
#: the line the CLI prints for an exception it did not expect (a bug, not a user error)
UNEXPECTED = "(run with --debug for the traceback)"
#: a Prefect log line ("16:02:11.123 | INFO    | Flow run ..."): commands that run a flow print these
PREFECT_LOG = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| [A-Z]+ +\| ")
#: where a flow must not be able to go: commands that should refuse before any flow starts get it
DEAD_PREFECT = "http://127.0.0.1:9/api"


# --------------------------------------------------------------------------- running the CLI


@dataclass
class CliResult:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def command(self) -> str:
        return "quantgate " + " ".join(_shell(a) for a in self.args)


def _shell(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


class ForkedCli:
    """``python cli_zygote.py`` kept running; :meth:`run` is one CLI invocation in a forked child."""

    def __init__(self, base_env: Mapping[str, str], workdir: Path) -> None:
        self.base_env = dict(base_env)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = (workdir / "zygote.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "cli_zygote.py")],
            cwd=ROOT,
            env=self.base_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._n = 0
        self._ready = False  # its imports run while the session's fixtures train and govern

    def _wait_ready(self) -> None:
        if self._ready:
            return
        reply = self._read(timeout=600)
        if not reply.get("ready"):
            raise RuntimeError(
                f"the CLI fork server did not start: {(self.workdir / 'zygote.log').read_text()[-2000:]}"
            )
        self._ready = True

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return {}
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the CLI fork server exited: {(self.workdir / 'zygote.log').read_text()[-2000:]}")
        return json.loads(line)

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        address_space_extra: int | None = None,
    ) -> CliResult:
        assert self.proc.stdin is not None
        self._wait_ready()
        self._n += 1
        out, err = self.workdir / f"{self._n}.out", self.workdir / f"{self._n}.err"
        req = {
            "argv": list(args),
            "env": {**self.base_env, **(env or {})},
            "cwd": str(ROOT),
            "out": str(out),
            "err": str(err),
            "address_space_extra": address_space_extra,
        }
        started = time.monotonic()
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = self._read(timeout=60)["pid"]
        done = self._read(timeout=timeout)
        if not done:  # the case hung: end the child's process group (it is ours), then collect it
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            done = self._read(timeout=30)
            done["code"] = f"killed after {timeout:.0f} s"
        return CliResult(
            list(args),
            done["code"],
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
            time.monotonic() - started,
        )

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def real_cli(*args: str, env: Mapping[str, str], timeout: float = 300) -> CliResult:
    """The same invocation as a plain ``python -m quantgate.cli`` subprocess (the reference)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "quantgate.cli", *args],
        cwd=ROOT,
        env=dict(env),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(list(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


# --------------------------------------------------------------------------- what the user sees


def message_lines(stderr: str) -> list[str]:
    """The error lines the CLI printed (``error: ...``, or ``validate``'s ``validation failed: ...``)."""
    return [ln for ln in stderr.splitlines() if ln.startswith(("error:", "validation failed:"))]


def other_lines(stderr: str) -> list[str]:
    """stderr lines that are neither the message nor a Prefect log line."""
    return [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("error:", "validation failed:")) and not PREFECT_LOG.match(ln)
    ]


def first_line(text: str, limit: int = 240) -> str:
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --------------------------------------------------------------------------- the store


def store_state(settings: Any) -> dict[str, Any]:
    """Everything a refused input must leave as it was (see the module docstring)."""
    from mlflow.entities import ViewType

    from quantgate.registry.mlflow_registry import client, registry_snapshot

    cl = client(settings)
    models = []
    for rm in sorted(cl.search_registered_models(max_results=1000), key=lambda m: m.name):
        versions = []
        for mv in sorted(cl.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version)):
            versions.append(
                {
                    "version": int(mv.version),
                    "description": mv.description,
                    "status": mv.status,
                    "tags": dict(mv.tags or {}),
                    "aliases": sorted(mv.aliases or []),
                    "run_id": mv.run_id,
                    "source": mv.source,
                    "last_updated": mv.last_updated_timestamp,
                }
            )
        models.append(
            {
                "name": rm.name,
                "description": rm.description,
                "tags": dict(rm.tags or {}),
                "aliases": {k: str(v) for k, v in (rm.aliases or {}).items()},
                "last_updated": rm.last_updated_timestamp,
                "versions": versions,
            }
        )
    experiments, runs = [], []
    for exp in sorted(cl.search_experiments(view_type=ViewType.ALL, max_results=1000), key=lambda e: e.experiment_id):
        experiments.append(
            {
                "id": exp.experiment_id,
                "name": exp.name,
                "stage": exp.lifecycle_stage,
                "tags": dict(exp.tags or {}),
                "artifact_location": exp.artifact_location,
            }
        )
        token = None
        while True:
            page = cl.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
            for r in page:
                runs.append(
                    {
                        "id": r.info.run_id,
                        "experiment": exp.experiment_id,
                        "status": r.info.status,
                        "stage": r.info.lifecycle_stage,
                        "start": r.info.start_time,
                        "end": r.info.end_time,
                        "tags": dict(r.data.tags),
                        "params": dict(r.data.params),
                        "metrics": dict(r.data.metrics),
                    }
                )
            token = page.token
            if not token:
                break
    runs.sort(key=lambda r: r["id"])
    return {
        "snapshot": registry_snapshot(settings),
        "models": models,
        "experiments": experiments,
        "runs": runs,
        "artifacts": artifact_manifest(settings.artifacts_dir),
    }


def artifact_manifest(root: Path, hash_below: int = 8 * 1024 * 1024) -> dict[str, list[Any]]:
    """Every artifact file under ``root``: [size, sha256] for files under ``hash_below`` bytes (all
    but the model weights and data), else [size, mtime in ns]. Content, not time, for the small
    files: MLflow rewrites a stored model's ``registered_model_meta`` (same bytes) when it loads it."""
    import hashlib

    out: dict[str, list[Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            mark = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < hash_below else st.st_mtime_ns
            out[str(p.relative_to(root))] = [st.st_size, mark]
    return out


def state_summary(state: Mapping[str, Any]) -> str:
    versions = sum(len(m["versions"]) for m in state["models"])
    return (
        f"{len(state['models'])} models, {versions} versions, {len(state['runs'])} runs, "
        f"{len(state['artifacts'])} artifact files"
    )


def state_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Readable differences (empty when the two states are identical)."""
    if before == after:
        return []
    out = []
    for key in before:
        if before[key] != after.get(key):
            if key == "runs":
                ids_b = {r["id"]: r for r in before["runs"]}
                ids_a = {r["id"]: r for r in after["runs"]}
                new = sorted(set(ids_a) - set(ids_b))
                gone = sorted(set(ids_b) - set(ids_a))
                changed = sorted(i for i in set(ids_a) & set(ids_b) if ids_a[i] != ids_b[i])
                out.append(f"runs: {len(new)} new {new[:3]}, {len(gone)} gone, {len(changed)} changed {changed[:3]}")
            elif key == "artifacts":
                a, b = after["artifacts"], before["artifacts"]
                out.append(
                    f"artifacts: new {sorted(set(a) - set(b))[:3]}, gone {sorted(set(b) - set(a))[:3]}, "
                    f"changed {sorted(k for k in set(a) & set(b) if a[k] != b[k])[:3]}"
                )
            else:
                out.append(f"{key} changed")
    return out


def without_ledger(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state minus what a promotion ledger entry writes (its run, the head tag, the description's
    history table, the model's update time): for refusals, which the ledger records by design."""
    from quantgate.promotion.ledger import DESCRIPTION_MARKER, TAG_PREFIX

    ledger_exps = {e["id"] for e in state["experiments"] if e["name"] == "quantgate-ledger"}
    models = []
    for m in state["models"]:
        m = dict(m)
        m["tags"] = {k: v for k, v in m["tags"].items() if not k.startswith(TAG_PREFIX)}
        m["description"] = (m["description"] or "").split(DESCRIPTION_MARKER)[0]
        m["last_updated"] = None
        models.append(m)
    return {
        **state,
        "models": models,
        "runs": [r for r in state["runs"] if r["experiment"] not in ledger_exps],
        "experiments": [e for e in state["experiments"] if e["id"] not in ledger_exps],
        "artifacts": {k: v for k, v in state["artifacts"].items() if not k.startswith("quantgate-ledger/")},
    }


def new_ledger_entries(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    ledger_exps = {e["id"] for e in after["experiments"] if e["name"] == "quantgate-ledger"}
    seen = {r["id"] for r in before["runs"]}
    return [r for r in after["runs"] if r["experiment"] in ledger_exps and r["id"] not in seen]


# --------------------------------------------------------------------------- inputs


def project_with(tmp: Path, files: Mapping[str, str | bytes]) -> Path:
    """A copy of the project's policies/, registry/ and monitoring/ under ``tmp`` with some files
    replaced (text or raw bytes); point QUANTGATE_PROJECT_DIR at it."""
    project = tmp / "project"
    for d in ("policies", "registry", "monitoring"):
        shutil.copytree(ROOT / d, project / d)
    for rel, content in files.items():
        f = project / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            f.write_bytes(content)
        else:
            f.write_text(content)
    return project


@contextmanager
def file_changed(path: Path, change: Callable[[bytes], bytes | None]) -> Iterator[Path]:
    """``path`` changed (``None``: removed) for the duration, then restored byte for byte with its
    original times."""
    original = path.read_bytes()
    st = path.stat()
    new = change(original)
    if new is None:
        path.unlink()
    else:
        path.write_bytes(new)
    try:
        yield path
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# --------------------------------------------------------------------------- the report rows


@dataclass
class Row:
    """One line of docs/reliability.md."""

    case: str
    group: str
    input: str
    command: str
    sees: str = ""
    exit: Any = None
    expected: str = ""
    checked: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "group": self.group,
            "input": self.input,
            "command": self.command,
            "sees": self.sees,
            "exit": self.exit,
            "expected": self.expected,
            "checked": self.checked,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
        }


def record(row: dict[str, Any]) -> None:
    """Append one row to ``$QUANTGATE_RELIABILITY_OUT`` (nothing when it is unset)."""
    out = os.environ.get(OUT_ENV)
    if not out:
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
