"""What a model's output means for attribution: heads, classes, binary single logits, target scores.

Supported outputs: (B, classes) multi-class logits; (B,) or (B, 1) a binary single logit; (B, heads,
classes) multi-output (a head with one class is a binary logit); a tuple/list of per-head tensors; a dict
or an object with `.logits`. Every head is reduced to `(B, C)` logits or a `(B,)` binary logit, and the
score attributed for class c is the logit (for a binary logit: +logit for class 1, -logit for class 0,
as pytorch_grad_cam's BinaryClassifierOutputTarget does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mlviz.attribution.hooks import tensors_of
from mlviz.errors import MlvizError


@dataclass(frozen=True)
class OutputSpec:
    kind: str  # "multiclass" | "binary" | "multioutput"
    container: str  # "tensor3d" (B, H, C) | "tensor" | "sequence"
    n_classes: tuple[int, ...]  # per head; 2 for a binary single logit
    binary: tuple[bool, ...]

    @property
    def n_heads(self) -> int:
        return len(self.n_classes)


def describe_output(output, batch: int) -> OutputSpec:
    tensors = tensors_of(output)
    if not tensors:
        raise MlvizError(f"the model returned {type(output).__name__}, not logits; attribution needs a tensor "
                         "(B, classes), (B,), (B, heads, classes) or a tuple of per-head tensors")
    for t in tensors:
        if t.ndim == 0 or t.shape[0] != batch:
            raise MlvizError(f"the model output of shape {tuple(t.shape)} has no batch dimension of {batch}; "
                             "attribution needs logits shaped (B, ...)")
    if len(tensors) == 1:
        t = tensors[0]
        if t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1):
            return OutputSpec("binary", "tensor", (2,), (True,))
        if t.ndim == 2:
            return OutputSpec("multiclass", "tensor", (int(t.shape[1]),), (False,))
        if t.ndim == 3:
            c = int(t.shape[2])
            return OutputSpec("multioutput", "tensor3d", (2 if c == 1 else c,) * int(t.shape[1]),
                              (c == 1,) * int(t.shape[1]))
        raise MlvizError(f"model output of shape {tuple(t.shape)} is not classification logits "
                         "(expected (B, classes), (B,), or (B, heads, classes))")
    classes, binary = [], []
    for t in tensors:
        if t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1):
            classes.append(2)
            binary.append(True)
        elif t.ndim == 2:
            classes.append(int(t.shape[1]))
            binary.append(False)
        else:
            raise MlvizError(f"a head of the model output has shape {tuple(t.shape)}; each head must be "
                             "(B, classes) or a (B,) logit")
    return OutputSpec("multioutput", "sequence", tuple(classes), tuple(binary))


def head_logits(output, spec: OutputSpec) -> list[torch.Tensor]:
    """Per head: (B, C) logits, or (B,) for a binary single logit."""
    tensors = tensors_of(output)
    if spec.container == "tensor3d":
        t = tensors[0]
        return [t[:, h, 0] if spec.binary[h] else t[:, h] for h in range(spec.n_heads)]
    heads = tensors if spec.container == "sequence" else tensors[:1]
    return [t.reshape(t.shape[0]) if b else t for t, b in zip(heads, spec.binary, strict=True)]


def class_score(logits: torch.Tensor, classes: torch.Tensor, binary: bool) -> torch.Tensor:
    """(B,) score of the given class per sample: the logit, or ±logit for a binary single logit."""
    if binary:
        sign = classes.to(logits.dtype) * 2 - 1
        return logits * sign
    return logits.gather(1, classes.view(-1, 1).long()).squeeze(1)


def predicted(logits: torch.Tensor, binary: bool) -> torch.Tensor:
    return (logits > 0).long() if binary else logits.argmax(1)


def probabilities(logits: torch.Tensor, classes: torch.Tensor, binary: bool) -> torch.Tensor:
    """(B,) probability of the given class (sigmoid for a binary logit, softmax otherwise)."""
    if binary:
        p1 = torch.sigmoid(logits)
        return torch.where(classes.bool(), p1, 1 - p1)
    return torch.softmax(logits, dim=1).gather(1, classes.view(-1, 1).long()).squeeze(1)


class HeadModel(nn.Module):
    """The model seen through one head: forward returns that head's (B, C) logits or (B,) binary logit,
    so pytorch_grad_cam's own targets (ClassifierOutputTarget, BinaryClassifierOutputTarget) apply."""

    def __init__(self, model: nn.Module, head: int, spec: OutputSpec):
        super().__init__()
        self.model, self.head, self.spec = model, head, spec

    def forward(self, x):
        return head_logits(self.model(x), self.spec)[self.head]


def library_targets(spec: OutputSpec, head: int, classes: np.ndarray, probability: bool = False) -> list:
    """pytorch_grad_cam targets for a HeadModel: logits (CAMs) or probabilities (faithfulness metrics)."""
    from pytorch_grad_cam.utils.model_targets import (
        BinaryClassifierOutputTarget,
        ClassifierOutputSoftmaxTarget,
        ClassifierOutputTarget,
    )

    if spec.binary[head]:
        return [BinaryProbabilityTarget(int(c)) if probability else BinaryClassifierOutputTarget(int(c))
                for c in classes]
    cls = ClassifierOutputSoftmaxTarget if probability else ClassifierOutputTarget
    return [cls(int(c)) for c in classes]


class BinaryProbabilityTarget:
    """Probability of class `category` from a binary single logit (the library has only the signed logit)."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output):
        p1 = torch.sigmoid(model_output)
        return p1 if self.category == 1 else 1 - p1
