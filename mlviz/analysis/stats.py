"""Small statistics shared by the analyses: bootstrap weights and intervals, JSON conversion."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resample counts (n_boot × n): row b says how often each item is drawn in resample b.

    Working with counts instead of index arrays lets a whole bootstrap run as a few matrix products.
    """
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - level) / 2.0
    return np.nanquantile(samples, alpha, axis=axis), np.nanquantile(samples, 1.0 - alpha, axis=axis)


def bootstrap_mean_interval(values: np.ndarray, n_boot: int, rng: np.random.Generator,
                            level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of the mean; None when fewer than two values make it meaningless."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None, None
    draws = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = percentile_interval(draws, level)
    return float(lo), float(hi)


def to_jsonable(obj):
    """Plain JSON data from dataclasses, numpy and pandas objects; NaN and inf become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, (pd.Series, np.ndarray)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def resamples_phrase(result, resamples: str = "bootstrap resamples") -> str:
    """'N bootstrap resamples', or 'N bootstrap resamples of G groups (column)' when a result's bootstrap
    resampled whole groups (its `bootstrap_unit`), for figure titles."""
    n = getattr(result, "n_boot", 0)
    if getattr(result, "bootstrap_unit", "samples") == "groups":
        return f"{n} {resamples} of {getattr(result, 'n_groups', None)} groups ({getattr(result, 'group_column', None)})"
    return f"{n} {resamples}"
