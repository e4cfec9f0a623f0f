"""Which of a run's artifacts hold a model and its images (names only: no torch), for every section that
explains or embeds a model."""

from __future__ import annotations

from pathlib import Path

STATE_FILES = ("checkpoints/model_state.pt", "checkpoints/model_state.pth", "checkpoints/state_dict.pt",
               "checkpoints/model.pt", "checkpoints/model.pth")
IMAGES = "data/val_images.npz"


def model_artifacts(paths: list[str], factory: str | None = None) -> list[str] | None:
    """The artifact paths that hold a loadable model, or None when the run logged none."""
    state = next((p for p in STATE_FILES if p in paths), None)
    config = str(Path(state).parent / "model_config.json") if state else None
    if state and (config in paths or factory):
        return [state] + ([config] if config in paths else [])
    mlmodels = sorted(p for p in paths if p.endswith("/MLmodel") or p == "MLmodel")
    if mlmodels:
        folder = str(Path(mlmodels[0]).parent)
        return [folder if folder != "." else ""]  # "": the model is the run's whole artifact root
    return None
