"""Reliability sweep, serving (issue 26): bad requests to a running ``quantgate serve``.

The suite's adult-income candidate is made ``@champion`` (tests/champion.py: approved as a labelled
demo reviewer, promoted through the real ``promote``) and served by ``python -m quantgate.cli serve``
in its own process on a loopback port, logging to Parquet, as in tests/integration/test_serve.py.
Each case is one HTTP request. For each: a 4xx answer whose JSON ``message`` names the problem and
stays short, the server still answering ``/ping`` afterwards, and the store identical before and
after. 10,000 valid rows in one request are not bad input: they are answered (200, one prediction
per row) and logged. At the end the server is stopped and its inference log holds exactly the
answered request (10,000 rows) and nothing of the refused ones; nothing was lost.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_sweep import Row, state_diff, state_summary, store_state

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
#: a refusal's message longer than this is not "a message" (a client, a log, a proxy has to hold it)
MAX_MESSAGE = 64 * 1024

Body = tuple[bytes, str]  # content, content type


@dataclass(frozen=True)
class Request:
    id: str
    input: str
    body: Callable[[Any], Body]
    needle: str
    status: int = 400
    bug: str | None = None


def _json(obj: Any) -> Body:
    return json.dumps(obj).encode(), "application/json"


def _records(rows: Any) -> list[dict[str, Any]]:
    return json.loads(rows.to_json(orient="records"))


def _split(rows: Any) -> dict[str, Any]:
    return {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}


def _one_bad_age(rows: Any, at: int = 0) -> list[dict[str, Any]]:
    records = _records(rows)
    records[at]["age"] = "forty"
    return records


def _huge_value(_: Any) -> Body:
    return b'{"dataframe_records": [{"age": "' + b"x" * (100 * MiB) + b'"}]}', "application/json"


def _huge_malformed(_: Any) -> Body:
    return b'{"dataframe_split": ' + b" " * (100 * MiB) + b"x", "application/json"


REQUESTS = [
    Request(
        "serve-malformed-json",
        'a body that is not JSON (`{"dataframe_split": {`)',
        lambda rows: (b'{"dataframe_split": {', "application/json"),
        "JSON",
    ),
    Request(
        "serve-not-an-object",
        "a JSON list instead of an object",
        lambda rows: _json([1, 2, 3]),
        "must be a JSON dictionary",
    ),
    Request("serve-empty-body", "an empty body", lambda rows: (b"", "application/json"), "Invalid input"),
    Request(
        "serve-unknown-format",
        'an object with none of MLflow\'s input keys (`{"rows": [...]}`)',
        lambda rows: _json({"rows": _records(rows.head(2))}),
        "dataframe_split",
    ),
    Request(
        "serve-wrong-columns",
        "columns the model does not have (`agee`, `colour`)",
        lambda rows: _json({"dataframe_records": [{"agee": 39, "colour": "blue"}]}),
        "age",
    ),
    Request(
        "serve-missing-columns",
        "one row with only `age`",
        lambda rows: _json({"dataframe_records": [{"age": 39}]}),
        "missing inputs",
    ),
    Request(
        "serve-wrong-type",
        "`age` is a word in one row",
        lambda rows: _json({"dataframe_records": _one_bad_age(rows.head(3))}),
        "age",
    ),
    Request(
        "serve-nan-in-integer-column",
        "`age` is NaN",
        lambda rows: (
            json.dumps({"dataframe_records": [{**_records(rows.head(1))[0], "age": float("nan")}]}).encode(),
            "application/json",
        ),
        "age",
    ),
    Request(
        "serve-wrong-content-type",
        "CSV text sent as text/plain",
        lambda rows: (b"age\n39\n", "text/plain"),
        "supports the following content types",
        status=415,
    ),
    Request(
        "serve-100mb-value", "a 100 MB body: valid JSON whose one `age` value is 100 MB of letters", _huge_value, "age"
    ),
    Request(
        "serve-100mb-malformed",
        "a 100 MB body that is not JSON (spaces, then `x`)",
        _huge_malformed,
        "JSON",
    ),
    Request(
        "serve-10k-rows-one-bad",
        "10,000 rows in one request, row 5,000 has `age: forty`",
        lambda rows: _json({"dataframe_records": _one_bad_age(rows, at=5000)}),
        "age",
    ),
]


def _param(r: Request) -> Any:
    return pytest.param(r, id=r.id, marks=[pytest.mark.xfail(strict=True, reason=r.bug)] if r.bug else [])


class Served:
    """``python -m quantgate.cli serve NAME`` in its own process group, logging to ``log_dir``."""

    def __init__(self, home: Path, model: str, log_dir: Path, workdir: Path) -> None:
        import httpx
        from helpers import ROOT, free_port, start_logged, wait_http

        self.port = free_port()
        self.log_dir = log_dir
        self.out = workdir / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTGATE_", "MLFLOW_TRACKING"))}
        env |= {"QUANTGATE_HOME": str(home), "QUANTGATE_PROJECT_DIR": str(ROOT), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "quantgate.cli", "serve", model, "--port", str(self.port)]
        self.proc = start_logged([*cmd, "--inference-log", str(log_dir)], env, self.out)
        wait_http(f"http://127.0.0.1:{self.port}/ping", self.proc, self.out)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        self.answered: dict[str, int] = {}  # request id -> rows, for every 200
        self.stopped: str | None = None

    def alive(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            return False
        try:
            return self.http.get("/ping").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> str:
        from helpers import stop_group

        if self.stopped is None:
            self.http.close()
            stop_group(self.proc)
            self.stopped = self.out.read_text()
        return self.stopped


@pytest.fixture(scope="module")
def rows(governed: dict[str, Any]) -> Any:
    """10,000 evaluation rows (features only), drawn with replacement from the demo's evaluation data."""
    import pandas as pd

    frame = pd.read_parquet(governed["settings"].data_dir / "adult-income" / "evaluation.parquet")
    return frame.drop(columns=["income"]).sample(10_000, replace=True, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def served(governed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from champion import champion

    s = governed["settings"]
    work = tmp_path_factory.mktemp("reliability-serve")
    with champion(s, governed["result"]["registered"]) as (name, _):
        server = Served(s.home_abs, name.removesuffix("-quantized"), work / "inference", work)
        try:
            yield server
        finally:
            server.stop()


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message", ""))
    except ValueError:
        return response.text


@pytest.mark.parametrize("req", [_param(r) for r in REQUESTS])
def test_bad_request(req: Request, served: Served, rows: Any, governed: dict[str, Any], request: Any) -> None:
    s = governed["settings"]
    content, ctype = req.body(rows)
    before = store_state(s)
    started = time.monotonic()
    response = served.http.post("/invocations", content=content, headers={"content-type": ctype})
    seconds = time.monotonic() - started
    message = _message(response)
    up = served.alive()
    after = store_state(s)
    diff = state_diff(before, after)
    size = f"{len(content) / MiB:.0f} MB" if len(content) >= MiB else f"{len(content)} bytes"
    request.node.reliability_row = Row(
        case=req.id,
        group="serving",
        input=req.input,
        command=f"POST /invocations ({ctype}, {size})",
        sees=_flat(message),
        exit=response.status_code,
        expected=str(req.status),
        checked=[
            f"store identical ({state_summary(after)})" if not diff else f"store CHANGED: {'; '.join(diff)}",
            "server still answers /ping" if up else "server DOWN",
            f"message {len(message):,} characters",
        ],
        seconds=seconds,
    ).to_json()

    assert response.status_code == req.status, (response.status_code, message[:2000])
    assert req.needle in message, message[:2000]
    assert len(message) <= MAX_MESSAGE, f"the message is {len(message):,} characters"
    assert up, served.out.read_text()[-3000:]
    assert not diff, "\n".join(diff)


def test_10k_rows_in_one_request_are_answered(
    served: Served, rows: Any, governed: dict[str, Any], request: Any
) -> None:
    """Not bad input: the size edge. One request of 10,000 valid rows gets 10,000 predictions."""
    s = governed["settings"]
    rid = f"reliability-{uuid.uuid4().hex}"
    content = json.dumps(_split(rows)).encode()
    before = store_state(s)
    started = time.monotonic()
    response = served.http.post(
        "/invocations", content=content, headers={"content-type": "application/json", "x-request-id": rid}
    )
    seconds = time.monotonic() - started
    up = served.alive()
    after = store_state(s)
    diff = state_diff(before, after)
    predictions = response.json().get("predictions", []) if response.status_code == 200 else []
    if response.status_code == 200:
        served.answered[rid] = len(rows)
    request.node.reliability_row = Row(
        case="serve-10k-rows",
        group="serving",
        input="10,000 valid rows in one request (not bad input: the size edge; answered, not refused)",
        command=f"POST /invocations (application/json, {len(content) / MiB:.1f} MB)",
        sees=f"{len(predictions):,} predictions in {seconds:.1f} s" if predictions else _flat(_message(response)),
        exit=response.status_code,
        expected="200",
        checked=[
            f"store identical ({state_summary(after)})" if not diff else f"store CHANGED: {'; '.join(diff)}",
            "server still answers /ping" if up else "server DOWN",
            "the 10,000 rows are in the inference log (checked after the server stops)",
        ],
        seconds=seconds,
    ).to_json()
    assert response.status_code == 200, _message(response)[:2000]
    assert len(predictions) == len(rows)
    assert up and not diff


def test_the_log_holds_the_answered_request_and_nothing_refused(served: Served, governed: dict[str, Any]) -> None:
    from quantgate.monitor.inference_log import model_log_dir, read_inferences

    out = served.stop()
    name = governed["result"]["registered"].split("/")[0]
    logged = read_inferences(model_log_dir(name, served.log_dir))
    assert set(logged["request_id"]) == set(served.answered), "only the answered request is logged"
    assert len(logged) == sum(served.answered.values())
    n = len(served.answered)
    assert f"inference log: {n} request(s) logged: {n} written" in out and ", 0 lost" in out, out[-2000:]


def _flat(message: str, limit: int = 240) -> str:
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
