"""MLflow's model format, read from a downloaded model folder (the attribution loader's only MLflow call)."""

from __future__ import annotations


def load_pytorch_model(folder: str):
    """MLflow's own loader for a pytorch-flavour model folder; it checks the archive before loading."""
    import mlflow.pytorch

    return mlflow.pytorch.load_model(folder)
