"""Tasks whose evidence is known, and tiny models to train on them in seconds: the tests' check that an
attribution method points where the evidence is.

- `patch_task`: 16×16 noise with one 4×4 pattern (horizontal bars / vertical bars / ring, the class)
  placed at a random position inside a random quadrant; the evidence is that quadrant.
- `quadrant_task`: four outputs, output k says whether quadrant k holds a bright square (head k depends
  only on quadrant k).
- `video_task`: clips of T frames of noise; the pattern appears in one frame only (or, with presence=True,
  a ring in one frame or none at all: the label).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


def _pattern(kind: int) -> np.ndarray:
    p = np.zeros((4, 4), np.float32)
    if kind == 0:
        p[::2, :] = 1
    elif kind == 1:
        p[:, ::2] = 1
    else:
        p[:] = 1
        p[1:3, 1:3] = 0
    return p


def _place(img: np.ndarray, q: int, patch: np.ndarray, rng, size: int) -> None:
    half = size // 2
    r0 = (q // 2) * half + rng.integers(0, half - 3)
    c0 = (q % 2) * half + rng.integers(0, half - 3)
    img[r0:r0 + 4, c0:c0 + 4] += patch


def patch_task(n: int, seed: int = 0, n_classes: int = 3, size: int = 16, noise: float = 0.15):
    """(x (n, 1, size, size) float32, y (n,), quadrant (n,))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, noise, (n, 1, size, size)).astype(np.float32)
    y = rng.integers(0, n_classes, n)
    q = rng.integers(0, 4, n)
    for i in range(n):
        _place(x[i, 0], q[i], _pattern(int(y[i])), rng, size)
    return x, y.astype(np.int64), q


def quadrant_task(n: int, seed: int = 0, size: int = 16, noise: float = 0.15):
    """(x (n, 1, size, size), y (n, 4) in {0, 1}): y[:, k] = a bright square lies in quadrant k."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, noise, (n, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 2, (n, 4))
    for i in range(n):
        for k in range(4):
            if y[i, k]:
                _place(x[i, 0], k, np.ones((4, 4), np.float32), rng, size)
    return x, y.astype(np.int64)


def video_task(n: int, seed: int = 0, frames: int = 4, size: int = 16, n_classes: int = 3, noise: float = 0.15,
               presence: bool = False):
    """(x (n, 1, T, size, size), y (n,), frame holding the pattern (n,), quadrant (n,)).

    presence=True: y = 1 when a ring lies in that frame, 0 for clips of noise only."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, noise, (n, 1, frames, size, size)).astype(np.float32)
    y = rng.integers(0, 2 if presence else n_classes, n)
    t = rng.integers(0, frames, n)
    q = rng.integers(0, 4, n)
    for i in range(n):
        if presence and y[i] == 0:
            continue
        _place(x[i, 0, t[i]], q[i], _pattern(2 if presence else int(y[i])), rng, size)
    return x, y.astype(np.int64), t, q


def quadrant_mass(maps: np.ndarray) -> np.ndarray:
    """(..., H, W) maps → (..., 4) share of each map's mass per quadrant."""
    h, w = maps.shape[-2:]
    qs = [maps[..., :h // 2, :w // 2], maps[..., :h // 2, w // 2:], maps[..., h // 2:, :w // 2],
          maps[..., h // 2:, w // 2:]]
    mass = np.stack([q.sum(axis=(-2, -1)) for q in qs], axis=-1)
    return mass / (mass.sum(axis=-1, keepdims=True) + 1e-12)


class TinyCNN(nn.Module):
    """GAP CNN: (B, classes), a (B,) binary logit, or (B, heads, classes). `coords` adds two coordinate
    channels so that a GAP head can tell quadrants apart (as padding does in deeper nets)."""

    def __init__(self, n_classes: int = 3, n_heads: int = 1, binary: bool = False, coords: bool = False,
                 in_channels: int = 1, width: int = 16):
        super().__init__()
        self.coords, self.n_heads, self.n_classes, self.binary = coords, n_heads, n_classes, binary
        c_in = in_channels + (2 if coords else 0)
        self.features = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, 1 if binary else n_heads * n_classes)

    def forward(self, x):
        if self.coords:
            b, _, h, w = x.shape
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device),
                                    torch.linspace(-1, 1, w, device=x.device), indexing="ij")
            x = torch.cat([x, torch.stack([yy, xx]).expand(b, -1, -1, -1)], 1)
        out = self.head(self.features(x).mean((2, 3)))
        if self.binary:
            return out.squeeze(1)
        return out.view(-1, self.n_heads, self.n_classes) if self.n_heads > 1 else out


