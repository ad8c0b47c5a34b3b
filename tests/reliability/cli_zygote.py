"""A fork server for the real CLI: each request is ``quantgate.cli.main()`` in a fresh child process.

Started by :class:`reliability_sweep.ForkedCli` as ``python cli_zygote.py``. It imports the heavy
libraries once (mlflow, pandas, torch, Great Expectations, Evidently, quantgate's modules) and
starts no thread and opens no store. For each request (one JSON line on stdin: ``argv``, ``env``,
``cwd``, ``out``, ``err``, optional ``address_space_extra`` in bytes) it forks; the child takes
the request's environment, working directory, argv and stdout/stderr files (its own file
descriptors 1 and 2, so whatever writes there, Python's traceback printer included, lands in the
files), runs the CLI's ``main()`` exactly as ``python -m quantgate.cli`` does, runs the
``atexit`` handlers and exits with the CLI's exit code (1 plus a printed traceback for an
exception that escapes, as the interpreter does). The zygote answers ``{"pid": ...}`` when the
child starts and ``{"pid": ..., "code": ...}`` when it has ended.

Prefect is deliberately not imported here: it reads its settings (``PREFECT_API_URL``) when it is
imported, so the child imports it under the request's own environment.

Why: on a shared 2-core host one ``python -m quantgate.cli`` costs 4-6 s of imports before it
can refuse anything; the sweep runs dozens of them. ``test_bad_input.py`` checks that a forked run
and a real ``python -m quantgate.cli`` subprocess give the same exit code and the same message.
"""

from __future__ import annotations

import json
import os
import sys

#: imported once, before any fork (Prefect is not among them: see the module docstring)
WARM = (
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "pandas",
    "pyarrow.parquet",
    "sklearn",
    "torch",
    "great_expectations",
    "quantgate.cli",
    "quantgate.cards.trust",
    "quantgate.monitor.job",
    "quantgate.pipeline",
    "quantgate.policy",
    "quantgate.quantize.recipes",
    "quantgate.serve.app",
    "quantgate.validate",
)


def _warm() -> None:
    import importlib

    for name in WARM:
        importlib.import_module(name)
    try:
        importlib.import_module("evidently")
    except Exception:  # optional warm-up only: the child imports it itself if this failed
        pass
    if "prefect" in sys.modules:
        raise RuntimeError("prefect was imported by the warm-up: it would freeze the zygote's PREFECT_API_URL")


def _child(req: dict) -> None:
    """In the forked child: become the CLI process of ``req`` and never return."""
    import atexit
    import traceback

    code = 1
    try:
        os.setpgid(0, 0)  # its own process group: a timeout kills it and whatever it started
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (null, out, err):
            os.close(fd)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        extra = req.get("address_space_extra")
        if extra:
            import resource

            with open("/proc/self/status") as f:
                size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
            cap = size_kb * 1024 + int(extra)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        sys.argv = ["quantgate", *req["argv"]]
        from quantgate.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    control = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # nothing the warm-up or a library prints may corrupt the control channel
    os.close(null)
    _warm()
    control.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(req)
        control.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        control.write(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    main()
