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
    monitor = monitor_model("adult-income") if "adult-income" in chosen else None
    return {"quantized": results, "monitor": monitor}
