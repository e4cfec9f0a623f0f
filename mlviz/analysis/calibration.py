"""Calibration: reliability diagrams and calibration errors, each with a bootstrap interval.

What is compared (the "confidence" against the "outcome"):

- binary: the positive-class probability against the label (the usual reliability diagram; torchmetrics'
  `binary_calibration_error`);
- multi-class: the top-label probability (the largest) against whether that label is right (torchmetrics'
  `multiclass_calibration_error`); classwise ECE compares each class's probability with (label == class);
- multi-output: each head on its own, as above.

Equal-width bins follow torchmetrics exactly: edges e_k = k / n_bins (k = 0..n_bins); a confidence c is in
bin k when e_k <= c < e_{k+1} (left-closed, right-open: `torch.bucketize(c, edges, right=True) - 1`), and a
confidence of exactly 1.0 lands in an extra bin [1, 1] of its own (torchmetrics makes n_bins + 1 bins).
Multi-class top-label confidences are binned in float32, as torchmetrics casts them. The one place the two
can differ is a confidence within one float rounding step of an interior edge (torch builds the edges with
its own `linspace`, whose last bit depends on the CPU's vector width; here they are k / n_bins correctly
rounded). ECE = Σ_b (n_b / n) |outcome_b − confidence_b|; empty bins contribute nothing. MCE = the largest
|outcome_b − confidence_b| over non-empty equal-width bins (torchmetrics' norm="max").

Equal-mass bins: inner edges at the k / n_bins quantiles of the confidences (numpy's linear quantile),
bins [e_k, e_{k+1}), so equal confidences always share a bin (heavy ties leave some bins empty).

Brier score: scikit-learn's `brier_score_loss` (multi-class: the sum over classes of the squared error).
NLL: scikit-learn's `log_loss` (probabilities clipped to [eps, 1 − eps], eps of float64).

Intervals: percentile bootstrap over resampled samples, with each sample's bin fixed at its full-sample
bin (equal-mass edges are not re-estimated per resample); over resampled whole groups when the rows are
not independent (`Predictions.group_column`, see `diagnostics.resample_counts`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss

from mlviz.analysis import NotApplicable
from mlviz.analysis.diagnostics import bootstrap_unit, interval, resample_counts
from mlviz.analysis.predictions import HeadView, Predictions

EPS = np.finfo(np.float64).eps
METRICS = ("ece", "ece_equal_mass", "mce", "classwise_ece", "brier", "nll")


def equal_width_bins(conf: np.ndarray, n_bins: int, float32: bool = False) -> np.ndarray:
    """Bin index 0..n_bins of each confidence (n_bins is the extra [1, 1] bin), as torchmetrics bins."""
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    c = np.asarray(conf)
    if float32:
        c, edges = c.astype(np.float32), edges.astype(np.float32)
    return np.searchsorted(edges, c, side="right") - 1


def equal_mass_bins(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin index 0..n_bins-1, edges) with inner edges at the confidences' k/n_bins quantiles."""
    inner = np.quantile(conf, np.arange(1, n_bins) / n_bins)
    return np.searchsorted(inner, conf, side="right"), np.r_[float(np.min(conf)), inner, float(np.max(conf))]


def calibration_error(conf: np.ndarray, outcome: np.ndarray, idx: np.ndarray, n_slots: int) -> tuple[float, float]:
    """(ECE, MCE) of confidences against outcomes for a given bin assignment."""
    cnt = np.bincount(idx, minlength=n_slots).astype(float)
    sc = np.bincount(idx, weights=conf, minlength=n_slots)
    so = np.bincount(idx, weights=outcome.astype(float), minlength=n_slots)
    ece = float(np.abs(so - sc).sum() / cnt.sum())
    nz = cnt > 0
    mce = float(np.max(np.abs(so[nz] - sc[nz]) / cnt[nz])) if nz.any() else 0.0
    return ece, mce


def expected_calibration_error(conf, outcome, n_bins: int = 15, float32: bool = False) -> float:
    """Equal-width ECE (norm l1), as torchmetrics computes it."""
    conf = np.asarray(conf, dtype=float)
    return calibration_error(conf, np.asarray(outcome), equal_width_bins(conf, n_bins, float32), n_bins + 1)[0]


