"""The demo's data: scikit-learn's bundled handwritten digits (1,797 real 8×8 images), no download.

Three task shapes, so every later figure has something to draw:
- `multiclass`: the digit, 10 classes;
- `binary`: one digit (3) against the rest;
- `multioutput`: four heads, one per image quadrant, each classifying how much ink its quadrant holds
  (low / medium / high, by tertiles of the training set): head k depends only on quadrant k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("multiclass", "binary", "multioutput")
BINARY_DIGIT = 3
HEADS = ("top_left", "top_right", "bottom_left", "bottom_right")
INK_CLASSES = ("low", "medium", "high")


@dataclass
class DigitsTask:
    task: str
    x_train: np.ndarray  # (n, 1, 8, 8) float32 in [0, 1]
    y_train: np.ndarray  # (n,) int, or (n, heads) for multioutput
    x_val: np.ndarray
    y_val: np.ndarray
    val_ids: np.ndarray  # index into load_digits(), a stable sample id
    class_names: list[str]
    head_names: list[str]
    val_digits: np.ndarray | None = None  # the digit shown, a grouping column for slice metrics

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_heads(self) -> int:
        return len(self.head_names)


def _quadrant_ink(images: np.ndarray) -> np.ndarray:
    q = [images[:, 0, :4, :4], images[:, 0, :4, 4:], images[:, 0, 4:, :4], images[:, 0, 4:, 4:]]
    return np.stack([a.mean(axis=(1, 2)) for a in q], axis=1)


def load_task(task: str = "multiclass", val_fraction: float = 0.3, seed: int = 0) -> DigitsTask:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    ids = np.arange(len(images))
    tr, va = train_test_split(ids, test_size=val_fraction, random_state=seed, stratify=digits.target)
    if task == "multiclass":
        y = digits.target.astype(np.int64)
        classes, heads = [str(d) for d in range(10)], ["digit"]
    elif task == "binary":
        y = (digits.target == BINARY_DIGIT).astype(np.int64)
        classes, heads = [f"not {BINARY_DIGIT}", str(BINARY_DIGIT)], [f"is_{BINARY_DIGIT}"]
    else:
        ink = _quadrant_ink(images)
        edges = np.quantile(ink[tr], [1 / 3, 2 / 3], axis=0)  # per quadrant, from training images only
        y = np.stack([np.searchsorted(edges[:, k], ink[:, k], side="right") for k in range(4)], axis=1)
        y = y.astype(np.int64)
        classes, heads = list(INK_CLASSES), list(HEADS)
    return DigitsTask(task, images[tr], y[tr], images[va], y[va], ids[va], classes, heads,
                      digits.target[va].astype(np.int64))
