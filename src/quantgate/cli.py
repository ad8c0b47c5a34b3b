"""The ``quantgate`` command line (Typer + Rich).

Imports are lazy: ``quantgate --help`` loads neither torch nor mlflow. Every expected failure
is one readable line and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from quantgate.cli_base import EXIT_GATE, console, err, state
from quantgate.cli_base import run as _run

app = typer.Typer(
    help="Governed quantization for MLflow models: validate, quantize, gate, record, approve, promote, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Gate policies: validate, explain, print the JSON Schema.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and verbose logs.")) -> None:
    state["debug"] = debug  # shared with the commands of quantgate.cli_trust


# --- the loop ------------------------------------------------------------------------------


@app.command()
def init(directory: Path = typer.Argument(..., help="The team's repository to create (or an empty one).")) -> None:
    """Scaffold a team's quantgate repository: policies/, registry/models/, monitoring/, prefect.yaml
    (commented examples; refuses to overwrite a file)."""

    def body() -> None:
        from quantgate.project import init_project

        written = init_project(directory)
        for p in written:
            console.print(f"wrote {p}", highlight=False)
        console.print(
            f"Next: onboard a model (cp {directory}/registry/models/example-model.yaml.example"
            f" {directory}/registry/models/<name>.yaml), then run quantgate from {directory}"
            " or set QUANTGATE_PROJECT_DIR to it.",
            highlight=False,
        )

    _run(body, configure=False)  # no QUANTGATE_HOME in the current directory


@app.command()
def demo(
    small: bool = typer.Option(False, help="Subsample the data (a couple of minutes; used by the e2e test)."),
    model: list[str] = typer.Option(None, "--model", help="Only these demo models (adult-income, rt-sentiment)."),
) -> None:
    """Train + register the two demo models, govern each, serve adult-income's champion, monitor what it
    served, retrain + re-govern on drift, and show where to look."""

    def body() -> None:
        from quantgate.demo_receiver import LocalReceiver
        from quantgate.settings import get_settings

        s = get_settings()
        receiver = None
        if not (os.environ.get("QUANTGATE_ALERT_WEBHOOK") or s.alert_webhook):
            receiver = LocalReceiver().start()
            os.environ["QUANTGATE_ALERT_WEBHOOK"] = receiver.url
        try:
            from quantgate.flows.demo import demo as demo_flow

            result = demo_flow(small=small, models=model or None)
        finally:
            if receiver is not None:
                receiver.stop()
        _summary(result, receiver)

    _run(body)


def _summary(result: dict[str, Any], receiver: Any) -> None:
    from quantgate.settings import get_settings

    s = get_settings()
    t = Table(title="quantgate demo", show_lines=False)
    for col in (
        "model",
        "recipe",
        "accuracy fp32 → quantized",
        "size (module)",
        "speed (b32)",
        "verdict",
        "registered",
    ):
        t.add_column(col)
    for r in result["quantized"]:
        color = "green" if r["verdict"] == "pass" else "red"
        t.add_row(
            r["model"],
            r["recipe"],
            f"{r['accuracy_fp32']:.4f} → {r['accuracy_quantized']:.4f}",
            f"{r['size_fp32_mb']:.2f} → {r['size_quantized_mb']:.2f} MB",
            _speed(r["speedup"]),
            f"[{color}]{r['verdict']}[/]",
            f"{r['registered']} {' '.join('@' + a for a in r['aliases'])}",
        )
    console.print(t)
    if result.get("demo_approval"):
        console.print(f"[yellow]{result['demo_approval']}[/]")
    served = result.get("served")
    if served:
        d = served["drain"]
        console.print(
            f"served: {served['model']} (@champion) on http://127.0.0.1:{served['port']}: "
            f"{served['requests']} requests, {served['rows']} rows "
            f"({', '.join(f'{n} {k}' for k, n in served['sent_rows'].items())}), "
            f"p50 {served['p50_ms']:.1f} ms (from the inference log); "
            f"drain: {d['written']} written, {d['lost']} lost",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"  inference log: {served['log']} ({', '.join(served['partitions'])})", highlight=False, soft_wrap=True
        )
    m = result.get("monitor")
    if m:
        drift = (
            "[yellow]drift NOT RUN[/]"
            if m["drift"] is None
            else "[red]DRIFT[/]"
            if m["drift"]
            else "[green]no drift[/]"
        )
        window = "the served window (inference log)" if served else "its window"
        console.print(
            f"monitor: {m['model']}-quantized v{m['version']} (@{m['alias']}) on {window}, {m['rows']} rows: "
            f"{drift}"
            + (
                ""
                if m["drift"] is None
                else f" (share {m['drifted_share']:.2f}; {', '.join(m['drifted_columns'][:6])})"
            )
            + f"; run {m['run_id']}",
            soft_wrap=True,
        )
        for d in m["deliveries"]:
            console.print(
                f"  alert → {d['route']}: {'delivered' if d['ok'] else 'NOT delivered'}"
                f" ({d.get('status_code') or d.get('error')})"
            )
        if receiver is not None and receiver.received:
            kinds: dict[str, int] = {}
            for a in receiver.received:
                kinds[a.get("kind", "?")] = kinds.get(a.get("kind", "?"), 0) + 1
            console.print(
                f"  the local receiver got {len(receiver.received)} alert(s) "
                f"({', '.join(f'{k} {n}' for k, n in kinds.items())}): last "
                f'"{receiver.received[-1].get("title", "")}"'
            )
    if result.get("closed_loop"):
        _closed_loop_summary(result["closed_loop"])
    console.print("\n[bold]Where to look[/]")
    console.print(f"  store: {s.tracking_uri}")
    console.print(
        "  UI:    quantgate ui   → http://127.0.0.1:5000 (Models → *-quantized: card in the description,"
        " verdict/card/validation in the run's artifacts; experiment quantgate-monitoring: drift report)"
    )
    console.print(
        "  approve: in the UI, set tag quantgate.approval=approved on the candidate version, then"
        " `quantgate promote adult-income`"
    )


def _closed_loop_summary(loop: dict[str, Any]) -> None:
    """Drift -> retraining (or why not) -> the new candidate waiting for a reviewer."""
    r, g = loop["retrain"], loop.get("governed")
    if not r["retrained"]:
        reason = escape(str(r["reason"]))
        console.print(f"retrain: {r['model']} not retrained ({r['decision']}: {reason}); the event is recorded")
        return
    notes = escape("; ".join(r["notes"]))
    console.print(f"retrain: drift run {r['drift_run']} → {r['registered']} ({r['how']}; {notes})")
    if g:
        pending = "pending approval" if g["verdict"] == "pass" else "rejected by its gate"
        aliases = " ".join("@" + a for a in g["aliases"])
        console.print(f"  governed → {g['registered']} {aliases}: {g['verdict']}, {pending}")


@app.command()
def quantize(
    model: str = typer.Option(..., "--model", "-m", help="Source model: NAME, NAME/VERSION or NAME@ALIAS."),
    policy: Path | None = typer.Option(None, help="Policy YAML (default: the model's onboarding policy)."),
    recipe: str | None = typer.Option(None, help="Recipe name or JSON file (default: the model's recipe)."),
) -> None:
    """Govern one source version: validate, quantize, evaluate, gate, card, register."""

    def body() -> None:
        from quantgate import pipeline
        from quantgate.policy import load_policy
        from quantgate.settings import get_settings

        # fail fast, before a Prefect server starts, on what can be checked cheaply
        source = pipeline.discover_source(model)
        pol = load_policy(policy if policy else get_settings().path(source.config.policy))
        if source.config.task == "text-generation":
            from quantgate.steps.lm import load_lm_datasets, resolve_lm_recipe

            resolve_lm_recipe(recipe, source.config)
            load_lm_datasets(source.config)  # the text tables and prompts file: read again by the flow
        else:
            pipeline.resolve_recipe(recipe, source.config, pol)
        from quantgate.flows.quantize import quantize_model

        r = quantize_model(model=model, policy=str(policy) if policy else None, recipe=recipe)
        _verdict_table(r)
        if r["verdict"] != "pass":
            raise typer.Exit(EXIT_GATE)

    _run(body)


def _speed(x: float) -> str:
    return f"{x:.2f}x" if x == x else "not measured reliably"  # NaN: see evaluate/runtime.py


def _verdict_table(r: dict[str, Any]) -> None:
    t = Table(title=f"{r['model']} → {r['registered']} ({r['recipe']})")
    for col in ("rule", "severity", "observed", "bound", "outcome", "evidence"):
        t.add_column(col, overflow="fold")
    for rule in r["verdict_rules"]:
        color = {"pass": "green", "warn": "yellow", "fail": "red", "n/a": "dim", "not measured": "magenta"}.get(
            rule["outcome"], "white"
        )
        t.add_row(
            rule["rule_id"],
            rule["severity"],
            f"{rule['observed']:.4f}",
            f"{rule['bound']:.4f}",
            f"[{color}]{rule['outcome']}[/]",
            escape(rule["evidence"]),
        )
    console.print(t)
    if r.get("task") == "text-generation":
        console.print(
            f"perplexity {r['perplexity_fp32']:.2f} → {r['perplexity_quantized']:.2f} (ratio "
            f"{r['perplexity_ratio']:.4f}); size {r['size_fp32_mb']:.2f} → {r['size_quantized_mb']:.2f} MB; "
            f"verdict [bold]{r['verdict']}[/]; aliases: {', '.join(r['aliases']) or 'none'}"
        )
        return
    console.print(
        (
            f"MAE {r['mae_fp32']:.4f} → {r['mae_quantized']:.4f}"  # a regressor (flows/quantize_regression.py)
            if "mae_fp32" in r
            else f"accuracy {r['accuracy_fp32']:.4f} → {r['accuracy_quantized']:.4f}"
        )
        + f"; size {r['size_fp32_mb']:.2f} → "
        f"{r['size_quantized_mb']:.2f} MB; speed {_speed(r['speedup'])}; verdict [bold]{r['verdict']}[/]; "
        f"aliases: {', '.join(r['aliases']) or 'none'}"
    )


@app.command()
def validate(
    model: str = typer.Option(..., "--model", "-m", help="Source model: NAME or NAME/VERSION."),
    data: Path = typer.Option(..., "--data", help="Calibration data to check (CSV or Parquet)."),
    policy: Path | None = typer.Option(None, help="Policy YAML (default: the model's onboarding policy)."),
    out: Path | None = typer.Option(None, help="Write the reports here (GX Data Docs HTML, Evidently HTML, JSON)."),
) -> None:
    """Govern a calibration file: GX suite from the reference data, group coverage, leakage into
    the evaluation split, duplicates, label balance, representativeness. Exit 3 when it fails."""

    def body() -> None:
        from quantgate import pipeline
        from quantgate.data.datasets import file_digest, read_table
        from quantgate.policy import load_policy
        from quantgate.settings import get_settings

        source = pipeline.discover_source(model)
        cfg = source.config
        pol = load_policy(policy or get_settings().path(cfg.policy))
        base = pipeline.load_datasets(cfg)
        model_obj = pipeline.load_source_model(source, base)
        calib = read_table(data)
        datasets = pipeline.Datasets(
            calib,
            base.evaluation,
            base.reference,
            {**base.paths, "calibration": str(data)},
            {**base.digests, "calibration": file_digest(data)},
            reference_is_calibration=base.reference_is_calibration,
        )
        report = pipeline.govern_calibration_data(
            cfg,
            model_obj,
            datasets,
            pol,
            profile=pipeline.stored_profile(source),
            signature=pipeline.signature_columns(source),
        )
        t = Table(title=f"{data} vs {source.ref} reference")
        for col in ("check", "observed", "expected", "result"):
            t.add_column(col, overflow="fold")
        for ch in report.checks:
            result = {"passed": "[green]pass[/]", "failed": "[red]FAIL[/]"}.get(
                str(ch.status), "[red]could not run[/]" if ch.required else "[dim]not run[/]"
            )
            t.add_row(escape(ch.name), escape(str(ch.observed)), escape(str(ch.expected)), result)
        console.print(t)
        if out:
            files = report.write_artifacts(out)
            console.print(f"reports: {', '.join(str(f) for f in files.values())}")
        if not report.passed:
            err.print(f"[bold red]validation failed:[/] {escape(report.summary())}")
            raise typer.Exit(EXIT_GATE)
        ran = sum(ch.status == "passed" for ch in report.checks)
        not_run = len(report.checks) - ran
        console.print(f"[green]passed[/] {ran} checks" + (f" ({not_run} not run: see the table)" if not_run else ""))

    _run(body)


@app.command()
def promote(
    source: str = typer.Argument(..., help="Source model name (or its -quantized name)."),
    version: str | None = typer.Option(None, help="Quantized version (default: the 'candidate' alias)."),
) -> None:
    """Move 'champion' to an approved, passing candidate; refuse otherwise."""

    def body() -> None:
        from quantgate.cards.trust import verify_for_promotion
        from quantgate.promotion.service import promote as do_promote

        mv, previous = do_promote(source, version, verify=verify_for_promotion)
        was = f" (was v{previous})" if previous and previous != mv.version else ""
        console.print(f"[green]promoted[/] {mv.name}/{mv.version} → @champion{was}")

    _run(body)


@app.command()
def monitor(
    model: str = typer.Option(..., "--model", "-m", help="Source model name with a monitoring/<name>.yaml."),
    window: str | None = typer.Option(
        None,
        help="A file of inputs to score and check now (default: the spec's window file, "
        "else the inference log since the last run).",
    ),
    log_hours: float | None = typer.Option(
        None,
        "--log-hours",
        min=0.001,
        help="Check the inference log's last N hours (ignores the spec's window file and the last-run mark).",
    ),
) -> None:
    """One monitoring run on @champion: Evidently drift, production checks, alerts on drift."""

    if window is not None and log_hours is not None:
        raise typer.BadParameter("give --window (a file) or --log-hours (the inference log), not both")

    def body() -> None:
        from quantgate.flows.monitor import monitor_model

        m = monitor_model(model=model, window=window, log_hours=log_hours)
        console.print(
            f"{m['model']}-quantized v{m['version']} (@{m['alias']}): "
            + (
                "drift NOT RUN (no column could be compared)"
                if m["drift"] is None
                else f"{'DRIFT' if m['drift'] else 'no drift'}, share {m['drifted_share']:.2f} "
                f"({', '.join(m['drifted_columns'])})"
            )
            + f"; run {m['run_id']}"
        )
        for line in m.get("checks", []):
            console.print(f"  {escape(line)}")
        for d in m["deliveries"]:
            console.print(
                f"  {d.get('alert', 'drift')} alert → {d['route']}: {'delivered' if d['ok'] else 'NOT delivered'}"
            )

    _run(body)


@app.command()
def status() -> None:
    """The governed registry: versions, aliases, verdicts and approvals."""

    def body() -> None:
        from quantgate.registry.mlflow_registry import registry_snapshot

        t = Table(title="registry")
        for col in ("model", "version", "aliases", "verdict", "approval", "source", "recipe"):
            t.add_column(col)
        for r in registry_snapshot():
            tg = r["tags"]
            t.add_row(
                r["name"],
                str(r["version"]),
                " ".join("@" + a for a in r["aliases"]),
                tg.get("quantgate.verdict", ""),
                tg.get("quantgate.approval", ""),
                tg.get("quantgate.source", ""),
                tg.get("quantgate.recipe", ""),
            )
        console.print(t)

    _run(body)


@app.command()
def ui(
    port: int = typer.Option(5000, help="Port on 127.0.0.1."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
) -> None:
    """Start the MLflow UI on quantgate's store (Ctrl-C to stop)."""

    def body() -> None:
        import subprocess

        from quantgate.settings import get_settings

        s = get_settings()
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            s.tracking_uri,
            "--default-artifact-root",
            s.artifacts_dir.as_uri(),
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        console.print(f"MLflow UI on http://{host}:{port} (store {s.tracking_uri})")
        raise typer.Exit(subprocess.call(cmd))

    _run(body)


