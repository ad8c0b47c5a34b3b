"""Promotion on approval: the MLflow webhook receiver and the ledger's notifications."""
