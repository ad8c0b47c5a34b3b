"""The governance steps in one namespace (``pipeline.discover_source``, ``pipeline.gate``, ...).

Each step lives in its own module under :mod:`quantgate.steps`; this module only gathers them
for the flows, the CLI and the tests, in the order a flow runs them.
"""

from quantgate.steps.context import PROFILE_ARTIFACT, Datasets, Evaluation, Faithfulness, Search, Source
from quantgate.steps.data import load_datasets, signature_columns, stored_profile
from quantgate.steps.discover import discover_source, ungoverned_versions
from quantgate.steps.evaluate import evaluate_candidate
from quantgate.steps.gate import check_measurable, gate
from quantgate.steps.quantize import (
    Certified,
    calibration_batches,
    certify,
    quantize_candidate,
    resolve_recipe,
    search_recipe,
)
from quantgate.steps.record import EXPERIMENT, card_context, record_candidate
from quantgate.steps.source import check_source_faithful, load_source_model
from quantgate.steps.validate import govern_calibration_data, validate_calibration

__all__ = [
    "EXPERIMENT",
    "PROFILE_ARTIFACT",
    "Certified",
    "Datasets",
    "Evaluation",
    "Faithfulness",
    "Search",
    "Source",
    "calibration_batches",
    "card_context",
    "certify",
    "check_measurable",
    "check_source_faithful",
    "discover_source",
    "evaluate_candidate",
    "gate",
    "govern_calibration_data",
    "load_datasets",
    "load_source_model",
    "quantize_candidate",
    "record_candidate",
    "resolve_recipe",
    "search_recipe",
    "signature_columns",
    "stored_profile",
    "ungoverned_versions",
    "validate_calibration",
]
