"""The software a candidate was built with: package versions for the card, pins for the logged model."""

from __future__ import annotations

CARD_PACKAGES = ("quantgate", "torch", "mlflow", "prefect", "great-expectations", "evidently")


def versions() -> dict[str, str]:
    """Versions of the packages the card names ("not installed" where one is missing)."""
    from quantgate.cards.provenance import package_versions

    found = package_versions(CARD_PACKAGES)
    return {name: found.get(name, "not installed") for name in CARD_PACKAGES}


def requirements() -> list[str]:
    v = versions()
    return [
        f"torch=={v['torch'].split('+')[0]}",
        f"mlflow=={v['mlflow']}",
        f"quantgate=={v['quantgate']}",
        "pandas<3",
        "transformers",
        "onnxruntime",
        "optimum-quanto",
        "torchao",
    ]
