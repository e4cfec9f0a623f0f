"""The result of an attribution method, labelled with what it is (a CAM or not, class-specific or not)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigengradcam", "eigencam",
               "scorecam", "ablationcam")
GRADIENT_CAMS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigengradcam")
OTHER_METHODS = ("occlusion", "input_gradients", "attention_rollout")
METHODS = CAM_METHODS + OTHER_METHODS

LABELS = {
    "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM", "eigengradcam": "Eigen-Grad-CAM", "eigencam": "EigenCAM (class-agnostic)",
    "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM",
    "occlusion": "Occlusion sensitivity (not a CAM)", "input_gradients": "Input gradients (saliency, not a CAM)",
    "attention_rollout": "Attention rollout (class-agnostic, not a CAM)",
}

ALIASES = {
    "grad-cam": "gradcam", "grad_cam": "gradcam", "gradcampp": "gradcam++", "gradcamplusplus": "gradcam++",
    "grad-cam++": "gradcam++", "hires-cam": "hirescam", "xgrad-cam": "xgradcam", "layer-cam": "layercam",
    "eigen-cam": "eigencam", "score-cam": "scorecam", "ablation-cam": "ablationcam",
    "eigen-grad-cam": "eigengradcam", "occlusion_sensitivity": "occlusion", "occlusion-sensitivity": "occlusion",
    "saliency": "input_gradients", "gradients": "input_gradients", "input-gradients": "input_gradients",
    "rollout": "attention_rollout", "attention-rollout": "attention_rollout",
}


def canonical_method(method: str) -> str:
    from mlviz.errors import MlvizError

    m = str(method).strip().lower()
    m = ALIASES.get(m, m)
    if m not in METHODS:
        raise MlvizError(f"unknown attribution method '{method}'; CAMs: {', '.join(CAM_METHODS)}; "
                         f"other attributions: {', '.join(OTHER_METHODS)}")
    return m


@dataclass
class AttributionResult:
    """Maps for N samples × the chosen heads.

    `maps` is (N, heads, H, W) (or (N, heads, T, H, W) for video), each map scaled to [0, 1] on its own
    (0 = its lowest, 1 = its highest attribution), as pytorch_grad_cam returns CAMs. `empty[i, j]` marks a
    map with no positive evidence at all (all zero before scaling). `is_cam` is False for occlusion,
    input gradients and attention rollout, which must never be labelled as CAMs.
    """

    method: str
    is_cam: bool
    class_specific: bool
    maps: np.ndarray
    heads: list[int]
    head_names: list[str]
    target_classes: np.ndarray  # (N, heads) class whose evidence is shown
    target_mode: str  # "predicted" | "true" | "class k" | "given"
    predicted: np.ndarray  # (N, heads)
    probability: np.ndarray  # (N, heads) probability of the predicted class
    target_probability: np.ndarray  # (N, heads) probability of the target class
    input_shape: tuple[int, ...]
    layer: dict | None = None
    output_names: list[str] = field(default_factory=list)  # every output of the model (heads selects)
    empty: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    faithfulness: dict | None = None

    @property
    def label(self) -> str:
        return LABELS.get(self.method, self.method)

    @property
    def is_video(self) -> bool:
        return self.maps.ndim == 5

    def map(self, sample: int, head: int = 0) -> np.ndarray:
        return self.maps[sample, head]

    def summary(self) -> dict:
        """JSON-ready description without the maps."""
        from mlviz.analysis.stats import to_jsonable

        return to_jsonable({
            "method": self.method, "label": self.label, "is_cam": self.is_cam,
            "class_specific": self.class_specific, "heads": self.head_names, "target_mode": self.target_mode,
            "layer": self.layer, "input_shape": list(self.input_shape), "map_shape": list(self.maps.shape[2:]),
            "n_samples": int(self.maps.shape[0]),
            "n_empty_maps": int(self.empty.sum()) if self.empty is not None else None,
            "notes": self.notes, "params": self.params, "faithfulness": self.faithfulness,
        })


def _empty(maps: np.ndarray) -> np.ndarray:
    return maps.reshape(maps.shape[0], maps.shape[1], -1).max(axis=2) < 1e-6


def result_of(prep, method: str, is_cam: bool, class_specific: bool, maps: np.ndarray, layer=None,
            notes=None, params=None) -> AttributionResult:
    """An AttributionResult of `maps` for the prepared batch `prep` (mlviz.attribution.prepare.Prepared)."""
    return AttributionResult(
        method=method, is_cam=is_cam, class_specific=class_specific, maps=maps.astype(np.float32),
        heads=prep.heads, head_names=prep.head_names, target_classes=prep.classes, target_mode=prep.target_mode,
        predicted=prep.predicted, probability=prep.probability, target_probability=prep.target_probability,
        input_shape=tuple(prep.x.shape[1:]), layer=layer.to_json() if layer is not None else None,
        output_names=list(prep.output_names),
        empty=_empty(maps), notes=list(notes or []), params=dict(params or {}))
