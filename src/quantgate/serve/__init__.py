"""Serving the governed model: MLflow's own scoring server, wrapped to log every inference.

Names are resolved lazily (PEP 562) so ``import quantgate.serve`` loads neither mlflow nor
FastAPI; ``quantgate --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate._lazy import lazy_exports

if TYPE_CHECKING:
    from quantgate.serve.app import InferenceLogMiddleware, ServedModel, build_app, resolve_served
    from quantgate.serve.server import serve

_EXPORTS: dict[str, str] = {
    "InferenceLogMiddleware": "quantgate.serve.app",
    "ServedModel": "quantgate.serve.app",
    "build_app": "quantgate.serve.app",
    "resolve_served": "quantgate.serve.app",
    "serve": "quantgate.serve.server",
}

__all__ = ["InferenceLogMiddleware", "ServedModel", "build_app", "resolve_served", "serve"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
