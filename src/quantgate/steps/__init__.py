"""The governance steps, one module each, orchestrator-agnostic: ``quantgate.flows`` wraps each
as a Prefect task and runs them in sequence.

discover -> data -> source (read + faithful check) -> validate -> quantize (fixed recipe or
search) -> evaluate -> gate -> record. Every step takes values and returns values; the writes
(MLflow run, provenance, registration) are all in ``record``, which runs last, so any earlier
failure leaves the registry untouched.
"""
