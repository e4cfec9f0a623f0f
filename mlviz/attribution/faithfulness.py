"""How faithful a map is to the model: pytorch_grad_cam's own perturbation metrics, with a random baseline.

- ROAD (Rong et al., 2022; `pytorch_grad_cam.metrics.road.ROADCombined`): remove the most relevant pixels
  (by noisy linear imputation, not a black patch the model never saw) and, separately, the least relevant
  ones, at several percentiles; the score is (drop when removing the least relevant − drop when removing
  the most relevant) / 2 in the target class probability. Higher is more faithful; about 0 for a
  random map.
- CAM × image confidence change (`pytorch_grad_cam.metrics.cam_mult_image.CamMultImageConfidenceChange`):
  the change in the target class probability when the image is multiplied by the map (keeping only
  what the map highlights). Higher (less negative) is better.

Scores are per sample and output; the JSON keeps their mean with a bootstrap 95% interval, per output,
and the same numbers for random smooth maps, so a score can be read against chance.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from mlviz.attribution.hooks import eval_mode
from mlviz.attribution.outputs import HeadModel, describe_output, library_targets
from mlviz.attribution.prepare import as_images, model_device
from mlviz.attribution.result import AttributionResult

METRICS = ("road_combined", "cam_mult_confidence_change")
DESCRIPTIONS = {
    "road_combined": "ROAD combined (pytorch_grad_cam.metrics.road.ROADCombined): (LeRF − MoRF)/2 change in "
                     "target probability over the percentiles; higher is more faithful, ~0 for a random map",
    "cam_mult_confidence_change": "change in target probability when the image is multiplied by the map "
                                  "(pytorch_grad_cam CamMultImageConfidenceChange); higher is better",
}


def _random_maps(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Smooth random maps (blobs about a quarter of the image wide), scaled to [0, 1]."""
    import cv2

    n, h, w = shape
    small = rng.random((n, max(2, h // 4), max(2, w // 4))).astype(np.float32)
    out = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small])
    flat = out.reshape(n, -1)
    flat = (flat - flat.min(1, keepdims=True)) / (np.ptp(flat, axis=1, keepdims=True) + 1e-7)
    return flat.reshape(shape).astype(np.float32)


def _summary(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict:
    from mlviz.analysis.stats import bootstrap_mean_interval

    values = np.asarray(values, dtype=float)
    lo, hi = bootstrap_mean_interval(values, n_boot, rng)
    return {"mean": float(values.mean()) if len(values) else None, "ci95": [lo, hi], "n": int(len(values))}


def _metric(name: str, percentiles):
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADCombined

    if name == "road_combined":
        return ROADCombined(percentiles=list(percentiles))
    return CamMultImageConfidenceChange()


def faithfulness(model: nn.Module, images, result: AttributionResult, *, metrics=METRICS,
                 percentiles=(20, 40, 60, 80), max_samples: int = 16, seed: int = 0, random_baseline: bool = True,
                 n_boot: int = 500) -> dict:
    """Faithfulness of `result`'s maps for these images (the ones the maps were computed on)."""
    x = as_images(images).to(model_device(model))
    n = min(len(x), max_samples)
    x = x[:n]
    out = {"method": result.method, "label": result.label, "is_cam": result.is_cam, "n_samples": n,
           "outputs": result.head_names, "percentiles": list(percentiles), "metrics": {}, "skipped": {},
           "source": "pytorch_grad_cam.metrics"}
    if result.is_video:
        metrics = [m for m in metrics if m != "road_combined"]
        out["skipped"]["road_combined"] = "ROAD's imputation is defined for 2-D images, not video"
    rng = np.random.default_rng(seed)
    with eval_mode(model), torch.no_grad():
        spec = describe_output(model(x[:1]), 1)
    baseline_maps = _random_maps((n, *result.maps.shape[-2:]), rng) if random_baseline else None
    if baseline_maps is not None and result.is_video:
        baseline_maps = np.repeat(baseline_maps[:, None], result.maps.shape[2], axis=1)
    for name in metrics:
        per_sample, per_base, per_output = [], [], {}
        for j, h in enumerate(result.heads):
            view = HeadModel(model, h, spec)
            targets = library_targets(spec, h, result.target_classes[:n, j], probability=True)
            metric = _metric(name, percentiles)
            with eval_mode(model), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                # ROAD's imputer hands torch tensors to numpy (np.argwhere): a NumPy 2 deprecation, harmless
                warnings.filterwarnings("ignore", message=r"__array_wrap__", category=DeprecationWarning)
                torch.manual_seed(seed)
                scores = np.asarray(metric(x, result.maps[:n, j], targets, view), dtype=float).reshape(-1)
                base = None
                if baseline_maps is not None:
                    torch.manual_seed(seed)
                    base = np.asarray(metric(x, baseline_maps, targets, view), dtype=float).reshape(-1)
            per_sample.append(scores)
            entry = _summary(scores, rng, n_boot)
            if base is not None:
                per_base.append(base)
                entry["random_baseline"] = _summary(base, rng, n_boot)
            per_output[result.head_names[j]] = entry
        allv = np.concatenate(per_sample)
        summary = _summary(allv, rng, n_boot)
        summary.update({"higher_is_better": True, "description": DESCRIPTIONS[name], "per_output": per_output})
        if per_base:
            summary["random_baseline"] = _summary(np.concatenate(per_base), rng, n_boot)
        out["metrics"][name] = summary
    return out
