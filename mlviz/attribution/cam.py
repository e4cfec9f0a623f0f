"""Class activation maps through pytorch-grad-cam, plus two labelled non-CAM alternatives.

`compute_cams(model, images, method=...)` returns an `AttributionResult` with one map per sample and
output head. Methods:

- gradient CAMs (gradcam, gradcam++, hirescam, xgradcam, layercam, eigengradcam): ONE forward pass per
  batch for all heads. A hook captures the target layer's activation once, then `torch.autograd.grad`
  of each head's class score with respect to that activation (retain_graph) gives each head's gradients,
  and the pytorch_grad_cam class itself (`compute_cam_per_layer` / `aggregate_multi_layers`, hence its
  own `get_cam_weights` / `get_cam_image`) turns activations and gradients into the map. A separate
  pytorch_grad_cam call per head would run the forward pass and a full backward pass (down to the input,
  filling every parameter's .grad) once per head; this runs one forward and one short backward (from the
  output down to the layer only) per head, and never touches the parameters' .grad, so it is safe
  inside a training loop. The maps equal the library's per-head calls (tests check to 1e-5).
- eigencam (class-agnostic), scorecam, ablationcam: the pytorch_grad_cam classes called as they are,
  per head through a view of the model that returns that head's logits.
- occlusion (occlusion sensitivity) and input_gradients: real attributions that need no target layer
  and work for any differentiable (input gradients) or any (occlusion) model; returned with
  `is_cam=False` and labelled as what they are.
- attention_rollout: see `mlviz.attribution.rollout`.
"""

from __future__ import annotations

import contextlib
import itertools
import types
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from mlviz.attribution.hooks import eval_mode, forward_hooks, library_cam, restored_layer
from mlviz.attribution.layers import ALTERNATIVES, TargetLayer, capture_hook, find_target_layer
from mlviz.attribution.outputs import (
    HeadModel,
    class_score,
    describe_output,
    head_logits,
    library_targets,
    probabilities,
)
from mlviz.attribution.prepare import (
    Prepared,
    as_images,
    forward,
    model_device,
    one_line,
    prepare,
    prepared_from_logits,
    resolve_heads,
    target_classes,
)
from mlviz.attribution.result import GRADIENT_CAMS, AttributionResult, canonical_method, result_of
from mlviz.errors import MlvizError


def cam_class(method: str):
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
        "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigengradcam": pgc.EigenGradCAM,
        "eigencam": pgc.EigenCAM, "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM,
    }[method]


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def leftover_hooks_removed(model: nn.Module) -> Iterator[None]:
    """Safety net around library code that registers its own hooks (AblationCAM registers a forward hook
    and removes it only when its forward pass succeeds): any hook added inside the block goes on exit."""
    before = {id(m): (set(m._forward_hooks), set(m._forward_pre_hooks), set(m._backward_hooks))
              for m in model.modules()}
    try:
        yield
    finally:
        for m in model.modules():
            fw, pre, bw = before.get(id(m), (set(), set(), set()))
            for store, keep in ((m._forward_hooks, fw), (m._forward_pre_hooks, pre), (m._backward_hooks, bw)):
                for k in [k for k in store if k not in keep]:
                    del store[k]


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """ScoreCAM and AblationCAM print a tqdm bar per image; silence them while they run."""
    import pytorch_grad_cam.ablation_cam as ab
    import pytorch_grad_cam.score_cam as sc

    saved = [(mod, mod.tqdm) for mod in (sc, ab)]
    try:
        for mod, _ in saved:
            mod.tqdm = types.SimpleNamespace(tqdm=lambda iterable=None, *args, **kwargs: iterable)  # no bar
        yield
    finally:
        for mod, orig in saved:
            mod.tqdm = orig


def _no_gradient_error(layer: TargetLayer, why: str) -> MlvizError:
    return MlvizError(f"no gradient reaches layer '{layer.name}' from the model's output ({why}); choose another "
                      f"layer with target_layer=..., use method='eigencam' or 'scorecam' (CAMs without "
                      f"gradients), or {ALTERNATIVES}")


