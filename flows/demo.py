"""Prefect flow: the whole loop on the two demo models, on embedded defaults."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from quantgate.flows.monitor import monitor_model
from quantgate.flows.quantize import quantize_model
from quantgate.settings import configure_environment


@task(name="train-demo-models", cache_policy=NO_CACHE)
def train_demo_models(small: bool, models: list[str]) -> dict[str, str]:
    from quantgate.data import demo_models as dm

    size = dm.DemoSize.small() if small else dm.DemoSize()
    out = {}
    if "adult-income" in models:
        mv = dm.train_adult(dm.prepare_adult(size))
        out["adult-income"] = f"{mv.name}/{mv.version}"
    if "rt-sentiment" in models:
        mv = dm.train_rt(dm.prepare_rt(size))
        out["rt-sentiment"] = f"{mv.name}/{mv.version}"
    return out


@flow(name="quantgate-demo", log_prints=True)
def demo(small: bool = False, models: list[str] | None = None) -> dict[str, Any]:
    """Train + register the demo models, govern each, then one monitoring run on adult-income."""
    configure_environment()
    log = get_run_logger()
    chosen = models or ["adult-income", "rt-sentiment"]
    sources = train_demo_models(small, chosen)
    log.info("source models: %s", sources)
    results = [quantize_model(ref) for ref in sources.values()]
    monitor, approval, loop = None, None, None
    if "adult-income" in chosen:
        adult = next(r for r in results if r["model"].startswith("adult-income/"))
        approval = demo_approve_and_promote(adult)
        if approval:  # monitoring watches @champion only
            monitor = monitor_model("adult-income")
            if monitor["drift"]:
                loop = close_the_loop(monitor)
    return {"quantized": results, "monitor": monitor, "demo_approval": approval, "closed_loop": loop}


def close_the_loop(monitor: dict[str, Any]) -> dict[str, Any]:
    """What the ``retrain`` and ``govern-new-source`` deployments do on the drift event, run here
    as subflows (the demo has no Prefect server with triggers and no worker; the end-to-end test
    runs the same chain from prefect.yaml): retrain once per cool-down, then govern the new version."""
    from quantgate.flows.retrain import retrain_model

    retrained = retrain_model(monitor["model"], drift_run=monitor["run_id"], drifted_version=monitor["version"])
    governed = quantize_model(retrained["registered"]) if retrained["retrained"] else None
    return {"retrain": retrained, "governed": governed}


DEMO_REVIEWER = "demo-reviewer"


def demo_approve_and_promote(result: dict[str, Any]) -> str | None:
    """The demo approves its own passing candidate, as a clearly labelled demo reviewer, **only in
    the embedded store** (which has no identity anyway), then promotes it through the same checks
    as ``quantgate promote``. In server mode a person approves; this refuses."""
    from quantgate.cards.trust import verify_for_promotion
    from quantgate.registry.mlflow_registry import client, promote
    from quantgate.settings import get_settings

    if not get_settings().embedded_mlflow:
        print("demo: not approving anything in server mode (a reviewer approves in the MLflow UI)")
        return None
    if result["verdict"] != "pass":
        print(f"demo: {result['registered']} failed its gate; nothing to approve or monitor")
        return None
    name, version = result["registered"].split("/")
    cl = client()
    cl.set_model_version_tag(name, version, "quantgate.approval", "approved")
    cl.set_model_version_tag(name, version, "quantgate.approved_by", DEMO_REVIEWER)
    cl.set_model_version_tag(
        name, version, "quantgate.approval_note", "approved by the demo itself (embedded store, no identity)"
    )
    promote(name, version, verify=verify_for_promotion)
    note = (
        f"demo: {name}/{version} approved by '{DEMO_REVIEWER}' (the demo itself, embedded store only; "
        "in server mode a person approves) and promoted to @champion, so that monitoring has a deployed model"
    )
    print(note)
    return note