@dataclass
class Calibration:
    """Reliability data per head (per-bin counts, mean confidence, observed frequency) and the calibration
    metrics with their bootstrap intervals."""

    task: str
    heads: list[str]
    targets: dict[str, str]  # head → what is compared ("positive class", "top label")
    n_bins: int
    bins: pd.DataFrame  # head, target, strategy, bin, lo, hi, count, confidence, observed, gap
    metrics: pd.DataFrame  # head, metric, value, low, high
    n_boot: int
    level: float
    convention: str = ("equal-width bins [k/n, (k+1)/n), a confidence of exactly 1.0 in its own bin [1, 1] "
                       "(as torchmetrics); equal-mass bins at the confidences' quantiles; "
                       "intervals: bootstrap with each sample's bin fixed")
    bootstrap_unit: str = "samples"  # "groups": whole groups of `group_column` were resampled
    group_column: str | None = None
    n_groups: int | None = None


@dataclass
class _Target:
    name: str  # "positive class", "top label", "class <c>"
    conf: np.ndarray
    outcome: np.ndarray
    float32: bool = False


def calibration_targets(head: HeadView) -> tuple[_Target, list[_Target]]:
    if head.kind == "binary":
        p, y = head.scores.astype(float), head.y.astype(float)
        return _Target("positive class", p, y), [_Target(f"class {head.class_names[0]}", 1.0 - p, 1.0 - y),
                      _Target(f"class {head.class_names[1]}", p, y)]
    P = head.scores.astype(float)
    top = np.argmax(P, axis=1)
    return (_Target("top label", P[np.arange(len(P)), top], (top == head.y).astype(float), float32=True),
            [_Target(f"class {c}", P[:, k], (head.y == k).astype(float))
             for k, c in enumerate(head.class_names)])


