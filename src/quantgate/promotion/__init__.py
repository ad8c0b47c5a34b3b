"""Promotion: the service that moves ``@champion`` (check -> ledger -> alias -> alert), the
promotion ledger, the alerts for ledger entries, the MLflow webhook receiver that promotes on
approval, and the ``mlflow server --app-name quantgate`` auth app (:mod:`.auth_app`) that guards
who may approve and move aliases. Nothing is imported here: the auth app is loaded by MLflow's
server, the rest by the CLI and flows, each on its own.
"""
