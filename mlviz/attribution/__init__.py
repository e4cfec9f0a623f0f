"""Attribution heatmaps: CAMs through pytorch-grad-cam (one forward pass for all heads of a multi-output
model), attention rollout for transformers, labelled non-CAM alternatives (occlusion, input gradients),
faithfulness scores, loading a run's model and images, and the training-time grid (maps as arrays;
the heatmaps/ figures are `mlviz.sections.heatmap_figures`, the training-time callback
`mlviz.sections.training_heatmaps.HeatmapCallback`, also `mlviz.HeatmapCallback`).

Torch is imported only when these modules are used; `from mlviz.attribution import compute_cams` works
lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "compute_cams": "cam", "occlusion_sensitivity": "cam", "input_gradients": "cam",
    "attention_rollout": "rollout", "find_target_layer": "layers", "faithfulness": "faithfulness",
    "AttributionResult": "result", "METHODS": "result", "CAM_METHODS": "result",
    "load_model": "load", "load_samples": "load", "load_run": "load",
    "training_grid": "callback", "hook_count": "hooks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mlviz.attribution.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mlviz.attribution' has no attribute '{name}'")
