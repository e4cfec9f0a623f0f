"""The only package that talks to MLflow: `read` opens stores and fetches runs, `write` is the one guarded
writer, `importers` turn other formats into runs, `ui` marks experiments for the MLflow UI."""
