"""MLflow adapter: the registry contract (names, tags, aliases) lives here and in registry/."""