@app.command()
def recipes() -> None:
    """List the quantization recipes and their backends."""

    def body() -> None:
        from quantgate.quantize.recipes import list_recipes

        t = Table(title="recipes")
        for col in ("name", "version", "backend", "what it does"):
            t.add_column(col)
        for spec in list_recipes():
            t.add_row(spec.TYPE, str(spec.VERSION), spec.BACKEND, spec.SUMMARY)
        console.print(t)

    _run(body)


@app.command()
def bench(
    quick: bool = typer.Option(False, help="Small subsamples (minutes, not tens of minutes)."),
    out: Path = typer.Option(Path("docs/benchmarks.md"), help="Markdown report to write."),
    plot: Path = typer.Option(Path("docs/pareto.png"), help="Pareto plot (latency vs accuracy) to write."),
) -> None:
    """Benchmark recipes side by side on both demo models; writes the report and the plot."""

    def body() -> None:
        from quantgate.quantize.bench import run_bench

        run_bench(out, plot, quick=quick, command=f"quantgate bench{' --quick' if quick else ''}")
        console.print(f"wrote {out} and {plot}")

    _run(body)


# --- policy ----------------------------------------------------------------------------------


@policy_app.command("validate")
def policy_validate(file: Path = typer.Argument(..., help="Policy YAML.")) -> None:
    """Check a policy file against the schema."""

    def body() -> None:
        from quantgate.policy.schema import load_policy

        p = load_policy(file)
        lm = len(getattr(p, "lm_rules", None) or [])
        counted = f"{len(p.rules)} rules" + (f" + {lm} language-model rules" if lm else "")
        console.print(f"[green]valid[/] policy '{p.name}': {counted}, digest {p.digest}")

    _run(body, configure=False)


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the policy JSON Schema."""
    from quantgate.policy.schema import policy_json_schema

    print(policy_json_schema())


@policy_app.command("explain")
def policy_explain(file: Path = typer.Argument(..., help="Policy YAML.")) -> None:
    """The rules in plain words."""

    def body() -> None:
        from quantgate.policy.schema import explain, load_policy

        p = load_policy(file)
        console.print(f"[bold]{p.name}[/]: {p.description or ''}".strip())
        for line in explain(p):
            console.print(f"  {line}", highlight=False)

    _run(body, configure=False)


def _add_trust_commands() -> None:
    from quantgate.cli_trust import keys_app
    from quantgate.cli_trust import verify as verify_command

    app.add_typer(keys_app, name="keys", help="Signing keys: create, rotate, revoke, list.")
    app.command(name="verify")(verify_command)


_add_trust_commands()
from quantgate.cli_serve import register as _register_serve  # noqa: E402  (serve: issue 13)

_register_serve(app, _run)
from quantgate.cli_notify import register as _register_notify  # noqa: E402  (notify: issue 13)

_register_notify(app, _run)
from quantgate.cli_ledger import register as _register_ledger  # noqa: E402  (ledger: issue 14)

_register_ledger(app)
from quantgate.cli_users import register as _register_users  # noqa: E402  (server app users: issue 14)

_register_users(app, _run)
from quantgate.cli_monitor import register as _register_monitor  # noqa: E402  (monitor-labels, monitor-ui)

_register_monitor(app)
from quantgate.cli_stack import register as _register_stack  # noqa: E402  (stack up|down|status: issue 29)

_register_stack(app, _run)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
