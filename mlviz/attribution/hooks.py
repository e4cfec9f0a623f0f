"""Context managers that leave a model as they found it: hooks removed, train/eval mode restored,
layers swapped back, even when the code inside raises."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn


@contextlib.contextmanager
def forward_hooks(pairs: Iterable[tuple[nn.Module, Callable]], *, pre: bool = False,
                  with_kwargs: bool = False) -> Iterator[None]:
    """Register forward (or forward-pre) hooks for the duration of the block; always removed."""
    handles = []
    try:
        for module, fn in pairs:
            if pre:
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=with_kwargs))
            else:
                handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate in eval mode (dropout off, batch-norm statistics frozen); restore each module's mode."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


@contextlib.contextmanager
def library_cam(cls, model: nn.Module, target_layers: list[nn.Module], **kwargs) -> Iterator[object]:
    """A pytorch_grad_cam object whose hooks are released on exit.

    Not `with cls(...) as cam`: BaseCAM.__exit__ swallows IndexError (prints it and returns True), which
    would hide a real failure; here every exception propagates and the hooks still go.
    """
    with eval_mode(model):
        cam = cls(model=model, target_layers=target_layers, **kwargs)
        try:
            yield cam
        finally:
            cam.activations_and_grads.release()


@contextlib.contextmanager
def restored_layer(model: nn.Module, layer: nn.Module, stand_in: nn.Module) -> Iterator[None]:
    """AblationCAM swaps the target layer for `stand_in` (an AblationLayer) while it runs and only swaps it
    back when it finishes; put the layer back whatever happens."""
    try:
        yield
    finally:
        for parent in model.modules():
            for name, child in list(parent._modules.items()):
                if child is stand_in:
                    parent._modules[name] = layer


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks registered on any module of the model (0 when clean)."""
    n = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            n += len(getattr(m, attr, {}) or {})
    return n


def tensors_of(output) -> list[torch.Tensor]:
    """The tensors of a model output: a tensor, a tuple/list of tensors, a dict, or an object with .logits."""
    if isinstance(output, torch.Tensor):
        return [output]
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        return [output.logits]
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return [output["logits"]]
        return [v for v in output.values() if isinstance(v, torch.Tensor)]
    if isinstance(output, (tuple, list)):
        return [v for v in output if isinstance(v, torch.Tensor)]
    return []


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` intra-op threads (None: leave as is). Small models on a busy machine run many times
    faster on one thread than on several competing ones."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
