"""Retraining on drift: how a source model is retrained (``retrain:`` in its onboarding), the
debounce record that allows at most one retraining per model per cool-down, and quantgate's own
retraining of the two demo models. The Prefect flow is ``quantgate.flows.retrain``."""
