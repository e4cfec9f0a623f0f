"""A small CNN for 8×8 digits whose shape follows the task: (B, 10), (B,) logits, or (B, heads, classes).

`build_model(config)` is also the factory named as `mlviz.demo.model:build_model` next to the state
dicts the demo logs, so a model can be rebuilt from weights alone (`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class DigitsCNN(nn.Module):
    def __init__(self, channels: int = 16, depth: int = 2, dropout: float = 0.1, activation: str = "relu",
                 n_classes: int = 10, n_heads: int = 1, binary: bool = False):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers, c_in = [], 1
        for i in range(depth):
            c_out = channels * (2 if i >= 1 else 1)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), act()]
            if i == 0:
                layers.append(nn.MaxPool2d(2))  # 8×8 → 4×4; later blocks keep 4×4 for the CAMs
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.binary, self.n_heads, self.n_classes = binary, n_heads, n_classes
        self.head = nn.Linear(c_in, 1 if binary else n_heads * n_classes)
        self.embedding_dim = c_in

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (after pooling), the demo's embeddings."""
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.dropout(self.embed(x)))
        if self.binary:
            return out.squeeze(1)
        if self.n_heads > 1:
            return out.view(-1, self.n_heads, self.n_classes)
        return out


def build_model(config: dict) -> DigitsCNN:
    """Factory: the architecture from a configuration dict (hyperparameters plus task shape)."""
    return DigitsCNN(
        channels=int(config.get("channels", 16)),
        depth=int(config.get("depth", 2)),
        dropout=float(config.get("dropout", 0.1)),
        activation=str(config.get("activation", "relu")),
        n_classes=int(config.get("n_classes", 10)),
        n_heads=int(config.get("n_heads", 1)),
        binary=bool(config.get("binary", False)),
    )
