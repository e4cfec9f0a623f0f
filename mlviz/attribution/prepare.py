"""Shared first step of every attribution method: check the images, run the model once, choose heads and
target classes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mlviz.attribution.hooks import eval_mode
from mlviz.attribution.outputs import OutputSpec, describe_output, head_logits, predicted, probabilities
from mlviz.errors import MlvizError
from mlviz.text import first_line as one_line


def model_device(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def as_images(images) -> torch.Tensor:
    """A float tensor (N, C, H, W) or (N, C, T, H, W), or MlvizError saying what is wrong with the shape."""
    if isinstance(images, (list, tuple)):
        try:
            images = np.stack([np.asarray(i) for i in images])
        except ValueError as exc:
            raise MlvizError(f"images differ in shape and cannot be stacked into a batch: {one_line(exc)}") from None
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        if images.dtype == object or not np.issubdtype(images.dtype, np.number):
            raise MlvizError(f"images must be numeric arrays, got dtype {images.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    elif isinstance(images, torch.Tensor):
        t = images.detach()
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    else:
        raise MlvizError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    shape = tuple(t.shape)
    if t.ndim not in (4, 5):
        hint = {3: " (one image? add a batch axis: images[None]; grey images without a channel axis? "
                   "images[:, None])", 2: " (one grey image? use images[None, None])"}.get(t.ndim, "")
        raise MlvizError(f"images must be a batch shaped (N, C, H, W), or (N, C, T, H, W) for video; got shape "
                         f"{shape}{hint}")
    if shape[0] == 0:
        raise MlvizError("no images given (the batch is empty)")
    if t.ndim == 4 and shape[1] > 4 and shape[3] in (1, 3, 4):
        raise MlvizError(f"images of shape {shape} look channels-last (N, H, W, C); attribution needs (N, C, H, W): "
                         "use images.transpose(0, 3, 1, 2)")
    if not torch.isfinite(t).all():
        raise MlvizError("images contain NaN or infinite values")
    return t


def _expected_channels(model: nn.Module) -> int | None:
    convs = (m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)))
    return next((m.in_channels for m in convs), None)


def input_error(model: nn.Module, x: torch.Tensor, exc: BaseException) -> MlvizError:
    want = _expected_channels(model)
    hint = ""
    if want is not None and x.shape[1] != want:
        hint = f" (the model's first convolution expects {want} channel(s), the images have {x.shape[1]})"
    return MlvizError(f"images of shape {tuple(x.shape)} do not fit {type(model).__name__}: {one_line(exc)}{hint}")


def forward(model: nn.Module, x: torch.Tensor):
    """model(x), with a shape mismatch turned into a one-line MlvizError."""
    try:
        return model(x)
    except MlvizError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
        raise input_error(model, x, exc) from None


@dataclass
class Prepared:
    x: torch.Tensor  # on the model's device
    spec: OutputSpec
    logits: list[torch.Tensor]  # per head (of the model), (N, C) or (N,) on CPU
    heads: list[int]
    head_names: list[str]
    classes: np.ndarray  # (N, len(heads)) target class per sample and head
    target_mode: str
    predicted: np.ndarray
    probability: np.ndarray
    target_probability: np.ndarray
    output_names: list[str]

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def default_head_names(spec: OutputSpec) -> list[str]:
    return ["output"] if spec.n_heads == 1 else [f"output{h}" for h in range(spec.n_heads)]


def _select_heads(spec: OutputSpec, heads, names: list[str]) -> list[int]:
    if heads is None:
        return list(range(spec.n_heads))
    if isinstance(heads, (int, str, np.integer)):
        heads = [heads]
    out = []
    for h in heads:
        if isinstance(h, str):
            if h not in names:
                raise MlvizError(f"unknown output '{h}'; the model's outputs are: {', '.join(names)}")
            out.append(names.index(h))
        else:
            h = int(h)
            if not -spec.n_heads <= h < spec.n_heads:
                raise MlvizError(f"output index {h} out of range; the model has {spec.n_heads} output(s)")
            out.append(h % spec.n_heads)
    return out


def _labels_matrix(labels, n: int, spec: OutputSpec) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 1 and spec.n_heads == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape != (n, spec.n_heads):
        raise MlvizError(f"labels of shape {y.shape} do not match {n} images × {spec.n_heads} output(s)")
    return y.astype(np.int64)


def resolve_heads(spec: OutputSpec, heads, head_names) -> tuple[list[int], list[str]]:
    """(chosen head indices, names of every output)."""
    names = list(head_names) if head_names is not None else default_head_names(spec)
    if len(names) != spec.n_heads:
        raise MlvizError(f"{len(names)} output name(s) given ({', '.join(map(str, names))}) but the model has "
                         f"{spec.n_heads} output(s)")
    return _select_heads(spec, heads, names), names


def target_classes(per_head: list[torch.Tensor], spec: OutputSpec, chosen: list[int], names: list[str], targets,
                   labels, rows: slice, n_total: int) -> tuple[np.ndarray, str]:
    """(classes (rows, len(chosen)), mode) for the rows `rows` of the N images, from their logits."""
    m = len(range(*rows.indices(n_total)))
    if isinstance(targets, str) and targets == "predicted":
        classes = np.stack([predicted(per_head[h], spec.binary[h]).cpu().numpy() for h in chosen], axis=1)
        mode = "predicted"
    elif isinstance(targets, str) and targets == "true":
        if labels is None:
            raise MlvizError("targets='true' needs the labels")
        classes, mode = _labels_matrix(labels, n_total, spec)[rows][:, chosen], "true"
    elif isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        classes, mode = np.full((m, len(chosen)), int(targets), dtype=np.int64), f"class {int(targets)}"
    elif isinstance(targets, (np.ndarray, list, tuple)):
        t = np.asarray(targets, dtype=np.int64)
        t = t[:, None] if t.ndim == 1 else t
        if t.shape == (n_total, spec.n_heads):
            t = t[:, chosen]
        if t.shape != (n_total, len(chosen)):
            raise MlvizError(f"targets of shape {t.shape} do not match {n_total} images × {len(chosen)} output(s)")
        classes, mode = t[rows], "given"
    else:
        raise MlvizError(f"targets must be 'predicted', 'true', a class index or an array of classes, got {targets!r}")
    for j, h in enumerate(chosen):
        c = spec.n_classes[h]
        bad = (classes[:, j] < 0) | (classes[:, j] >= c)
        if bad.any():
            raise MlvizError(f"target class {int(classes[bad, j][0])} is out of range for output '{names[h]}' "
                             f"({c} classes)")
    return classes.astype(np.int64), mode


def prepared_from_logits(x: torch.Tensor, spec: OutputSpec, per_head: list[torch.Tensor], targets="predicted",
                         labels=None, heads=None, head_names=None) -> Prepared:
    """Prepared from the logits of every image (per head, (N, C) or (N,), on CPU)."""
    chosen, names = resolve_heads(spec, heads, head_names)
    n = x.shape[0]
    classes, mode = target_classes(per_head, spec, chosen, names, targets, labels, slice(0, n), n)
    pred = np.stack([predicted(per_head[h], spec.binary[h]).numpy() for h in chosen], axis=1)
    prob = np.stack([probabilities(per_head[h], torch.as_tensor(pred[:, j]), spec.binary[h]).numpy()
                     for j, h in enumerate(chosen)], axis=1)
    tprob = np.stack([probabilities(per_head[h], torch.as_tensor(classes[:, j]), spec.binary[h]).numpy()
                      for j, h in enumerate(chosen)], axis=1)
    return Prepared(x, spec, per_head, chosen, [names[h] for h in chosen], classes, mode, pred, prob, tprob, names)


def prepare(model: nn.Module, images, targets="predicted", labels=None, heads=None, head_names=None,
            batch_size: int = 16) -> Prepared:
    """Check the images, run the model once over them (no gradients), choose heads and target classes."""
    x = as_images(images).to(model_device(model))
    logits: list[list[torch.Tensor]] = []
    spec = None
    with eval_mode(model), torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            out = forward(model, x[s:s + batch_size])
            if spec is None:
                spec = describe_output(out, min(batch_size, x.shape[0]))
            logits.append([t.detach().float().cpu() for t in head_logits(out, spec)])
    per_head = [torch.cat([b[h] for b in logits]) for h in range(spec.n_heads)]
    return prepared_from_logits(x, spec, per_head, targets, labels, heads, head_names)
