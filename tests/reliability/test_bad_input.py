"""Reliability sweep, bad input (issue 26): every kind of bad input a user can hand the CLI.

Each case is one real CLI invocation against the governed session store (see conftest.py). For
every case: no Python traceback anywhere in the output, exactly one message line on stderr (for
commands that run a Prefect flow, Prefect's own log lines may precede it), the expected exit code
(2 for a user error; 3 where ``quantgate validate`` reports data that failed its checks) and a
message that names the problem, and the whole store (registered models, versions, tags, aliases,
descriptions, every experiment's runs, the artifact files) identical before and after. A refused
promotion or rollback is recorded in the promotion ledger by design: there, the store must be
identical except for exactly one ledger entry whose action is ``refusal``.

A case that shows a bug in src/ is a strict xfail with the reason; it turns into a failure (XPASS)
as soon as the bug is fixed. Rows go to ``$QUANTGATE_RELIABILITY_OUT`` for docs/reliability.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from reliability_sweep import (
    TRACEBACK,
    UNEXPECTED,
    ForkedCli,
    Row,
    file_changed,
    first_line,
    message_lines,
    new_ledger_entries,
    other_lines,
    project_with,
    real_cli,
    state_diff,
    state_summary,
    store_state,
    without_ledger,
)

pytestmark = pytest.mark.integration

GiB = 1024**3
SCRATCH = "reliability-scratch"  # a registered source with no onboarding, whose version 2 was deleted
TAGGED = "reliability-tagged"  # a source onboarded by tags, one of which names a file outside the project

Content = str | bytes | Callable[[Any], bytes]


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    input: str
    args: tuple[str, ...]
    needle: str
    exit: int = 2
    file: tuple[str, Content] | None = None  # written into the inputs folder; {file} in args
    project: dict[str, Content] = field(default_factory=dict)  # files replaced in a project copy
    flow: bool = False  # the command runs a Prefect flow: it gets the harness's API
    prepare: str | None = None  # a registry or artifact state set up around the run (PREPARE)
    ledger_refusal: bool = False  # a refused move: the ledger records it, nothing else may change
    bug: str | None = None  # a strict xfail: what is wrong in src/
    forbid: str | None = None  # text the message must not contain (a hint that cannot work)
    timeout: float = 90
    address_space_extra: int | None = None


# --------------------------------------------------------------------------- inputs

RULE = "name: sweep\nrules:\n  - id: acc\n    kind: {kind}\n    metric: {metric}\n    {key}: {value}\n"


def rule(kind: str = "max_drop", metric: str = "accuracy", key: str = "threshold", value: str = "0.01") -> str:
    return RULE.format(kind=kind, metric=metric, key=key, value=value)


def _csv(df: Any) -> bytes:
    return df.to_csv(index=False).encode()


def _header_only(df: Any) -> bytes:
    return (",".join(df.columns) + "\n").encode()


def _semicolons(df: Any) -> bytes:
    return df.to_csv(index=False, sep=";").encode()


def _mixed(df: Any) -> bytes:
    d = df.astype({"age": object})
    d.loc[d.index[[5, 9]], "age"] = ["forty", "unknown"]
    return _csv(d)


def _nan_labels(df: Any) -> bytes:
    d = df.astype({"income": "float64"})
    d.loc[d.index[[3, 7, 11]], "income"] = float("nan")
    return _csv(d)


def _nan_inf_labels(df: Any) -> bytes:
    d = df.astype({"income": "float64"})
    d.loc[d.index[[3, 7, 11, 4, 8]], "income"] = [float("nan")] * 3 + [float("inf"), float("-inf")]
    return _csv(d)


def _no_label(df: Any) -> bytes:
    return _csv(df.drop(columns=["income"]))


def _latin1(df: Any) -> bytes:
    text = df.to_csv(index=False)
    i = text.index("Private")
    return text[:i].encode() + "Privé".encode("latin-1") + text[i + len("Private") :].encode()


def _short_line(df: Any) -> bytes:
    lines = df.to_csv(index=False).splitlines()
    lines[10] = lines[10].rsplit(",", 1)[0]  # line 11 loses its last field
    return ("\n".join(lines) + "\n").encode()


def _recipe_json(**change: Any) -> str:
    body = {"_type": "dynamic-int8", "_version": 1, "_data": {"exclude": [], "per_channel": True, "target": "auto"}}
    for k, v in change.items():
        if k == "data":
            body["_data"] = {**body["_data"], **v}
        else:
            body[k] = v
    return json.dumps(body)


ONBOARDING = "registry/models/adult-income.yaml"
MONITORING = "monitoring/adult-income.yaml"


def _onboarding(old: str, new: str) -> Callable[[Any], bytes]:
    def edit(_: Any) -> bytes:
        from reliability_sweep import ROOT

        text = (ROOT / ONBOARDING).read_text()
        assert old in text, f"{old!r} not in {ONBOARDING}"
        return text.replace(old, new).encode()

    return edit


def _onboarding_bytes(_: Any) -> bytes:
    from reliability_sweep import ROOT

    return "\ufeff".encode("utf-16-le") + (ROOT / ONBOARDING).read_text().encode("utf-16-le")


def _eval_data(name: str) -> Callable[[Any], bytes]:
    """An onboarding whose evaluation data is ``name`` in the project copy (a bad file written there)."""
    return _onboarding(
        "evaluation_data: ${QUANTGATE_HOME}/data/adult-income/evaluation.parquet",
        f"evaluation_data: {{PROJECT}}/{name}",
    )


QUANTIZE = ("quantize", "--model", "adult-income")
VALIDATE = ("validate", "--model", "adult-income", "--data")
MONITOR = ("monitor", "--model", "adult-income")

CASES: list[Case] = [
    # --- policies: `quantgate quantize --policy FILE` refuses before any flow starts
    Case(
        "policy-typo-key",
        "policy",
        "`treshold:` instead of `threshold:` in a rule",
        (*QUANTIZE, "--policy", "{file}"),
        "treshold: unknown key",
        file=("typo.yaml", rule(key="treshold")),
    ),
    Case(
        "policy-wrong-type",
        "policy",
        "a threshold that is a string (`threshold: one percent`)",
        (*QUANTIZE, "--policy", "{file}"),
        "rules.0.threshold",
        file=("wrong-type.yaml", rule(value="one percent")),
    ),
    Case(
        "policy-unknown-rule-kind",
        "policy",
        "`kind: max_dropp` (no such rule kind)",
        (*QUANTIZE, "--policy", "{file}"),
        "rules.0.kind",
        file=("kind.yaml", rule(kind="max_dropp")),
    ),
    Case(
        "policy-unknown-metric",
        "policy",
        "`metric: acuracy` (no such metric)",
        (*QUANTIZE, "--policy", "{file}"),
        "unknown metric 'acuracy'",
        file=("metric.yaml", rule(metric="acuracy")),
    ),
    Case(
        "policy-empty-file",
        "policy",
        "an empty policy file (0 bytes)",
        (*QUANTIZE, "--policy", "{file}"),
        "must be a YAML mapping",
        file=("empty.yaml", ""),
    ),
    Case(
        "policy-invalid-yaml",
        "policy",
        "a policy that is not YAML (`rules: [` never closed)",
        (*QUANTIZE, "--policy", "{file}"),
        "is not valid YAML",
        file=("broken.yaml", "name: sweep\nrules: [\n"),
    ),
    Case(
        "policy-no-rules",
        "policy",
        "`rules: []`",
        (*QUANTIZE, "--policy", "{file}"),
        "rules: List should have at least 1 item",
        file=("no-rules.yaml", "name: sweep\nrules: []\n"),
    ),
    Case(
        "policy-duplicate-rule-id",
        "policy",
        "two rules with the same id",
        (*QUANTIZE, "--policy", "{file}"),
        "duplicate rule id(s): acc",
        file=("dup.yaml", rule() + "  - id: acc\n    kind: max_drop\n    metric: accuracy\n    threshold: 0.02\n"),
    ),
    Case(
        "policy-missing-file",
        "policy",
        "`--policy` names a file that does not exist",
        (*QUANTIZE, "--policy", "{inputs}/no-such-policy.yaml"),
        "policy file not found",
    ),
    Case(
        "policy-nan-threshold",
        "policy",
        "`threshold: .nan` on a `min` rule of `speedup`",
        ("policy", "validate", "{file}"),
        "threshold",
        file=("nan.yaml", rule(kind="min", metric="speedup", value=".nan")),
    ),
    Case(
        "policy-not-utf8",
        "policy",
        "a policy file in UTF-16 (bytes that are not UTF-8)",
        (*QUANTIZE, "--policy", "{file}"),
        "UTF-8",
        file=("utf16.yaml", "\ufeffname: sweep\n".encode("utf-16-le")),
    ),
    Case(
        "policy-is-a-directory",
        "policy",
        "`--policy` names a directory",
        (*QUANTIZE, "--policy", "{inputs}"),
        "directory",
    ),
    # --- onboarding (registry/models/<name>.yaml in a copy of the project)
    Case(
        "onboarding-typo-key",
        "onboarding",
        "`lable:` instead of `label:`",
        QUANTIZE,
        "lable: unknown key",
        project={ONBOARDING: _onboarding("label: income", "lable: income")},
    ),
    Case(
        "onboarding-wrong-type",
        "onboarding",
        "`sensitive_attributes: 5` (a number, not a list)",
        QUANTIZE,
        "sensitive_attributes: Input should be a valid list",
        project={ONBOARDING: _onboarding("sensitive_attributes: [sex, race]", "sensitive_attributes: 5")},
    ),
    Case(
        "onboarding-unknown-task",
        "onboarding",
        "`task: regression`",
        QUANTIZE,
        "task: Input should be",
        project={ONBOARDING: _onboarding("task: tabular-classification", "task: regression")},
    ),
    Case(
        "onboarding-invalid-yaml",
        "onboarding",
        "an onboarding file that is not YAML",
        QUANTIZE,
        "is not valid YAML",
        project={ONBOARDING: "name: adult-income\nlabel: [income\n"},
    ),
    Case(
        "onboarding-empty-file",
        "onboarding",
        "an empty onboarding file",
        QUANTIZE,
        "label: Field required",
        project={ONBOARDING: ""},
    ),
    Case(
        "onboarding-name-mismatch",
        "onboarding",
        "`name: adult-incomes` in adult-income.yaml",
        QUANTIZE,
        "does not match the file name",
        project={ONBOARDING: _onboarding("name: adult-income", "name: adult-incomes")},
    ),
    Case(
        "onboarding-retrain-wrong-type",
        "onboarding",
        "`retrain.window_hours: soon`",
        QUANTIZE,
        "retrain.window_hours",
        project={ONBOARDING: _onboarding("window_hours: 168", "window_hours: soon")},
    ),
    Case(
        "onboarding-policy-missing",
        "onboarding",
        "`policy: policies/no-such.yaml`",
        QUANTIZE,
        "policy file not found",
        project={ONBOARDING: _onboarding("policy: policies/default.yaml", "policy: policies/no-such.yaml")},
    ),
    Case(
        "onboarding-not-utf8",
        "onboarding",
        "an onboarding file in UTF-16",
        QUANTIZE,
        "UTF-8",
        project={ONBOARDING: _onboarding_bytes},
    ),
    Case(
        "data-evaluation-nan-labels",
        "data",
        "evaluation data (named by the onboarding) with 3 rows whose label is empty",
        (*VALIDATE, "{calibration}"),
        "rows with no label in column 'income'",
        project={ONBOARDING: _eval_data("eval-nan.csv"), "eval-nan.csv": _nan_labels},
    ),
    Case(
        "data-missing-label",
        "data",
        "evaluation data (named by the onboarding) without the label column",
        (*VALIDATE, "{calibration}"),
        "has no label column 'income'",
        project={ONBOARDING: _eval_data("eval-nolabel.csv"), "eval-nolabel.csv": _no_label},
    ),
    Case(
        "onboarding-calibration-missing",
        "onboarding",
        "`calibration_data:` names a file that does not exist",
        (*VALIDATE, "{calibration}"),
        "calibration data for 'adult-income' not found",
        project={
            ONBOARDING: _onboarding(
                "${QUANTGATE_HOME}/data/adult-income/calibration.parquet",
                "${QUANTGATE_HOME}/data/adult-income/no-such.parquet",
            )
        },
    ),
    # --- monitoring specs (monitoring/<name>.yaml in a copy of the project): `quantgate monitor` runs a flow
    Case(
        "monitoring-typo-key",
        "monitoring",
        "`drift_shar:` instead of `drift_share:`",
        MONITOR,
        "drift_shar: unknown key",
        flow=True,
        project={MONITORING: "model: adult-income\nreference: ref.parquet\ndrift_shar: 0.3\n"},
    ),
    Case(
        "monitoring-wrong-type",
        "monitoring",
        "`drift_share: lots`",
        MONITOR,
        "drift_share: Input should be a valid number",
        flow=True,
        project={MONITORING: "model: adult-income\nreference: ref.parquet\ndrift_share: lots\n"},
    ),
    Case(
        "monitoring-empty-file",
        "monitoring",
        "an empty monitoring spec",
        MONITOR,
        "model: Field required",
        flow=True,
        project={MONITORING: ""},
    ),
    Case(
        "monitoring-bad-duration",
        "monitoring",
        "`retrain_cooldown: soon`",
        MONITOR,
        "not a duration: 'soon'",
        flow=True,
        project={MONITORING: "model: adult-income\nreference: ref.parquet\nretrain_cooldown: soon\n"},
    ),
    Case(
        "monitoring-invalid-yaml",
        "monitoring",
        "a monitoring spec that is not YAML (`reference: [x`)",
        MONITOR,
        "not valid YAML",
        flow=True,
        project={MONITORING: "model: adult-income\nreference: [x\n"},
    ),
    Case(
        "monitoring-missing-spec",
        "monitoring",
        "a model with no monitoring/<name>.yaml",
        ("monitor", "--model", "rt-sentiment"),
        "no monitoring spec for 'rt-sentiment'",
        flow=True,
    ),
    # --- data: `quantgate validate --data FILE` (exit 3: the data was read and failed its checks)
    Case(
        "data-empty-file",
        "data",
        "a calibration CSV of 0 bytes",
        (*VALIDATE, "{file}"),
        "is empty (0 bytes)",
        file=("empty.csv", b""),
    ),
    Case(
        "data-header-only",
        "data",
        "a CSV with the header line and no rows",
        (*VALIDATE, "{file}"),
        "row count (0 rows",
        exit=3,
        file=("header.csv", _header_only),
    ),
    Case(
        "data-wrong-delimiter",
        "data",
        "the calibration data with `;` as the delimiter",
        (*VALIDATE, "{file}"),
        "columns match (missing:",
        exit=3,
        file=("semicolons.csv", _semicolons),
    ),
    Case(
        "data-mixed-types",
        "data",
        "two values of `age` (a numeric column) are words",
        (*VALIDATE, "{file}"),
        "forty",
        exit=3,
        file=("mixed.csv", _mixed),
    ),
    Case(
        "data-nan-inf-labels",
        "data",
        "calibration labels: three empty (NaN), one `inf`, one `-inf`",
        (*VALIDATE, "{file}"),
        "income: no nulls",
        exit=3,
        file=("nan-inf-labels.csv", _nan_inf_labels),
    ),
    Case(
        "data-not-utf8",
        "data",
        "one category written in Latin-1 (`Privé`)",
        (*VALIDATE, "{file}"),
        "is not valid UTF-8",
        file=("latin1.csv", _latin1),
    ),
    Case(
        "data-short-line",
        "data",
        "line 11 has one field less than the header",
        (*VALIDATE, "{file}"),
        "line 11 has 14 fields, expected 15",
        file=("short.csv", _short_line),
    ),
    Case(
        "data-parquet-is-csv",
        "data",
        "CSV text in a file named .parquet",
        (*VALIDATE, "{file}"),
        "it looks like CSV text",
        file=("calib.parquet", _csv),
    ),
    Case(
        "data-unsupported-type",
        "data",
        "a `.xlsx` file",
        (*VALIDATE, "{file}"),
        "unsupported data file type '.xlsx'",
        file=("calib.xlsx", _csv),
    ),
    Case(
        "data-huge-2gb",
        "data",
        "a 2 GB CSV (a sparse file: the header, then 2 GB of NUL bytes), read under an address-space cap "
        "of 1 GiB over the CLI's own",
        (*VALIDATE, "{huge}"),
        "over the limit of 1024 MiB",
        address_space_extra=GiB,
        timeout=180,
    ),
    # --- models
    Case(
        "model-unknown",
        "model",
        "a model name that is not registered",
        ("quantize", "--model", "no-such-model"),
        "no registered model named 'no-such-model'",
    ),
    Case(
        "model-deleted-version",
        "model",
        f"version 2 of `{SCRATCH}`, which was deleted",
        ("quantize", "--model", f"{SCRATCH}/2"),
        f"model '{SCRATCH}' has no version 2",
    ),
    Case(
        "model-unknown-alias",
        "model",
        "`@staging` (no such alias)",
        ("quantize", "--model", "adult-income@staging"),
        "has no alias 'staging'",
    ),
    Case(
        "model-version-not-a-number",
        "model",
        "`adult-income/latest`",
        ("quantize", "--model", "adult-income/latest"),
        "is not a number",
    ),
    Case(
        "model-source-artifact-missing",
        "model",
        "the source model's `module.pt` was deleted",
        (*VALIDATE, "{calibration}"),
        "module.pt",
        prepare="source-module-missing",
    ),
    Case(
        "model-source-artifact-corrupted",
        "model",
        "the source model's `module.pt` cut to its first 1000 bytes",
        (*VALIDATE, "{calibration}"),
        "module.pt",
        prepare="source-module-truncated",
    ),
    Case(
        "model-candidate-artifact-missing",
        "model",
        "the quantized candidate's `module.pt` was deleted",
        ("serve", "{candidate}", "--port", "{port}"),
        "missing files",
        prepare="candidate-module-missing",
    ),
    Case(
        "model-candidate-artifact-corrupted",
        "model",
        "one byte of the candidate's `python_model.pkl` changed",
        ("serve", "{candidate}", "--port", "{port}"),
        "changed: python_model.pkl",
        prepare="candidate-pickle-changed",
    ),
    Case(
        "model-unknown-version",
        "model",
        "`adult-income-quantized/999`",
        ("serve", "adult-income-quantized/999", "--port", "{port}"),
        "has no version 999",
    ),
    # --- recipes: `quantgate quantize --recipe NAME|FILE`
    Case("recipe-unknown-name", "recipe", "`--recipe int9`", (*QUANTIZE, "--recipe", "int9"), "unknown recipe 'int9'"),
    Case(
        "recipe-file-missing",
        "recipe",
        "`--recipe` names a .json file that does not exist",
        (*QUANTIZE, "--recipe", "{inputs}/no-such-recipe.json"),
        "recipe file not found",
    ),
    Case(
        "recipe-type-not-allowed",
        "recipe",
        '`"_type": "rm-rf"`',
        (*QUANTIZE, "--recipe", "{file}"),
        "is not on the allow-list",
        file=("type.json", _recipe_json(_type="rm-rf")),
    ),
    Case(
        "recipe-unknown-field",
        "recipe",
        "an unknown field `bogus` in `_data`",
        (*QUANTIZE, "--recipe", "{file}"),
        "unknown field(s) bogus",
        file=("field.json", _recipe_json(data={"bogus": 1})),
    ),
    Case(
        "recipe-wrong-version",
        "recipe",
        '`"_version": 99`',
        (*QUANTIZE, "--recipe", "{file}"),
        "version 99 is not supported",
        file=("version.json", _recipe_json(_version=99)),
    ),
    Case(
        "recipe-invalid-json",
        "recipe",
        "a recipe file that is not JSON",
        (*QUANTIZE, "--recipe", "{file}"),
        "JSON",
        file=("broken.json", '{"_type": "dynamic-int8", '),
    ),
    Case(
        "recipe-not-an-object",
        "recipe",
        "a recipe file holding a JSON list",
        (*QUANTIZE, "--recipe", "{file}"),
        "recipe",
        file=("list.json", "[1, 2]"),
    ),
    Case(
        "recipe-field-wrong-type",
        "recipe",
        '`"exclude": {"nested": true}` (an object, not a list)',
        (*QUANTIZE, "--recipe", "{file}"),
        "exclude",
        file=("exclude.json", _recipe_json(data={"exclude": {"nested": True}})),
    ),
    # --- registry states
    Case(
        "state-promote-unapproved",
        "registry state",
        "promote while the candidate is pending approval",
        ("promote", "adult-income"),
        "is not approved",
        ledger_refusal=True,
        prepare="pending-candidate",
    ),
    Case(
        "state-promote-unknown-version",
        "registry state",
        "promote `--version 99`",
        ("promote", "adult-income", "--version", "99"),
        "has no version 99",
        ledger_refusal=True,
    ),
    Case(
        "state-promote-nothing-quantized",
        "registry state",
        f"promote `{SCRATCH}`, a source that has no quantized model",
        ("promote", SCRATCH),
        "has no quantized versions",
    ),
    Case(
        "state-rollback-without-champion",
        "registry state",
        "rollback while no version is @champion",
        ("rollback", "adult-income"),
        "has no @champion",
        ledger_refusal=True,
        prepare="no-champion",
    ),
    Case(
        "state-serve-without-champion",
        "registry state",
        "serve a model that has no @champion",
        ("serve", "adult-income", "--port", "{port}"),
        "no '@champion' version to serve",
        forbid="promote --model",
        prepare="no-champion",
    ),
    Case(
        "state-monitor-without-champion",
        "registry state",
        "monitor a model that has no @champion",
        MONITOR,
        "has no '@champion' version to monitor",
        forbid="promote --model",
        flow=True,
        prepare="no-champion",
    ),
    Case(
        "state-not-onboarded",
        "registry state",
        f"quantize `{SCRATCH}`: registered, no onboarding file, no tags",
        ("quantize", "--model", SCRATCH),
        f"model '{SCRATCH}' is not onboarded",
    ),
    Case(
        "state-tag-path-outside-project",
        "registry state",
        f"`{TAGGED}` has tag `quantgate.policy=/etc/passwd`",
        ("quantize", "--model", TAGGED),
        "it is an absolute path",
    ),
]


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


# --------------------------------------------------------------------------- states around a case


def _local_dir(settings: Any, name: str, version: str) -> Path:
    from quantgate.registry.mlflow_registry import client

    return Path(unquote(urlparse(client(settings).get_model_version_download_uri(name, version)).path))


@contextmanager
def _no_champion(ctx: dict[str, Any]) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    from quantgate.registry.mlflow_registry import client

    cl = client(ctx["settings"])
    name = ctx["candidate"].split("/")[0]
    try:
        previous: str | None = str(cl.get_model_version_by_alias(name, "champion").version)
        cl.delete_registered_model_alias(name, "champion")
    except MlflowException:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            cl.set_registered_model_alias(name, "champion", previous)


@contextmanager
def _pending_candidate(ctx: dict[str, Any]) -> Iterator[None]:
    """No @champion, and the @candidate version pending approval (whatever a test before left)."""
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    cl = client(ctx["settings"])
    name = ctx["candidate"].split("/")[0]
    version = str(cl.get_model_version_by_alias(name, c.ALIAS_CANDIDATE).version)
    approval = cl.get_model_version(name, version).tags.get(c.TAG_APPROVAL)
    cl.set_model_version_tag(name, version, c.TAG_APPROVAL, "pending")
    try:
        with _no_champion(ctx):
            yield
    finally:
        if approval is None:
            cl.delete_model_version_tag(name, version, c.TAG_APPROVAL)
        else:
            cl.set_model_version_tag(name, version, c.TAG_APPROVAL, approval)


def _truncate(data: bytes) -> bytes:
    return data[:1000]


def _flip(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


PREPARE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "no-champion": _no_champion,
    "pending-candidate": _pending_candidate,
    "source-module-missing": lambda ctx: file_changed(ctx["source_dir"] / "artifacts" / "module.pt", lambda b: None),
    "source-module-truncated": lambda ctx: file_changed(ctx["source_dir"] / "artifacts" / "module.pt", _truncate),
    "candidate-module-missing": lambda ctx: file_changed(
        ctx["candidate_dir"] / "artifacts" / "module.pt", lambda b: None
    ),
    "candidate-pickle-changed": lambda ctx: file_changed(ctx["candidate_dir"] / "python_model.pkl", _flip),
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scratch_models(governed: dict[str, Any]) -> Iterator[None]:
    """``reliability-scratch`` (version 1; version 2 created and deleted) and ``reliability-tagged``
    (onboarded by tags, policy tag outside the project), removed again after the module."""
    from quantgate.registry.mlflow_registry import client

    s = governed["settings"]
    cl = client(s)
    src = cl.get_model_version(*governed["sources"]["adult-income"].split("/"))
    cl.create_registered_model(SCRATCH, description="reliability sweep: a source nobody onboarded")
    cl.create_model_version(SCRATCH, src.source, run_id=src.run_id)
    cl.create_model_version(SCRATCH, src.source, run_id=src.run_id)
    cl.delete_model_version(SCRATCH, "2")
    cl.create_registered_model(TAGGED, description="reliability sweep: onboarded by tags")
    cl.create_model_version(
        TAGGED,
        src.source,
        run_id=src.run_id,
        tags={
            "quantgate.label": "income",
            "quantgate.calibration_data": "data/calibration.parquet",
            "quantgate.evaluation_data": "data/evaluation.parquet",
            "quantgate.policy": "/etc/passwd",
        },
    )
    try:
        yield
    finally:
        cl.delete_registered_model(SCRATCH)
        cl.delete_registered_model(TAGGED)


@pytest.fixture(scope="module")
def inputs(governed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The folder of bad files, the calibration data they are made from, the artifact folders."""
    import pandas as pd

    s = governed["settings"]
    folder = tmp_path_factory.mktemp("bad-inputs")
    calibration = pd.read_parquet(s.data_dir / "adult-income" / "calibration.parquet")
    calib_csv = folder / "calibration.csv"
    calib_csv.write_bytes(_csv(calibration))
    huge = folder / "huge.csv"
    with huge.open("wb") as f:  # sparse: the header, then a hole up to 2 GiB (no disk blocks)
        f.write(_header_only(calibration))
        f.truncate(2 * GiB)
    src = governed["sources"]["adult-income"].split("/")
    return {
        "folder": folder,
        "frame": calibration,
        "calibration": str(calib_csv),
        "huge": str(huge),
        "source_dir": _local_dir(s, *src),
        "candidate": governed["result"]["registered"],
        "candidate_dir": _local_dir(s, *governed["result"]["registered"].split("/")),
    }


