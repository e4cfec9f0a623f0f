"""Turning a parameter column into a few labelled levels, the same way in every figure.

Booleans and categoricals keep their values (rare categories folded into "other"); numeric parameters
with few distinct values keep them; others are cut into bins, log-spaced for log-scaled parameters
(`width`) or holding equal counts (`quantile`, used by importance where balance matters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlviz.sweep import ParamSpec

OTHER = "other"
MISSING = "missing"


@dataclass
class Binned:
    codes: np.ndarray  # int level per run
    labels: list[str]

    @property
    def n_levels(self) -> int:
        return len(self.labels)


def format_number(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2g}"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}"


def fold_categories(values: pd.Series, max_levels: int = 8) -> pd.Series:
    """Keep the most frequent `max_levels - 1` values and call the rest "other" (only if needed)."""
    values = values.astype(object)
    counts = values.value_counts(dropna=True)
    if len(counts) <= max_levels:
        return values
    return values.where(values.isin(set(counts.index[: max_levels - 1])) | values.isna(), OTHER)


def bin_param(values: pd.Series, spec: ParamSpec, max_bins: int = 6, method: str = "width",
              max_levels: int | None = None) -> Binned:
    """Codes 0..k-1 with labels for one parameter column; missing values get their own level.

    Numeric parameters get at most `max_bins` bins; categoricals keep at most `max_levels` values
    (default max_bins + 2: a few more values than bins stay readable), the rarest folded into "other"."""
    values = pd.Series(values).reset_index(drop=True)
    missing = values.isna().to_numpy()
    if spec.kind in ("bool", "categorical"):
        folded = fold_categories(values.astype(object).where(~missing, None),
                                 max_levels=max_bins + 2 if max_levels is None else max_levels)
        present = folded[~missing]
        levels = sorted({str(v) for v in present if v != OTHER})
        if (present == OTHER).any():
            levels.append(OTHER)
        index = {lab: i for i, lab in enumerate(levels)}
        codes = np.array([index[str(v)] if not m else -1 for v, m in zip(folded, missing, strict=True)])
        return _with_missing(codes, levels)
    x = values.to_numpy(dtype=float)
    distinct = np.unique(x[~missing])
    if len(distinct) <= max_bins:
        codes = np.full(len(x), -1)
        codes[~missing] = np.searchsorted(distinct, x[~missing])
        return _with_missing(codes, [format_number(v) for v in distinct])
    present = x[~missing]
    if method == "quantile":
        edges = np.unique(np.quantile(present, np.linspace(0, 1, max_bins + 1)))
    elif spec.log_scale and present.min() > 0:
        edges = np.geomspace(present.min(), present.max(), max_bins + 1)
    else:
        edges = np.linspace(present.min(), present.max(), max_bins + 1)
    codes = np.full(len(x), -1)
    codes[~missing] = np.clip(np.searchsorted(edges, present, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{format_number(lo)}–{format_number(hi)}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    used = np.unique(codes[~missing])  # drop empty bins so no axis shows a level with no runs
    remap = np.full(len(labels), -1)
    remap[used] = np.arange(len(used))
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return _with_missing(codes, [labels[i] for i in used])


def _with_missing(codes: np.ndarray, labels: list[str]) -> Binned:
    codes = np.asarray(codes, dtype=int)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels = [*labels, MISSING]
    return Binned(codes, labels)
