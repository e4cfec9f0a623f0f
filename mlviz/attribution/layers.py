"""Which layer a CAM is computed on.

Automatic choice: the last nn.Conv2d / nn.Conv3d (in the order the forward pass calls them, not the
order they are declared) whose output still has spatial extent. For transformer models (token outputs
(B, N, D) from a norm layer called after the last convolution, e.g. a ViT whose only convolution is the
patch embedding), the last block's norm: the last token norm called before the last attention layer
(`blocks[-1].norm1` in a pre-norm ViT), checked to receive gradient from the output, with a reshape transform from tokens to a (D, gh, gw) grid; the
grid comes from the patch embedding's output, or from the token count and the image's aspect ratio,
never from a hard-coded 14×14.

A named layer is a dotted path (`features.6`, `backbone.layer4`, `layer4.-1`, `blocks[-1].norm1`).
When neither works, MlvizError lists the candidate layers and the alternatives that need no layer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from mlviz.attribution.hooks import eval_mode, forward_hooks, tensors_of
from mlviz.errors import MlvizError

ALTERNATIVES = ("use method='occlusion' or method='input_gradients' (real attributions, but not CAMs; "
                "they need no layer)")
MAX_PREFIX_TOKENS = 16


@dataclass
class LayerInfo:
    name: str
    module: nn.Module
    type_name: str
    shape: tuple[int, ...]  # output shape at the first call, batch first
    order: int  # position in the forward pass
    calls: int

    def describe(self) -> str:
        return f"{self.name} ({self.type_name}, {'×'.join(str(s) for s in self.shape[1:])})"


class TokenReshape:
    """(B, N, D) tokens (or (N, B, D) sequence-first) → (B, D, gh, gw), dropping the prefix tokens."""

    def __init__(self, prefix: int, grid: tuple[int, int], seq_first: bool = False):
        self.prefix, self.grid, self.seq_first = int(prefix), (int(grid[0]), int(grid[1])), seq_first

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.seq_first:
            t = t.transpose(0, 1)
        t = t[:, self.prefix:, :]
        b, _, d = t.shape
        return t.reshape(b, self.grid[0], self.grid[1], d).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenReshape(prefix={self.prefix}, grid={self.grid}, seq_first={self.seq_first})"


@dataclass
class TargetLayer:
    name: str
    module: nn.Module
    kind: str  # "spatial2d" | "spatial3d" | "tokens"
    shape: tuple[int, ...]
    reshape_transform: TokenReshape | None = None
    how: str = ""  # why this layer

    def to_json(self) -> dict:
        out = {"name": self.name, "type": type(self.module).__name__, "kind": self.kind,
               "output_shape": list(self.shape[1:]), "chosen": self.how}
        if self.reshape_transform is not None:
            out["token_grid"] = list(self.reshape_transform.grid)
            out["prefix_tokens"] = self.reshape_transform.prefix
        return out


# --------------------------------------------------------------------------- probing
def probe_layers(model: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """Every submodule that runs on `x`, in call order, with its output shape (hooks removed after)."""
    infos: dict[int, LayerInfo] = {}
    names = {id(m): n for n, m in model.named_modules() if n}

    def make(name, module):
        def hook(mod, inp, out):
            key = id(mod)
            if key in infos:
                infos[key].calls += 1
                return
            ts = tensors_of(out)
            shape = tuple(ts[0].shape) if ts else ()
            infos[key] = LayerInfo(name, mod, type(mod).__name__, shape, len(infos), 1)
        return hook

    from mlviz.attribution.prepare import forward

    pairs = [(m, make(names[id(m)], m)) for m in model.modules() if id(m) in names]
    with eval_mode(model), torch.no_grad(), forward_hooks(pairs):
        forward(model, x)  # a shape mismatch becomes a one-line MlvizError
    return sorted(infos.values(), key=lambda i: i.order)


def _graph_ops(module) -> str:
    g = getattr(module, "graph", None)
    if g is None or list(module.children()):
        return ""
    return " ".join(str(n.target) for n in g.nodes if n.op == "call_function")


def is_conv(module: nn.Module) -> bool:
    """nn.Conv2d / nn.Conv3d, or the same layer in a model loaded from torch.export (an InterpreterModule)."""
    return isinstance(module, (nn.Conv2d, nn.Conv3d)) or bool(re.search(r"aten\.conv(2d|3d|olution)",
                                                                        _graph_ops(module)))


def is_token_norm(module: nn.Module) -> bool:
    if isinstance(module, (nn.LayerNorm, getattr(nn, "RMSNorm", nn.LayerNorm))):
        return True
    name = type(module).__name__
    if "Norm" in name and "Batch" not in name and "Group" not in name and "Instance" not in name:
        return True
    return "layer_norm" in _graph_ops(module) or "rms_norm" in _graph_ops(module)


def is_attention(module: nn.Module) -> bool:
    """nn.MultiheadAttention, a timm-style attention (qkv + num_heads), or a module named *Attention."""
    qkv, n_heads = getattr(module, "qkv", None), getattr(module, "num_heads", None)
    timm = isinstance(qkv, nn.Linear) and isinstance(n_heads, int)
    return isinstance(module, nn.MultiheadAttention) or timm or type(module).__name__.endswith("Attention")


def spatial_kind(shape: tuple[int, ...]) -> str | None:
    if len(shape) == 4 and shape[2] * shape[3] > 1:
        return "spatial2d"
    if len(shape) == 5 and shape[3] * shape[4] > 1:
        return "spatial3d"
    return None


def infer_grid(n_tokens: int, image_hw: tuple[int, int], *, grid=None, prefix_tokens=None,
               patch_grid=None) -> tuple[int, tuple[int, int]] | None:
    """(prefix tokens, (gh, gw)) for a token sequence of length n_tokens, or None when it cannot be told.

    Order: an explicit grid; the patch embedding's output grid; else the factorisation of n - prefix whose
    aspect ratio equals the image's, with the fewest prefix tokens (0 for mean-pooled models, 1 for a CLS
    token, more for distillation / register tokens).
    """
    if grid is not None:
        gh, gw = int(grid[0]), int(grid[1])
        p = n_tokens - gh * gw
        if p < 0 or (prefix_tokens is not None and p != prefix_tokens):
            return None
        return p, (gh, gw)
    if patch_grid is not None:
        p = n_tokens - patch_grid[0] * patch_grid[1]
        if 0 <= p <= MAX_PREFIX_TOKENS and (prefix_tokens is None or p == prefix_tokens):
            return p, (int(patch_grid[0]), int(patch_grid[1]))
    h, w = image_hw
    prefixes = [prefix_tokens] if prefix_tokens is not None else range(0, MAX_PREFIX_TOKENS + 1)
    for p in prefixes:
        m = n_tokens - p
        if m < 1:
            continue
        gh = int(round(math.sqrt(m * h / w)))
        for cand in (gh, gh - 1, gh + 1):
            if cand >= 1 and m % cand == 0:
                gw = m // cand
                if cand * w == gw * h:
                    return p, (cand, gw)
    return None


def _token_layout(info: LayerInfo, batch: int) -> tuple[int, bool] | None:
    """(number of tokens, sequence-first?) for a 3-D output, or None."""
    if len(info.shape) != 3:
        return None
    if info.shape[0] == batch:
        return info.shape[1], False
    if info.shape[1] == batch:
        return info.shape[0], True
    return None


def _patch_grid(infos: list[LayerInfo], before: int) -> tuple[int, int] | None:
    convs = [i for i in infos if i.order < before and is_conv(i.module) and len(i.shape) == 4]
    return (convs[-1].shape[2], convs[-1].shape[3]) if convs else None


# --------------------------------------------------------------------------- naming
def resolve_layer(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    """A submodule by dotted path; integer parts index Sequential/ModuleList (negative allowed)."""
    path = re.sub(r"\[(-?\d+)\]", r".\1", name.strip()).strip(".")
    try:
        return path, model.get_submodule(path)
    except AttributeError:
        pass
    cur: nn.Module = model
    for part in path.split("."):
        if re.fullmatch(r"-?\d+", part) and isinstance(cur, (nn.Sequential, nn.ModuleList)):
            try:
                cur = cur[int(part)]
            except IndexError:
                raise KeyError(name) from None
        elif part in cur._modules:
            cur = cur._modules[part]
        else:
            raise KeyError(name)
    canonical = next((n for n, m in model.named_modules() if m is cur), path)
    return canonical, cur


def candidate_layers(infos: list[LayerInfo], batch: int = 1, limit: int = 12) -> list[str]:
    """Layers a CAM could use (spatial or token outputs), last first, described for error messages."""
    out = [i for i in reversed(infos) if spatial_kind(i.shape) or _token_layout(i, batch)]
    return [i.describe() for i in out[:limit]]


def _candidates_text(infos, batch) -> str:
    c = candidate_layers(infos, batch)
    return ", ".join(c) if c else "none (no layer has a spatial or token output)"


# --------------------------------------------------------------------------- choice
def _token_target(info: LayerInfo, infos, x, batch, grid, prefix_tokens, how) -> TargetLayer | None:
    layout = _token_layout(info, batch)
    if layout is None:
        return None
    n, seq_first = layout
    found = infer_grid(n, tuple(x.shape[-2:]), grid=grid, prefix_tokens=prefix_tokens,
                       patch_grid=_patch_grid(infos, info.order))
    if found is None:
        return None
    p, g = found
    return TargetLayer(info.name, info.module, "tokens", info.shape, TokenReshape(p, g, seq_first), how)


def capture_hook(store: list):
    """A forward hook that appends the layer's output (None when it is not a tensor) to `store`, as a tensor
    that requires grad, so a gradient can be taken with respect to it."""
    def hook(mod, inp, out):
        if not isinstance(out, torch.Tensor):
            store.append(None)
            return None
        a = out if out.requires_grad else out.detach().requires_grad_(True)
        store.append(a)
        # downstream layers see a copy: an in-place op after the layer (ReLU(inplace=True)) cannot change
        # the activation kept here, and the gradient is taken with respect to the layer's own output
        return a.clone()
    return hook


def _gradient_reaches(model, x, candidates: list[TargetLayer]) -> list[bool]:
    """Whether the top output score has a non-zero gradient on each candidate's (non-prefix) tokens
    (candidates run once per forward pass)."""
    from mlviz.attribution.prepare import forward

    outputs: list[list] = [[] for _ in candidates]
    with eval_mode(model), torch.enable_grad(), forward_hooks(
            (c.module, capture_hook(o)) for c, o in zip(candidates, outputs, strict=True)):
        out = forward(model, x)
    captured = {i: o[0] for i, o in enumerate(outputs) if o and o[0] is not None}
    ts = [t for t in tensors_of(out) if t.is_floating_point()]
    keys = sorted(captured)
    if not ts or not keys:
        return [False] * len(candidates)
    score = sum(t.reshape(t.shape[0], -1).max(1).values.sum() for t in ts)
    if not score.requires_grad:
        return [False] * len(candidates)
    grads = torch.autograd.grad(score, [captured[k] for k in keys], allow_unused=True)
    reach = [False] * len(candidates)
    for k, g in zip(keys, grads, strict=True):
        if g is None:
            continue
        r = candidates[k].reshape_transform
        g = r(g) if r is not None else g
        reach[k] = bool(g.abs().sum() > 0)
    return reach


def find_target_layer(model: nn.Module, x: torch.Tensor, target_layer=None, *, grid=None,
                      prefix_tokens=None) -> TargetLayer:
    """The layer to compute CAMs on for inputs like `x` (a small batch; 2 samples tell a batch-first
    token layout from a sequence-first one)."""
    probe_x = x[:2]
    batch = probe_x.shape[0]
    infos = probe_layers(model, probe_x)
    by_module = {id(i.module): i for i in infos}
    if target_layer is not None:
        if isinstance(target_layer, nn.Module):
            module = target_layer
            name = next((n for n, m in model.named_modules() if m is module), None)
            if name is None:
                raise MlvizError("the target layer given is not a submodule of the model")
        else:
            try:
                name, module = resolve_layer(model, str(target_layer))
            except KeyError:
                raise MlvizError(f"unknown layer '{target_layer}' in {type(model).__name__}; candidate layers "
                                 f"(last first): {_candidates_text(infos, batch)}") from None
        info = by_module.get(id(module))
        if info is None:
            raise MlvizError(f"layer '{name}' does not run in the model's forward pass; candidate layers "
                             f"(last first): {_candidates_text(infos, batch)}")
        if info.calls > 1:
            raise MlvizError(f"layer '{name}' runs {info.calls} times per forward pass (shared weights), so its "
                             f"activations do not map to one place; choose another: {_candidates_text(infos, batch)}")
        kind = spatial_kind(info.shape)
        if kind:
            return TargetLayer(name, module, kind, info.shape, None, "named")
        tok = _token_target(info, infos, probe_x, batch, grid, prefix_tokens, "named")
        if tok is not None:
            return tok
        raise MlvizError(f"layer '{name}' has output shape {tuple(info.shape)}, with no spatial extent or token "
                         f"grid to map back onto the image; candidate layers (last first): "
                         f"{_candidates_text(infos, batch)}")

    convs = [i for i in infos if is_conv(i.module) and spatial_kind(i.shape) and i.calls == 1]
    last_conv = convs[-1] if convs else None
    after = last_conv.order if last_conv else -1
    attention = [i for i in infos if is_attention(i.module)]
    token_infos = [i for i in infos if i.order > after and i.calls == 1 and is_token_norm(i.module)]
    if attention:  # the last block's norm: the last token norm that feeds the last attention layer
        before_last = [i for i in token_infos if i.order < attention[-1].order]
        token_infos = before_last or token_infos
        how = "auto: the norm before the last attention layer (last block's norm)"
    else:
        how = "auto: last token norm with gradient"
    tokens = [t for t in (_token_target(i, infos, probe_x, batch, grid, prefix_tokens, how) for i in token_infos)
              if t is not None]
    if tokens:
        reach = _gradient_reaches(model, probe_x, tokens)
        usable = [t for t, r in zip(tokens, reach, strict=True) if r]
        if usable:
            return usable[-1]
    if last_conv is not None:
        return TargetLayer(last_conv.name, last_conv.module, spatial_kind(last_conv.shape), last_conv.shape, None,
                           "auto: last convolution with a spatial output")
    raise MlvizError(f"no layer to compute a CAM on in {type(model).__name__}: no Conv2d/Conv3d with a spatial "
                     f"output and no transformer token layer; candidate layers (last first): "
                     f"{_candidates_text(infos, batch)}; name one with target_layer=..., or {ALTERNATIVES}")