def _materialise(content: Content, frame: Any) -> bytes:
    if callable(content):
        return content(frame)
    return content if isinstance(content, bytes) else content.encode()


def _short(text: str, inputs: dict[str, Any], project: Path | None, home: Path) -> str:
    """Temporary folders shortened for the report: the bad-input folder, the project copy, the home."""
    from reliability_sweep import ROOT

    folder = str(inputs["folder"])
    if project is not None:
        text = text.replace(str(project), "PROJECT")
    text = text.replace(folder + "/", "").replace(folder, "./")
    text = re.sub(r"--port \d+", "--port PORT", text)
    return text.replace(str(home), "$QUANTGATE_HOME").replace(str(ROOT) + "/", "")


# --------------------------------------------------------------------------- the sweep


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(
    cli: ForkedCli,
    case: Case,
    governed: dict[str, Any],
    inputs: dict[str, Any],
    scratch_models: None,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    from helpers import free_port

    s = governed["settings"]
    env: dict[str, str] = {}
    project = None
    values = {
        "inputs": str(inputs["folder"]),
        "calibration": inputs["calibration"],
        "huge": inputs["huge"],
        "candidate": inputs["candidate"],
        "port": str(free_port()),
    }
    if case.file:
        name, content = case.file
        path = inputs["folder"] / name
        path.write_bytes(_materialise(content, inputs["frame"]))
        values["file"] = str(path)
    if case.project:
        project = tmp_path / "project"
        files = {
            rel: _materialise(content, inputs["frame"]).replace(b"{PROJECT}", str(project).encode())
            for rel, content in case.project.items()
        }
        project_with(tmp_path, files)
        env["QUANTGATE_PROJECT_DIR"] = str(project)
    if case.flow:
        env["PREFECT_API_URL"] = governed["prefect_api"]
    args = [a.format(**values) for a in case.args]
    ctx = {**inputs, "settings": s}
    with ExitStack() as stack:
        if case.prepare:
            stack.enter_context(PREPARE[case.prepare](ctx))
        before = store_state(s)
        res = cli.run(*args, env=env, timeout=case.timeout, address_space_extra=case.address_space_extra)
        after = store_state(s)

    messages = message_lines(res.stderr)
    noise = other_lines(res.stderr)
    traceback = TRACEBACK in res.stderr or TRACEBACK in res.stdout
    if case.ledger_refusal:
        entries = new_ledger_entries(before, after)
        diff = state_diff(without_ledger(before), without_ledger(after))
        actions = [e["tags"].get("quantgate.promotion.ledger.action") for e in entries]
        store = (
            f"store identical but for {len(entries)} ledger entry ({', '.join(map(str, actions))})"
            if not diff
            else f"store CHANGED beyond the ledger: {'; '.join(diff)}"
        )
    else:
        diff = state_diff(before, after)
        store = f"store identical ({state_summary(after)})" if not diff else f"store CHANGED: {'; '.join(diff)}"
    checked = [
        store,
        "a Python traceback was printed" if traceback else "no traceback",
        f"{len(messages)} message line(s)" + (f", {len(noise)} other stderr line(s)" if noise else ""),
    ]
    if case.address_space_extra:
        checked.append("address space capped at +1 GiB")
    sees = messages[0] if messages else first_line(res.stderr or res.stdout) or "(nothing)"
    request.node.reliability_row = Row(
        case=case.id,
        group=case.group,
        input=case.input,
        command=_short(res.command, inputs, project, s.home_abs),
        sees=first_line(_short(sees, inputs, project, s.home_abs)),
        exit=res.code,
        expected=str(case.exit),
        checked=checked,
        seconds=res.seconds,
    ).to_json()

    out = f"exit {res.code}\nstderr:\n{res.stderr[-3000:]}\nstdout:\n{res.stdout[-1500:]}"
    assert not traceback, out
    assert res.code == case.exit, out
    assert len(messages) == 1, out
    assert not noise, out
    assert UNEXPECTED not in messages[0], out
    assert case.needle in messages[0], out
    assert not (case.forbid and case.forbid in messages[0]), out
    if case.address_space_extra:
        assert "out of memory" not in messages[0], out
    assert not diff, "\n".join(diff)
    if case.ledger_refusal:
        assert actions == ["refusal"], actions


def test_a_forked_run_is_the_real_cli(cli: ForkedCli, inputs: dict[str, Any]) -> None:
    """The fork server changes nothing a user would see: one case through both, same exit code and
    message (a real ``python -m quantgate.cli`` costs seconds of imports, which the sweep saves)."""
    bad = inputs["folder"] / "equivalence.yaml"
    bad.write_text(rule(key="treshold"))
    args = (*QUANTIZE, "--policy", str(bad))
    forked = cli.run(*args)
    real = real_cli(*args, env=cli.base_env)
    assert (forked.code, message_lines(forked.stderr)) == (real.code, message_lines(real.stderr))
    assert forked.code == 2 and TRACEBACK not in real.stderr
