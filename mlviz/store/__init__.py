"""The only package that talks to MLflow: `read` opens stores and fetches runs, `sink` logs results."""
