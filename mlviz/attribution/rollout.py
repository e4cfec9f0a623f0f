"""Attention rollout (Abnar & Zuidema, 2020) for vision transformers: a second, gradient-free view next to
the token Grad-CAM.

The attention of every layer is captured during one forward pass, averaged (or max/min) over attention
heads, mixed with the identity for the residual path, renormalised, and multiplied through the layers;
the CLS token's row (or the mean row for models without a prefix token) over the patch tokens, put back
on the token grid and upsampled to the image, is the map. It is class-agnostic and not a CAM, and is
labelled so.

Captured attention: `nn.MultiheadAttention` (asked for its per-head weights through a forward-pre hook,
even when the caller passes need_weights=False) and timm-style attention modules (a `qkv` linear layer
and `num_heads`; the weights are recomputed from q and k, as fused attention never materialises them).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlviz.attribution.hooks import eval_mode, forward_hooks
from mlviz.attribution.layers import infer_grid, is_conv, probe_layers
from mlviz.attribution.prepare import forward, prepare
from mlviz.errors import MlvizError


def _mha_pre(mod, args, kwargs):
    if len(args) >= 5:  # need_weights given positionally
        return None
    kwargs = dict(kwargs)
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = False
    return args, kwargs


def _timm_like(m: nn.Module) -> bool:
    return isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention) or _timm_like(m)]


def _capture(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per attention call, (B, heads, N, N) attention probabilities, in call order."""
    captured: list[tuple[int, torch.Tensor]] = []
    mods = attention_modules(model)
    if not mods:
        raise MlvizError(f"{type(model).__name__} has no attention layer (nn.MultiheadAttention or a module with "
                         "qkv and num_heads); attention rollout applies to transformers only: use gradcam, or "
                         "method='occlusion'")

    def post_mha(mod, inp, out):
        if isinstance(out, tuple) and len(out) > 1 and isinstance(out[1], torch.Tensor):
            w = out[1].detach()
            captured.append(w if w.ndim == 4 else w.unsqueeze(1))

    def qkv_hook(parent):
        def hook(mod, inp, out):
            b, n, _ = out.shape
            heads = parent.num_heads
            qkv = out.detach().reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
            q, k = qkv[0], qkv[1]
            if callable(getattr(parent, "q_norm", None)):
                q = parent.q_norm(q)
            if callable(getattr(parent, "k_norm", None)):
                k = parent.k_norm(k)
            scale = getattr(parent, "scale", q.shape[-1] ** -0.5)
            captured.append(torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1))
        return hook

    mha = [m for m in mods if isinstance(m, nn.MultiheadAttention)]
    timm = [m for m in mods if not isinstance(m, nn.MultiheadAttention)]
    # grad enabled: nn.TransformerEncoderLayer's inference fast path would bypass the attention module
    with eval_mode(model), torch.enable_grad(), \
            forward_hooks(((m, _mha_pre) for m in mha), pre=True, with_kwargs=True), \
            forward_hooks([(m, post_mha) for m in mha] + [(m.qkv, qkv_hook(m)) for m in timm]):
        forward(model, x)
    if not captured:
        raise MlvizError("no attention weights could be captured (the model's attention layers did not run or "
                         "used a fused path); use gradcam on the last block's norm, or method='occlusion'")
    return [a for a in captured]


def rollout_matrix(attentions: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
                   ) -> torch.Tensor:
    """(B, N, N) joint attention from per-layer (B, heads, N, N) attention probabilities."""
    n = attentions[0].shape[-1]
    if any(a.shape[-1] != n or a.shape[-2] != n for a in attentions):
        raise MlvizError("attention rollout needs the same number of tokens in every layer "
                         f"(got {sorted({tuple(a.shape[-2:]) for a in attentions})})")
    b = attentions[0].shape[0]
    eye = torch.eye(n, dtype=torch.float64).expand(b, n, n)
    joint = eye.clone()
    for a in attentions:
        a = a.double()
        fused = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}.get(head_fusion)
        if fused is None:
            raise MlvizError(f"head_fusion must be mean, max or min, got '{head_fusion}'")
        if discard_ratio > 0:
            flat = fused.reshape(b, -1).clone()
            k = int(flat.shape[1] * discard_ratio)
            if k:
                idx = flat.topk(k, dim=1, largest=False).indices
                idx = torch.where(idx == 0, torch.ones_like(idx), idx)  # never drop CLS → CLS
                flat.scatter_(1, idx, 0.0)
            fused = flat.reshape(b, n, n)
        fused = fused + eye
        fused = fused / fused.sum(-1, keepdim=True)
        joint = fused @ joint
    return joint


def attention_rollout(model: nn.Module, images, *, heads=None, head_names=None, head_fusion: str = "mean",
                      discard_ratio: float = 0.0, grid=None, prefix_tokens=None, batch_size: int = 16,
                      targets="predicted", labels=None):
    """Attention rollout maps, (N, heads, H, W) in [0, 1], the same for every output head (class-agnostic).
    Returned with is_cam=False, class_specific=False."""
    from mlviz.attribution.result import result_of

    prep = prepare(model, images, targets, labels, heads, head_names, batch_size)
    if prep.x.ndim != 4:
        raise MlvizError("attention rollout is implemented for 2-D images (N, C, H, W) only")
    h, w = prep.x.shape[-2:]
    infos = probe_layers(model, prep.x[:1])
    convs = [i for i in infos if is_conv(i.module) and len(i.shape) == 4]
    patch_grid = (convs[0].shape[2], convs[0].shape[3]) if convs else None
    maps, layout = [], None
    for s in range(0, prep.n, batch_size):
        xb = prep.x[s:s + batch_size]
        atts = [a for a in _capture(model, xb) if a.shape[0] == xb.shape[0]]
        if not atts:
            raise MlvizError("the captured attention has no batch dimension matching the images")
        joint = rollout_matrix(atts, head_fusion, discard_ratio)
        n = joint.shape[-1]
        found = infer_grid(n, (h, w), grid=grid, prefix_tokens=prefix_tokens, patch_grid=patch_grid)
        if found is None:
            raise MlvizError(f"cannot map {n} tokens onto a grid for {h}×{w} images; pass grid=(rows, cols) "
                             "and prefix_tokens")
        p, (gh, gw) = found
        layout = (p, gh, gw, len(atts))
        v = joint[:, 0, p:] if p > 0 else joint.mean(1)
        v = v.float().reshape(-1, 1, gh, gw)
        up = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        flat = up.reshape(up.shape[0], -1)
        flat = flat - flat.min(1, keepdim=True).values
        flat = flat / (flat.max(1, keepdim=True).values + 1e-7)
        maps.append(flat.reshape(-1, h, w).cpu().numpy())
    m = np.concatenate(maps)
    m = np.repeat(m[:, None], len(prep.heads), axis=1)
    p, gh, gw, layers = layout
    notes = [f"attention rollout over {layers} attention layers ({head_fusion} over heads, discard ratio "
             f"{discard_ratio}); class-agnostic; not a CAM"]
    return result_of(prep, "attention_rollout", False, False, m, None, notes,
                   {"head_fusion": head_fusion, "discard_ratio": discard_ratio, "token_grid": [gh, gw],
                    "prefix_tokens": p, "attention_layers": layers})
