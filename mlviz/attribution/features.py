"""Features of a model at a named layer, for embedding maps: one forward hook, batches, no gradients.

The layer's output is pooled to one vector per sample: spatial maps (B, C, H, W) and video maps
(B, C, T, H, W) are averaged over their positions, token sequences (B, T, D) over their tokens. With no
layer named, the input of the last linear layer is taken: the penultimate features a classifier decides
from. The model's outputs of the same pass give predictions and confidences when the run logged none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlviz.errors import MlvizError


@dataclass
class Features:
    features: np.ndarray  # (N, D) float32
    layer: str  # the layer's name, or "input of <name>" for the default
    pooled: str  # how the layer's output became one vector per sample
    probabilities: np.ndarray | None = None  # (N, classes) softmax of a classifier's logits, when it has them
    notes: list[str] = field(default_factory=list)


def layer_names(model, limit: int = 8) -> list[str]:
    """A few layers a user could name (the last ones, where features are most abstract)."""
    names = [n for n, _ in model.named_modules() if n]
    return names[-limit:]


def _last_linear(model):
    from torch import nn

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return found[-1] if found else None


def _pool(t) -> tuple[np.ndarray, str]:
    import torch

    t = t.detach().float()
    if t.ndim == 2:
        return t.cpu().numpy(), "as is"
    if t.ndim == 3:
        return t.mean(dim=1).cpu().numpy(), "mean over tokens (dim 1)"
    if t.ndim >= 4:
        return t.flatten(2).mean(dim=2).cpu().numpy(), "mean over spatial positions"
    return torch.atleast_2d(t).reshape(len(t), -1).cpu().numpy(), "flattened"


def extract_features(model, images, layer: str | None = None, *, batch_size: int = 256,
                     device: str | None = None) -> Features:
    """Features of `images` (N, C, H, W) at `layer` (a dotted module name; None: the input of the last
    linear layer). The model's train/eval state is restored and its hooks removed afterwards."""
    import torch

    from mlviz.attribution.hooks import eval_mode, forward_hooks, tensors_of
    from mlviz.attribution.layers import resolve_layer

    x_all = np.asarray(images, dtype=np.float32)
    if x_all.ndim < 2 or len(x_all) == 0:
        raise MlvizError(f"no images to extract features from (shape {x_all.shape})")
    if layer is None:
        found = _last_linear(model)
        if found is None:
            raise MlvizError("the model has no linear layer to take the penultimate features from; name a layer "
                             f"(e.g. one of: {', '.join(layer_names(model)) or 'none'})")
        name, module = found
        pre, label = True, f"input of {name}"
    else:
        try:
            name, module = resolve_layer(model, layer)
        except (KeyError, AttributeError, IndexError):
            raise MlvizError(f"the model has no layer '{layer}'; layers include: "
                             f"{', '.join(layer_names(model)) or 'none'}") from None
        pre, label = False, name
    dev = torch.device(device) if device else next((p.device for p in model.parameters()), torch.device("cpu"))
    captured: list = []

    def grab(mod, args, out=None):
        value = args[0] if pre else out
        tensors = tensors_of(value) if not isinstance(value, torch.Tensor) else [value]
        captured.append(tensors[0].detach())

    def hook(mod, args, *rest):
        grab(mod, args, rest[0] if rest else None)

    feats, probs, pooled = [], [], ""
    with eval_mode(model), torch.no_grad(), forward_hooks([(module, hook)], pre=pre):
        for start in range(0, len(x_all), batch_size):
            captured.clear()
            out = model(torch.from_numpy(x_all[start:start + batch_size]).to(dev))
            if not captured:
                raise MlvizError(f"layer '{label}' was not run by the model's forward pass; name another layer "
                                 f"(e.g. one of: {', '.join(layer_names(model))})")
            f, pooled = _pool(captured[-1])
            feats.append(f)
            logits = tensors_of(out)[0] if not isinstance(out, torch.Tensor) else out
            if logits.ndim == 2 and logits.shape[1] >= 2:
                probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    features = np.concatenate(feats).astype(np.float32)
    notes = [f"features of {label} ({features.shape[1]} values a sample, {pooled})"]
    return Features(features, label, pooled, np.concatenate(probs) if len(probs) == len(feats) else None, notes)