class FlatHeadCNN(nn.Module):
    """Convolutions then a flattening linear head per output: position-aware without pooling."""

    def __init__(self, n_heads: int = 4, n_classes: int = 2, size: int = 16):
        super().__init__()
        self.n_heads, self.n_classes = n_heads, n_classes
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16 * (size // 2) ** 2, n_heads * n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1)).view(-1, self.n_heads, self.n_classes)


class TupleHeads(nn.Module):
    """The same trunk with a tuple of per-head outputs, heads of different sizes allowed."""

    def __init__(self, classes=(2, 3)):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(8, c) for c in classes)

    def forward(self, x):
        z = self.features(x).mean((2, 3))
        return tuple(h(z) for h in self.heads)


class QKVAttention(nn.Module):
    """timm-style attention: one qkv linear layer, `num_heads`, `scale`, fused softmax attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TinyBlock(nn.Module):
    def __init__(self, dim: int, heads: int, attn: str = "mha"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True) if attn == "mha" else QKVAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        a = self.attn(h, h, h, need_weights=False)[0] if isinstance(self.attn, nn.MultiheadAttention) else self.attn(h)
        x = x + a
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A small ViT: patch embedding (a strided conv, or unfold + linear with no conv at all), optional CLS
    token, pre-norm blocks (nn.MultiheadAttention or timm-style qkv attention), final norm, linear head.
    `size` is an int or (height, width)."""

    def __init__(self, n_classes: int = 3, size=16, patch: int = 4, dim: int = 32, depth: int = 2,
                 heads: int = 2, cls_token: bool = True, in_channels: int = 1, embed: str = "conv",
                 attn: str = "mha"):
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else size
        self.patch = patch
        if embed == "conv":
            self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        else:
            self.patch_embed = nn.Linear(in_channels * patch * patch, dim)
        n = (h // patch) * (w // patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos = nn.Parameter(torch.randn(1, n + (1 if cls_token else 0), dim) * 0.02)
        self.blocks = nn.Sequential(*[TinyBlock(dim, heads, attn) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        if isinstance(self.patch_embed, nn.Conv2d):
            t = self.patch_embed(x).flatten(2).transpose(1, 2)
        else:
            t = self.patch_embed(nn.functional.unfold(x, self.patch, stride=self.patch).transpose(1, 2))
        if self.cls_token is not None:
            t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1)
        t = self.norm(self.blocks(t + self.pos))
        return self.head(t[:, 0] if self.cls_token is not None else t.mean(1))


class TinyVideoCNN(nn.Module):
    """3-D CNN on (B, C, T, H, W) clips."""

    def __init__(self, n_classes: int = 3, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool3d((1, 2, 2)),
                                      nn.Conv3d(width, 2 * width, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU())
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3, 4)))


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 8, lr: float = 3e-3, batch: int = 64,
        seed: int = 0) -> float:
    """Train with Adam; returns training accuracy. Binary (B,) outputs use BCE, others cross-entropy."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            loss = _loss(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return accuracy(model(xt), yt)


def _loss(out, y):
    if isinstance(out, tuple):
        return sum(nn.functional.cross_entropy(o, y[:, k]) for k, o in enumerate(out))
    if out.ndim == 1:
        return nn.functional.binary_cross_entropy_with_logits(out, y.float())
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def accuracy(out, y) -> float:
    if isinstance(out, tuple):
        return float(np.mean([(o.argmax(1) == y[:, k]).float().mean().item() for k, o in enumerate(out)]))
    if out.ndim == 1:
        return float(((out > 0).long() == y).float().mean())
    return float((out.argmax(-1) == y).float().mean())