def per_sample_losses(head: HeadView) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample Brier and NLL terms (their means are scikit-learn's brier_score_loss and log_loss)."""
    if head.kind == "binary":
        p, y = head.scores.astype(float), head.y.astype(float)
        brier = (p - y) ** 2
        p_true = np.where(y == 1, p, 1.0 - p)
    else:
        P = head.scores.astype(float)
        onehot = np.eye(P.shape[1])[head.y]
        brier = ((P - onehot) ** 2).sum(axis=1)
        p_true = P[np.arange(len(P)), head.y]
    return brier, -np.log(np.clip(p_true, EPS, 1 - EPS))


def _sklearn_point(head: HeadView) -> tuple[float, float]:
    with warnings.catch_warnings():  # rows sum to 1 within our 1e-3 check; sklearn warns beyond 1.5e-8
        warnings.simplefilter("ignore", UserWarning)
        labels = [0, 1] if head.kind == "binary" else list(range(len(head.class_names)))
        return (float(brier_score_loss(head.y, head.scores, labels=labels)),
                float(log_loss(head.y, head.scores, labels=labels)))


def _bin_rows(head: str, t: _Target, strategy: str, idx: np.ndarray, n_slots: int, edges: np.ndarray) -> list[dict]:
    cnt = np.bincount(idx, minlength=n_slots)
    sc = np.bincount(idx, weights=t.conf, minlength=n_slots)
    so = np.bincount(idx, weights=t.outcome, minlength=n_slots)
    rows = []
    for b in range(n_slots):
        if strategy == "equal_width" and b == n_slots - 1 and cnt[b] == 0:
            continue  # the [1, 1] bin only when a confidence is exactly 1
        lo = float(edges[b]) if b < len(edges) else 1.0
        hi = float(edges[b + 1]) if b + 1 < len(edges) else 1.0
        c = int(cnt[b])
        conf = float(sc[b] / c) if c else None
        obs = float(so[b] / c) if c else None
        rows.append({"head": head, "target": t.name, "strategy": strategy, "bin": b, "lo": lo, "hi": hi, "count": c,
                     "confidence": conf, "observed": obs, "gap": None if c == 0 else obs - conf})
    return rows


def _onehot(idx: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    """Dense n × width matrix holding values[i] in column idx[i] (so w @ it sums values per bin)."""
    out = np.zeros((len(idx), width))
    out[np.arange(len(idx)), idx] = values
    return out


MAX_DENSE_BYTES = 256 * 2**20


def calibration_analysis(preds: Predictions, n_bins: int = 15, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> Calibration:
    if preds.task == "regression":
        raise NotApplicable("calibration is for classifiers; these are regression predictions")
    if not preds.probabilities:
        raise NotApplicable("the scores are not probabilities (they leave [0, 1]), so calibration does not apply")
    bins, metrics, targets = [], [], {}
    for head in preds.heads():
        main, classwise = calibration_targets(head)
        targets[head.name] = main.name
        ew = equal_width_bins(main.conf, n_bins, main.float32)
        em, em_edges = equal_mass_bins(main.conf, n_bins)
        ew_edges = np.arange(n_bins + 1) / n_bins
        bins += _bin_rows(head.name, main, "equal_width", ew, n_bins + 1, ew_edges)
        bins += _bin_rows(head.name, main, "equal_mass", em, n_bins, em_edges)
        cw_idx = [equal_width_bins(t.conf, n_bins) for t in classwise]
        for t, idx in zip(classwise, cw_idx, strict=True):
            bins += _bin_rows(head.name, t, "equal_width", idx, n_bins + 1, ew_edges)
        ece, mce = calibration_error(main.conf, main.outcome, ew, n_bins + 1)
        ece_m, _ = calibration_error(main.conf, main.outcome, em, n_bins)
        cw = float(np.mean([calibration_error(t.conf, t.outcome, i, n_bins + 1)[0]
                            for t, i in zip(classwise, cw_idx, strict=True)]))
        brier, nll = _sklearn_point(head)
        point = {"ece": ece, "ece_equal_mass": ece_m, "mce": mce, "classwise_ece": cw, "brier": brier, "nll": nll}
        boot = bootstrap_calibration(main, classwise, ew, em, cw_idx, n_bins, head, n_boot, seed,
                                     groups=preds.groups) if n_boot and len(main.conf) > 1 else {}
        for name in METRICS:
            lo, hi = interval(boot[name], level) if name in boot else (None, None)
            metrics.append({"head": head.name, "metric": name, "value": point[name], "low": lo, "high": hi})
    return Calibration(preds.task, [h.name for h in preds.heads()], targets, n_bins, pd.DataFrame(bins),
                       pd.DataFrame(metrics), n_boot, level, **bootstrap_unit(preds))


def bootstrap_calibration(main: _Target, classwise: list[_Target], ew, em, cw_idx, n_bins, head, n_boot, seed,
                          groups: np.ndarray | None = None) -> dict:
    """All six metrics on the same resamples; per-bin sums are one matrix product per chunk of resamples.
    `groups`: each row's group code, to resample whole groups (see `resample_counts`)."""
    W = n_bins + 1
    n = len(main.conf)
    diff = main.outcome - main.conf
    brier, nll = per_sample_losses(head)
    # columns: equal-width counts | equal-width Σ(outcome − confidence) | equal-mass Σ(...) | Brier | NLL
    # stored transposed: (columns × n) @ (n × resamples) is several times faster in OpenBLAS than w @ dense
    dense = np.ascontiguousarray(np.hstack([_onehot(ew, np.ones(n), W), _onehot(ew, diff, W),
                                            _onehot(em, diff, n_bins), brier[:, None], nll[:, None]]).T)
    keep = n * W * len(classwise) * 8 <= MAX_DENSE_BYTES
    cw_mats = [_onehot(i, t.outcome - t.conf, W).T.copy() for t, i in zip(classwise, cw_idx, strict=True)] \
        if keep else None
    out: dict[str, list] = {m: [] for m in METRICS}
    for w in resample_counts(n, n_boot, seed, groups=groups):
        N = w.sum(axis=1)
        sums = (dense @ w.T).T
        c, d = sums[:, :W], sums[:, W:2 * W]
        out["ece"].append(np.abs(d).sum(axis=1) / N)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mce"].append(np.where(c > 0, np.abs(d) / np.where(c > 0, c, 1), 0.0).max(axis=1))
        out["ece_equal_mass"].append(np.abs(sums[:, 2 * W:2 * W + n_bins]).sum(axis=1) / N)
        out["brier"].append(sums[:, -2] / N)
        out["nll"].append(sums[:, -1] / N)
        mats = cw_mats if keep else (_onehot(i, t.outcome - t.conf, W).T for t, i in zip(classwise, cw_idx, strict=True))
        out["classwise_ece"].append(np.mean([np.abs(m @ w.T).sum(axis=0) / N for m in mats], axis=0))
    return {k: np.concatenate(v) for k, v in out.items()}
