"""``mlflow server --app-name quantgate``: MLflow's basic-auth app plus quantgate's approval rules.

- :mod:`quantgate.promotion.auth_app.rules` decides (pure): who may set the approval tag, the stamp tags and
  the protected aliases.
- :mod:`quantgate.promotion.auth_app.stamps` computes what the server writes on an approval (pure).
- :mod:`quantgate.promotion.auth_app.audit` is the append-only audit table in the auth database.
- :mod:`quantgate.promotion.auth_app.app` wires them into Flask ``before_request``/``after_request`` hooks
  around basic-auth (imports Flask and ``mlflow.server.auth``: never imported by the CLI's help).

Nothing here is imported at ``quantgate`` import time.
"""
