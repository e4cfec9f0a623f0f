"""Training and evaluating the demo CNN on CPU, with per-epoch metrics and predictions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mlviz.demo.data import DigitsTask
from mlviz.demo.model import build_model


@dataclass
class EpochResult:
    epoch: int
    metrics: dict[str, float]
    probs: np.ndarray  # (n,) binary, (n, classes), or (n, heads, classes)
    model: nn.Module | None = field(default=None, repr=False)  # the model being trained, for callbacks


@dataclass
class TrainResult:
    model: nn.Module
    config: dict
    epochs: list[EpochResult] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.epochs[-1].metrics


def model_config(params: dict, task: DigitsTask) -> dict:
    return {**params, "n_classes": task.n_classes, "n_heads": task.n_heads if task.task == "multioutput" else 1,
            "binary": task.task == "binary"}


def _loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "binary":
        return nn.functional.binary_cross_entropy_with_logits(logits, y.float())
    if task == "multioutput":
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    return nn.functional.cross_entropy(logits, y)


def _probs(task: str, logits: torch.Tensor) -> np.ndarray:
    if task == "binary":
        return torch.sigmoid(logits).numpy()
    return torch.softmax(logits, dim=-1).numpy()


def evaluate(task: DigitsTask, probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and AUC (macro one-vs-rest; averaged over heads for multi-output)."""
    from sklearn.metrics import f1_score, roc_auc_score

    if task.task == "binary":
        pred = (probs >= 0.5).astype(int)
        return {"val_accuracy": float((pred == y).mean()), "val_f1_macro": float(f1_score(y, pred, average="macro")),
                "val_auc": float(roc_auc_score(y, probs))}
    if task.task == "multioutput":
        accs, f1s, aucs = [], [], []
        for h in range(probs.shape[1]):
            pred = probs[:, h].argmax(1)
            accs.append((pred == y[:, h]).mean())
            f1s.append(f1_score(y[:, h], pred, average="macro"))
            aucs.append(roc_auc_score(y[:, h], probs[:, h], multi_class="ovr", labels=list(range(probs.shape[2]))))
        return {"val_accuracy": float(np.mean(accs)), "val_f1_macro": float(np.mean(f1s)), "val_auc": float(np.mean(aucs))}
    pred = probs.argmax(1)
    return {"val_accuracy": float((pred == y).mean()), "val_f1_macro": float(f1_score(y, pred, average="macro")),
            "val_auc": float(roc_auc_score(y, probs, multi_class="ovr", labels=list(range(probs.shape[1]))))}


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Augmentation: move each image by up to one pixel (zero-filled)."""
    dy, dx = (torch.randint(-1, 2, (2,), generator=gen)).tolist()
    out = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if dy > 0:
        out[:, :, :dy] = 0
    elif dy < 0:
        out[:, :, dy:] = 0
    if dx > 0:
        out[:, :, :, :dx] = 0
    elif dx < 0:
        out[:, :, :, dx:] = 0
    return out


def train(params: dict, task: DigitsTask, epochs: int, seed: int = 0, on_epoch=None) -> TrainResult:
    """Train with the given hyperparameters; `on_epoch(EpochResult)` is called after each epoch."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = model_config(params, task)
    model = build_model(config)
    lr, wd = float(params["learning_rate"]), float(params.get("weight_decay", 0.0))
    name = params.get("optimizer", "adam")
    if name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    elif name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    x_tr, y_tr = torch.from_numpy(task.x_train), torch.from_numpy(task.y_train)
    x_va, y_va = torch.from_numpy(task.x_val), torch.from_numpy(task.y_val)
    batch = int(params.get("batch_size", 64))
    augment = str(params.get("augment", False)).lower() == "true"
    result = TrainResult(model, config)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            xb = _shift(x_tr[idx], gen) if augment else x_tr[idx]
            opt.zero_grad()
            loss = _loss(task.task, model(xb), y_tr[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            val_loss = float(_loss(task.task, logits, y_va))
        probs = _probs(task.task, logits)
        metrics = {"train_loss": total / count, "val_loss": val_loss, **evaluate(task, probs, task.y_val)}
        metrics = {k: (v if np.isfinite(v) else float("nan")) for k, v in metrics.items()}
        result.epochs.append(EpochResult(epoch, metrics, probs, model))
        if on_epoch:
            on_epoch(result.epochs[-1])
    return result


def embeddings(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model.embed(torch.from_numpy(x)).numpy()