def _scale(maps: np.ndarray) -> np.ndarray:
    """Each map to [0, 1] like pytorch_grad_cam.utils.image.scale_cam_image (min → 0, max → 1)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    flat = flat - lo
    return (flat / (flat.max(axis=1, keepdims=True) + 1e-7)).reshape(maps.shape).astype(np.float32)


# --------------------------------------------------------------------------- gradient CAMs, one pass
def _frame_input(x: torch.Tensor, layer: TargetLayer) -> tuple[torch.Tensor, bool]:
    """The tensor whose size the maps are scaled to; for a 2-D layer in a video model, one frame."""
    if x.ndim == 5 and layer.kind != "spatial3d":
        return x[:, :, 0], True
    return x, False


def _gradient_cams(model: nn.Module, x: torch.Tensor, layer: TargetLayer, method: str, batch_size: int,
                   eigen_smooth: bool, targets, labels, heads, head_names) -> tuple[Prepared, np.ndarray, list[str]]:
    """One forward pass per batch gives the predictions, the targets and the activation; then one short
    backward per head."""
    cls = cam_class(method)
    notes: list[str] = []
    with eval_mode(model):
        # no target layers: the library object registers no hooks; it only does the arithmetic
        cam = cls(model=model, target_layers=[])
    cam.target_layers = [layer.module]
    n = x.shape[0]
    spec = chosen = names = None
    chunks: list[np.ndarray] = []
    logits_all: list[list[torch.Tensor]] = []
    any_gradient = False
    with eval_mode(model):
        for s in range(0, n, batch_size):
            xb = x[s:s + batch_size]
            captured: list = []
            with forward_hooks([(layer.module, capture_hook(captured))]), torch.enable_grad():
                out = forward(model, xb)
            if not captured:
                raise MlvizError(f"layer '{layer.name}' did not run in the forward pass")
            if len(captured) > 1:
                raise MlvizError(f"layer '{layer.name}' ran {len(captured)} times in one forward pass (shared "
                                 "weights); choose a layer that runs once")
            if captured[0] is None:
                raise MlvizError(f"layer '{layer.name}' does not return a tensor; choose another layer")
            if spec is None:
                spec = describe_output(out, xb.shape[0])
                chosen, names = resolve_heads(spec, heads, head_names)
            act = captured[0]
            logits = head_logits(out, spec)
            detached = [t.detach().float().cpu() for t in logits]
            logits_all.append(detached)
            classes_b, _ = target_classes(detached, spec, chosen, names, targets, labels,
                                          slice(s, s + xb.shape[0]), n)
            r = layer.reshape_transform
            act_values = (r(act.detach()) if r else act.detach()).cpu()
            if act_values.shape[0] != xb.shape[0]:
                raise MlvizError(f"layer '{layer.name}' output has batch size {act_values.shape[0]} for "
                                 f"{xb.shape[0]} inputs; choose a layer that keeps one map per sample")
            size_input, per_clip = _frame_input(xb, layer)
            batch_maps = []
            for j, h in enumerate(chosen):
                cls_t = torch.as_tensor(classes_b[:, j], device=xb.device)
                score = class_score(logits[h], cls_t, spec.binary[h]).sum()
                if not score.requires_grad:
                    raise _no_gradient_error(layer, "the output does not require gradients")
                (g,) = torch.autograd.grad(score, act, retain_graph=j < len(chosen) - 1, allow_unused=True)
                if g is None:
                    raise _no_gradient_error(layer, f"output '{names[h]}' does not depend on it")
                any_gradient = any_gradient or bool(g.abs().sum() > 0)
                g = (r(g) if r else g).detach().cpu()
                cam.activations_and_grads.activations = [act_values]
                cam.activations_and_grads.gradients = [g]
                lib_targets = library_targets(spec, h, classes_b[:, j])
                m = cam.aggregate_multi_layers(cam.compute_cam_per_layer(size_input, lib_targets, eigen_smooth))
                if per_clip:
                    m = np.repeat(m[:, None], xb.shape[2], axis=1)
                batch_maps.append(m)
            cam.activations_and_grads.activations, cam.activations_and_grads.gradients = [], []
            del out, act, logits, captured
            chunks.append(np.stack(batch_maps, axis=1))
    if not any_gradient:
        raise _no_gradient_error(layer, "every gradient is exactly zero: a non-differentiable step such as "
                                        "rounding, argmax or thresholding lies between them")
    if x.ndim == 5 and layer.kind != "spatial3d":
        notes.append(f"layer '{layer.name}' has no time axis: every frame of a clip shows the same map")
    per_head = [torch.cat([b[h] for b in logits_all]) for h in range(spec.n_heads)]
    prep = prepared_from_logits(x, spec, per_head, targets, labels, heads, head_names)
    return prep, np.concatenate(chunks, axis=0), notes


# --------------------------------------------------------------------------- library CAMs, per head
def _library_cams(model: nn.Module, prep: Prepared, layer: TargetLayer, method: str, batch_size: int,
                  eigen_smooth: bool) -> tuple[np.ndarray, list[str]]:
    from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit

    if prep.x.ndim == 5 and method in ("scorecam", "ablationcam"):
        raise MlvizError(f"{method} works on 2-D images only (pytorch_grad_cam upsamples in 2-D); for video use "
                         "gradcam, hirescam, eigencam or occlusion")
    if layer.kind == "spatial2d" and prep.x.ndim == 5:
        raise MlvizError(f"{method} needs a Conv3d layer for video input; '{layer.name}' is 2-D")
    cls = cam_class(method)
    heads = list(enumerate(prep.heads))
    if method == "eigencam":
        heads = heads[:1]  # class-agnostic: the same map for every head
    per_head = []
    for j, h in heads:
        view = HeadModel(model, h, prep.spec)
        kwargs = {"reshape_transform": layer.reshape_transform}
        stand_in = None
        if method == "ablationcam":
            stand_in = AblationLayerVit() if layer.kind == "tokens" else AblationLayer()
            kwargs.update(ablation_layer=stand_in, batch_size=max(8, batch_size))
        maps = []
        with leftover_hooks_removed(model), eval_mode(model), quiet_progress(), \
                library_cam(cls, view, [layer.module], **kwargs) as cam, \
                (restored_layer(model, layer.module, stand_in) if stand_in is not None else contextlib.nullcontext()):
            if method == "scorecam":
                cam.batch_size = max(8, batch_size)
            for s in range(0, prep.n, batch_size):
                xb = prep.x[s:s + batch_size]
                targets = library_targets(prep.spec, h, prep.classes[s:s + batch_size, j])
                try:
                    maps.append(cam(xb, targets, eigen_smooth=eigen_smooth))
                except (RuntimeError, ValueError, IndexError) as exc:
                    raise MlvizError(f"{method} failed on layer '{layer.name}': {one_line(exc)}; try gradcam, or "
                                     f"{ALTERNATIVES}") from None
        per_head.append(np.concatenate(maps, axis=0))
    if method == "eigencam":
        per_head = per_head * len(prep.heads)
    notes = ["EigenCAM is the first principal component of the activations: the same map for every class and "
             "output"] if method == "eigencam" else []
    return np.stack(per_head, axis=1), notes


# --------------------------------------------------------------------------- public
def compute_cams(model: nn.Module, images, method: str = "gradcam", target_layer=None, targets="predicted",
                 labels=None, heads=None, *, head_names=None, batch_size: int = 16, grid=None,
                 prefix_tokens=None, eigen_smooth: bool = False, **method_kwargs) -> AttributionResult:
    """One attribution map per image and output head.

    model: a torch module returning (B, classes), (B,) or (B, 1) binary logits, (B, heads, classes), or a
        tuple of per-head tensors. images: (N, C, H, W) or video (N, C, T, H, W), as the model takes them.
    method: a CAM (gradcam, gradcam++, hirescam, xgradcam, layercam, eigengradcam, eigencam, scorecam,
        ablationcam) or a labelled alternative (occlusion, input_gradients, attention_rollout).
    target_layer: None (automatic), a dotted name (`features.6`) or the module itself.
    targets: "predicted", "true" (needs labels: (N,) or (N, heads)), a class index, or an (N,)/(N, heads) array.
    heads: None (all) or indices / names (with head_names) of the outputs to explain.
    grid / prefix_tokens: override the token grid of a transformer layer (normally inferred).
    """
    method = canonical_method(method)
    if method == "occlusion":
        return occlusion_sensitivity(model, images, targets, labels, heads, head_names=head_names, **method_kwargs)
    if method == "input_gradients":
        return input_gradients(model, images, targets, labels, heads, head_names=head_names, batch_size=batch_size)
    if method == "attention_rollout":
        from mlviz.attribution.rollout import attention_rollout

        return attention_rollout(model, images, heads=heads, head_names=head_names, batch_size=batch_size,
                                 grid=grid, prefix_tokens=prefix_tokens, targets=targets, labels=labels,
                                 **method_kwargs)
    if method_kwargs:
        raise MlvizError(f"unexpected option(s) for {method}: {', '.join(sorted(method_kwargs))}")
    x = as_images(images).to(model_device(model))
    layer = find_target_layer(model, x, target_layer, grid=grid, prefix_tokens=prefix_tokens)
    if layer.kind == "spatial3d" and x.ndim != 5:
        raise MlvizError(f"layer '{layer.name}' is 3-D but the images are 2-D")
    if method in GRADIENT_CAMS:
        prep, maps, notes = _gradient_cams(model, x, layer, method, batch_size, eigen_smooth, targets, labels,
                                           heads, head_names)
    else:
        prep = prepare(model, x, targets, labels, heads, head_names, batch_size)
        maps, notes = _library_cams(model, prep, layer, method, batch_size, eigen_smooth)
    if prep.x.ndim == 5:
        notes.append("video: maps are (T, H, W) per clip, scaled over the whole clip, one per frame")
    return result_of(prep, method, True, method != "eigencam", maps, layer, notes,
                   {"eigen_smooth": eigen_smooth} if eigen_smooth else {})


# --------------------------------------------------------------------------- alternatives (not CAMs)
def _windows(sizes: tuple[int, ...], patch: tuple[int, ...], stride: tuple[int, ...]):
    axes = []
    for n, p, s in zip(sizes, patch, stride, strict=True):
        p = min(p, n)
        starts = list(range(0, n - p + 1, s))
        if starts[-1] + p < n:
            starts.append(n - p)
        axes.append([slice(a, a + p) for a in starts])
    return list(itertools.product(*axes))


def occlusion_sensitivity(model: nn.Module, images, targets="predicted", labels=None, heads=None, *,
                          head_names=None, patch: int | None = None, stride: int | None = None,
                          frames: int | None = None, baseline: str | float = "mean",
                          batch_size: int = 64) -> AttributionResult:
    """Occlusion sensitivity (Zeiler & Fergus): slide a patch filled with `baseline` (each image's channel
    mean, "zero", or a number) over the image and record how much the target class probability drops.
    Positive drops are evidence for the target; each map is scaled to [0, 1] and its largest drop (in
    probability) kept in `params["max_drop"]`. All heads come from the same occluded forward passes.
    Not a CAM: no layer, no gradients; one forward pass per patch position. Video: patches of `frames`
    frames (default T/8) slide in time too."""
    prep = prepare(model, images, targets, labels, heads, head_names, batch_size)
    x = prep.x
    spatial = tuple(x.shape[2:])
    h, w = spatial[-2:]
    p = int(patch or max(1, round(min(h, w) / 6)))
    st = int(stride or max(1, p // 2))
    if x.ndim == 5:
        pt = int(frames or max(1, spatial[0] // 8))
        windows = _windows(spatial, (pt, p, p), (pt, st, st))
    else:
        windows = _windows(spatial, (p, p), (st, st))
    maps = np.zeros((prep.n, len(prep.heads), *spatial), dtype=np.float64)
    counts = np.zeros(spatial, dtype=np.float64)
    for win in windows:
        counts[win] += 1
    with eval_mode(model), torch.no_grad():
        for i in range(prep.n):
            xi = x[i]
            fill = xi.reshape(xi.shape[0], -1).mean(1) if baseline == "mean" else \
                torch.zeros(xi.shape[0], device=x.device) if baseline == "zero" else \
                torch.full((xi.shape[0],), float(baseline), device=x.device)
            fill = fill.view(-1, *([1] * len(spatial)))
            base = prep.target_probability[i]
            for c0 in range(0, len(windows), batch_size):
                chunk = windows[c0:c0 + batch_size]
                xs = xi.unsqueeze(0).repeat(len(chunk), *([1] * xi.ndim))
                for k, win in enumerate(chunk):
                    xs[(k, slice(None), *win)] = fill
                logits = head_logits(forward(model, xs), prep.spec)
                for j, hd in enumerate(prep.heads):
                    cls = torch.full((len(chunk),), int(prep.classes[i, j]), device=x.device)
                    pr = probabilities(logits[hd].float(), cls, prep.spec.binary[hd]).cpu().numpy()
                    for k, win in enumerate(chunk):
                        maps[(i, j, *win)] += base[j] - pr[k]
    maps /= counts
    max_drop = maps.reshape(prep.n, len(prep.heads), -1).max(axis=2)
    maps = np.maximum(maps, 0)
    flat = maps.reshape(prep.n * len(prep.heads), -1)
    scaled = (flat / (flat.max(axis=1, keepdims=True) + 1e-12)).reshape(maps.shape)
    notes = ["occlusion sensitivity: drop in the target class probability when a patch is replaced by "
             f"{'the image mean' if baseline == 'mean' else baseline}; not a CAM"]
    return result_of(prep, "occlusion", False, True, scaled, None, notes,
                   {"patch": p, "stride": st, "baseline": baseline, "max_drop": max_drop})


def input_gradients(model: nn.Module, images, targets="predicted", labels=None, heads=None, *,
                    head_names=None, batch_size: int = 16) -> AttributionResult:
    """Saliency (Simonyan et al.): |d score / d input|, the largest over channels, scaled to [0, 1] per map.
    Needs only a differentiable model, no layer; one forward and one backward per head. Not a CAM."""
    prep = prepare(model, images, targets, labels, heads, head_names, batch_size)
    chunks = []
    nh = len(prep.heads)
    with eval_mode(model):
        for s in range(0, prep.n, batch_size):
            xb = prep.x[s:s + batch_size].clone().requires_grad_(True)
            with torch.enable_grad():
                logits = head_logits(forward(model, xb), prep.spec)
                per = []
                for j, h in enumerate(prep.heads):
                    cls = torch.as_tensor(prep.classes[s:s + batch_size, j], device=xb.device)
                    score = class_score(logits[h], cls, prep.spec.binary[h]).sum()
                    if not score.requires_grad:
                        raise MlvizError("the model's output does not depend differentiably on its input; use "
                                         "method='occlusion' instead")
                    (g,) = torch.autograd.grad(score, xb, retain_graph=j < nh - 1, allow_unused=True)
                    if g is None:
                        raise MlvizError("no gradient reaches the input; use method='occlusion' instead")
                    per.append(g.abs().amax(dim=1).cpu().numpy())
            chunks.append(np.stack(per, axis=1))
    maps = np.concatenate(chunks, axis=0)
    n, k = maps.shape[:2]
    scaled = _scale(maps.reshape(n * k, *maps.shape[2:])).reshape(maps.shape)
    return result_of(prep, "input_gradients", False, True, scaled, None,
                   ["input gradients (saliency): |∂ score / ∂ pixel|, max over channels; not a CAM"])
