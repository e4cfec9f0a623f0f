"""Diagnostics of one model's predictions: ROC, PR, thresholds, score distributions, confusion matrices,
slices, hardest samples, case galleries and regression fits. Pure functions over a `Predictions`.

Conventions (every figure's JSON repeats the ones it uses):

- a sample is predicted positive when its score is >= the threshold (scikit-learn's convention);
- the chosen threshold (`threshold="auto"`) is 0.5 when the scores are probabilities, the max-F1 threshold
  otherwise; "max_f1", "youden" or a number can be asked for;
- intervals are percentile intervals over `n_boot` bootstrap resamples of the samples (default 95%); the
  ROC band is pointwise: the percentile interval of the resampled TPR at each of 101 fixed FPR values;
- multi-class heads are shown one-vs-rest per class (plus the macro mean); multi-output models give one
  panel per head; a class or head without both positives and negatives is left out of the curves, and a
  figure none of whose panels has both is `NotApplicable`.

Bootstrap resamples are counts (how often each sample is drawn), generated in chunks so that memory stays
bounded, and the same seed gives the same resamples in every analysis. When the rows are not independent
(several per patient, subject or video: `Predictions.group_column`), whole groups are drawn with
replacement (G draws among the G groups) and each row counts as often as its group was drawn; the results
then say `bootstrap_unit="groups"`, the column and the number of groups. With one row per group this is
exactly the row bootstrap (the same draws). AUC and AP of a resample are
computed from the samples sorted once by score (tie blocks handled as scikit-learn does), so 1,000
resamples of 100,000 predictions take seconds, not the minutes of calling `roc_auc_score` 1,000 times.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_curve,
    r2_score,
    roc_auc_score,
    roc_curve,
)

from mlviz.analysis import NotApplicable
from mlviz.analysis.predictions import HeadView, Predictions
from mlviz.analysis.stats import percentile_interval
from mlviz.errors import MlvizError

MAX_CELLS = 2_000_000  # resample-count cells held at once (rows × samples), ~16 MB of float64
FPR_GRID = np.linspace(0.0, 1.0, 101)


# --------------------------------------------------------------------------- bootstrap machinery
def resample_counts(n: int, n_boot: int, seed: int = 0, max_cells: int = MAX_CELLS,
                    groups: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Bootstrap resamples as count matrices (chunk × n), chunk by chunk; the same seed, the same resamples.

    `groups`: each row's group code 0..G-1 (dense); then G groups are drawn with replacement and a row's
    count is its group's (`w_rows = w_groups[:, groups]`), so every consumer of row counts works unchanged.
    With groups 0..n-1 (one row each) the draws are the row bootstrap's, bit for bit.

    While the chunks are consumed, BLAS runs single-threaded: the products here are thin (few resamples ×
    many samples), where OpenBLAS's threads gain nothing and, on a busy machine, spin and lose up to 20×."""
    rng = np.random.default_rng(seed)
    codes = None if groups is None else np.asarray(groups, dtype=np.int64)
    if codes is not None and len(codes) != n:
        raise ValueError(f"groups has {len(codes)} codes for {n} rows")
    k = n if codes is None else (int(codes.max()) + 1 if len(codes) else 0)  # units drawn per resample
    chunk = int(max(1, min(n_boot, max_cells // max(n, k, 1))))
    with _single_threaded_blas():
        for start in range(0, n_boot, chunk):
            m = min(chunk, n_boot - start)
            idx = rng.integers(0, max(k, 1), size=(m, k), dtype=np.int32).astype(np.int64)
            idx += (np.arange(m, dtype=np.int64) * k)[:, None]
            w = np.bincount(idx.ravel(), minlength=m * k).reshape(m, k).astype(np.float64)
            yield w if codes is None else w[:, codes]


def bootstrap_unit(preds: Predictions) -> dict:
    """What a result's resamples drew: {"bootstrap_unit": "samples" | "groups", "group_column", "n_groups"}."""
    if preds.groups is None:
        return {"bootstrap_unit": "samples", "group_column": None, "n_groups": None}
    return {"bootstrap_unit": "groups", "group_column": preds.group_column, "n_groups": preds.n_groups}


def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn depends on it; without it, BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def weighted_sums(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """w (m × n) times per-sample values (n,) or (n, j) → (m,) or (m, j); (values.T @ w.T) is the fast
    orientation for OpenBLAS with few resamples and many samples."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return w @ values
    return (np.ascontiguousarray(values.T) @ w.T).T


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """Resampled means of per-sample values (n,) or (n, j): (n_boot,) or (n_boot, j); `groups`: resample
    whole groups (see `resample_counts`)."""
    values = np.asarray(values, dtype=float)
    out = []
    for w in resample_counts(len(values), n_boot, seed, groups=groups):
        num = weighted_sums(w, values)
        den = w.sum(axis=1)
        out.append(num / (den[:, None] if num.ndim == 2 else den))
    return np.concatenate(out) if out else np.zeros(0)


def interval(samples: np.ndarray, level: float) -> tuple[float | None, float | None]:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return None, None
    lo, hi = percentile_interval(samples, level)
    return float(lo), float(hi)


class RankedScores:
    """One binary problem laid out once for fast resampled AUC, AP and ROC band.

    Layout: the negatives sorted by score, then the positives sorted by score. For a resample given as
    counts in this layout, with C the running count of negatives and U that of positives:
    AUC = Σ_pos u_i · (C[below_i] + C[at_or_below_i]) / 2 / (P·N) (ties count ½, as the Mann-Whitney U);
    AP = Σ_pos u_i · precision at s_i / P with TP = P − U[below_i], FP = N − C[below_i] (scikit-learn's
    step-wise AP: each distinct score is a threshold); the ROC band takes, at each FPR on the grid, the
    highest TPR of a threshold whose FPR is not above it.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray):
        y = np.asarray(y).astype(bool)
        s = np.asarray(s, dtype=float)
        neg, pos = (i[np.argsort(s[i], kind="mergesort")] for i in (np.flatnonzero(~y), np.flatnonzero(y)))
        self.layout = np.r_[neg, pos]
        self.n_neg, self.n_pos = len(neg), len(pos)
        sn, sp = s[neg], s[pos]
        self.lo = np.searchsorted(sn, sp, side="left")  # negatives strictly below each positive
        self.hi = np.searchsorted(sn, sp, side="right")  # negatives at or below
        self.ties = bool((self.lo != self.hi).any())
        self.plo = np.searchsorted(sp, sp, side="left")  # positives strictly below each positive
        self.above = np.r_[0, np.searchsorted(sp, sn, side="right")]  # positives at or below the j-th negative

    def stats(self, w: np.ndarray, grid: np.ndarray | None = None, ap: bool = True) -> dict[str, np.ndarray]:
        """AUC, AP (and TPR on the FPR grid) of each resample; rows of w are counts in `layout` order."""
        m = len(w)
        v, u = w[:, :self.n_neg], w[:, self.n_neg:]
        C = np.zeros((m, self.n_neg + 1))
        np.cumsum(v, axis=1, out=C[:, 1:])
        if ap or grid is not None:
            U = np.zeros((m, self.n_pos + 1))
            np.cumsum(u, axis=1, out=U[:, 1:])
            P = U[:, -1]
        else:
            P = u.sum(axis=1)
        N = C[:, -1]
        ok = (P > 0) & (N > 0)
        below = C[:, self.lo]
        out = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            mid = 0.5 * (below + C[:, self.hi]) if self.ties else below
            out["auc"] = np.where(ok, np.einsum("ij,ij->i", u, mid) / (P * N), np.nan)
            if ap:
                tp = P[:, None] - U[:, self.plo]
                fp = N[:, None] - below
                prec = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
                out["ap"] = np.where(P > 0, np.einsum("ij,ij->i", u, prec) / P, np.nan)
        if grid is not None:
            band = np.full((m, len(grid)), np.nan)
            for i in np.flatnonzero(ok):
                target = (1.0 - grid) * N[i] - 1e-9 * N[i]
                j = np.searchsorted(C[i], target, side="left")
                band[i] = (P[i] - U[i, self.above[np.minimum(j, self.n_neg)]]) / P[i]
            out["tpr"] = band
        return out


_RANKING_CACHE: OrderedDict = OrderedDict()


def bootstrap_ranking(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int = 0, grid: np.ndarray | None = FPR_GRID,
                      coherent: bool = False, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Resampled AUC, AP and TPR-at-FPR-grid of one binary problem: {"auc": (B,), "ap": (B,), "tpr": (B, G)}.

    `coherent=True` draws resample b exactly as `resample_counts(n, B, seed)` does for every other metric
    (needed to average per resample, e.g. a macro AUC over classes); otherwise the counts are laid out in
    score order directly, an equally valid bootstrap that skips a gather. With `groups` (resample whole
    groups) the draws are always coherent: the group counts are expanded straight into score order.
    Results are cached per data."""
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    codes = None if groups is None else np.asarray(groups, dtype=np.int64)
    h = hashlib.blake2b(digest_size=16)
    for a in (y.astype(np.int8), s) + (() if codes is None else (codes,)):
        h.update(np.ascontiguousarray(a).tobytes())
    key = (h.hexdigest(), n_boot, seed, coherent, None if grid is None else len(grid), codes is not None)
    if key in _RANKING_CACHE:
        _RANKING_CACHE.move_to_end(key)
        return _RANKING_CACHE[key]
    ranked = RankedScores(y, s)
    parts: dict[str, list] = {}
    gather = coherent and codes is None
    for w in resample_counts(len(y), n_boot, seed, groups=None if codes is None else codes[ranked.layout]):
        for k, v in ranked.stats(w[:, ranked.layout] if gather else w, grid).items():
            parts.setdefault(k, []).append(v)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    _RANKING_CACHE[key] = out
    while len(_RANKING_CACHE) > 64:
        _RANKING_CACHE.popitem(last=False)
    return out


# --------------------------------------------------------------------------- problems and thresholds
@dataclass
class Problem:
    """One binary problem: a binary head, or one class of a multi-class head against the rest."""

    head: str
    cls: str
    y: np.ndarray  # 0/1
    s: np.ndarray
    probabilities: bool
    multiclass: bool = False  # one class of a multi-class head

    @property
    def both(self) -> bool:
        return 0 < int(self.y.sum()) < len(self.y)


def problems(head: HeadView) -> list[Problem]:
    if head.kind == "binary":
        return [Problem(head.name, head.class_names[1], head.y.astype(int), head.scores, head.probabilities)]
    return [Problem(head.name, c, (head.y == k).astype(int), head.scores[:, k], True, True)
            for k, c in enumerate(head.class_names)]


def classification_heads(preds: Predictions, what: str) -> list[HeadView]:
    if preds.task == "regression":
        raise NotApplicable(f"{what} is for classifiers; these are regression predictions (see regression_*)")
    return preds.heads()


def _two_class_problems(preds: Predictions, what: str) -> tuple[list[Problem], list[str]]:
    probs = [p for head in classification_heads(preds, what) for p in problems(head)]
    if not any(p.both for p in probs):
        raise NotApplicable(f"{what} needs both classes among the labels; "
                            f"only one class is present ({_present(preds)})")
    left = [f"{p.head + ':' if p.head else ''}{p.cls}" for p in probs if not p.both]
    return [p for p in probs if p.both], left


def _present(preds: Predictions) -> str:
    heads = preds.heads()
    names = [", ".join(class_name(head, v) for v in np.unique(head.y)) for head in heads]
    return "; ".join(f"{h.name}: {n}" if h.name else n for h, n in zip(heads, names, strict=True))


def class_name(head: HeadView, code) -> str:
    """The name of a class code (the code itself when the head names fewer classes)."""
    return head.class_names[int(code)] if int(code) < len(head.class_names) else str(code)


def counts_at(y: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """TP, FP, TN, FN at each threshold (positive when score >= threshold)."""
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    t = np.asarray(thresholds, dtype=float)
    tp = len(pos) - np.searchsorted(pos, t, side="left")
    fp = len(neg) - np.searchsorted(neg, t, side="left")
    return {"tp": tp, "fp": fp, "tn": len(neg) - fp, "fn": len(pos) - tp}


def rates(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tp, fp, tn, fn = (np.asarray(c[k], dtype=float) for k in ("tp", "fp", "tn", "fn"))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        accuracy = (tp + tn) / (tp + fp + tn + fn)
    return {"precision": precision, "recall": recall, "specificity": specificity, "f1": f1, "accuracy": accuracy}


def max_f1_point(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1, from scikit-learn's precision_recall_curve."""
    p, r, t = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p[:-1] + r[:-1] > 0, 2 * p[:-1] * r[:-1] / (p[:-1] + r[:-1]), 0.0)
    i = int(np.argmax(f1))
    return float(t[i]), float(f1[i])


def youden_point(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float, float]:
    """(threshold, J, FPR, TPR) maximising Youden's J = TPR − FPR."""
    fpr, tpr, t = roc_curve(y, s)
    j = tpr - fpr
    i = int(np.argmax(j))
    thr = float(t[i]) if np.isfinite(t[i]) else float(np.max(s))
    return thr, float(j[i]), float(fpr[i]), float(tpr[i])


def choose_threshold(y: np.ndarray, s: np.ndarray, rule="auto", probabilities: bool = True) -> tuple[float, str]:
    """The decision threshold and the rule that gave it (see the module docstring)."""
    if rule is None or rule == "auto":
        rule = "0.5" if probabilities else "max_f1"
    optimum = {"max_f1": (max_f1_point, "max F1"), "youden": (youden_point, "Youden J")}.get(str(rule))
    if optimum is not None:
        if 0 < int(np.sum(y)) < len(y):
            return optimum[0](y, s)[0], optimum[1]
        rule = "0.5" if probabilities else "median"
    if rule == "median":
        return float(np.median(s)), "median score (one class only)"
    try:
        value = float(rule)
    except (TypeError, ValueError):
        raise MlvizError(f"threshold must be auto, max_f1, youden or a number, not '{rule}'") from None
    return value, f"fixed {value:g}"


def head_threshold(head: HeadView, rule="auto") -> tuple[float | None, str]:
    if head.kind != "binary":
        return None, "arg-max class"
    return choose_threshold(head.y, head.scores, rule, head.probabilities)


def predicted_labels(head: HeadView, threshold: float | None) -> np.ndarray:
    if head.kind == "binary":
        return (head.scores >= threshold).astype(int)
    return np.argmax(head.scores, axis=1)


# --------------------------------------------------------------------------- ROC
@dataclass
class RocCurves:
    """ROC curve per binary problem, AUC with its bootstrap interval, the pointwise band, operating points."""

    task: str
    heads: list[str]
    curves: pd.DataFrame  # head, class, fpr, tpr, threshold (scikit-learn's roc_curve, drop_intermediate)
    band: pd.DataFrame  # head, class, fpr, tpr_low, tpr_high
    summary: pd.DataFrame  # one row per problem: auc and interval, Youden J and max-F1 operating points
    macro: pd.DataFrame  # multi-class heads: macro one-vs-rest AUC and its interval
    n_boot: int
    level: float
    left_out: list[str] = field(default_factory=list)
    band_kind: str = "pointwise percentile interval of the bootstrap TPR at 101 fixed FPR values"
    bootstrap_unit: str = "samples"  # "groups": whole groups of `group_column` were resampled
    group_column: str | None = None
    n_groups: int | None = None


def roc_analysis(preds: Predictions, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> RocCurves:
    probs, left = _two_class_problems(preds, "a ROC curve")
    boots = _resampled(preds, probs, n_boot, seed)
    curves, bands, rows = [], [], []
    for p, boot in zip(probs, boots, strict=True):
        fpr, tpr, thr = roc_curve(p.y, p.s)
        curves.append(pd.DataFrame({"head": p.head, "class": p.cls, "fpr": fpr, "tpr": tpr, "threshold": thr}))
        lo, hi = interval(boot.get("auc", []), level)
        if n_boot:
            blo, bhi = percentile_interval(boot["tpr"], level)
            bands.append(pd.DataFrame({"head": p.head, "class": p.cls, "fpr": FPR_GRID, "tpr_low": blo,
                                       "tpr_high": bhi}))
        yt, yj, yfpr, ytpr = youden_point(p.y, p.s)
        ft, f1 = max_f1_point(p.y, p.s)
        c = counts_at(p.y, p.s, np.array([ft]))
        rows.append({"head": p.head, "class": p.cls, "n_pos": int(p.y.sum()), "n_neg": int(len(p.y) - p.y.sum()),
                     "auc": float(roc_auc_score(p.y, p.s)), "auc_low": lo, "auc_high": hi,
                     "youden_threshold": yt, "youden_j": yj, "youden_fpr": yfpr, "youden_tpr": ytpr,
                     "f1_threshold": ft, "max_f1": f1, "f1_fpr": float(c["fp"][0] / max(c["fp"][0] + c["tn"][0], 1)),
                     "f1_tpr": float(c["tp"][0] / max(c["tp"][0] + c["fn"][0], 1))})
    summary = pd.DataFrame(rows)
    macro = _macro(preds, probs, boots, summary, "auc", level, lambda head, sub: {
        "n_classes": int(len(sub)), "n_classes_left_out": int(len(head.class_names) - len(sub))})
    return RocCurves(preds.task, [h.name for h in preds.heads()], pd.concat(curves, ignore_index=True),
                     pd.concat(bands, ignore_index=True) if bands else pd.DataFrame(), summary,
                     macro, n_boot, level, left, **bootstrap_unit(preds))


def _resampled(preds: Predictions, probs: list[Problem], n_boot: int, seed: int) -> list[dict]:
    """Each problem's resampled AUC, AP and ROC band; coherent across the classes of a multi-class head."""
    groups = preds.groups
    return [bootstrap_ranking(p.y, p.s, n_boot, seed, coherent=p.multiclass, groups=groups) if n_boot else {}
            for p in probs]


def _macro(preds: Predictions, probs: list[Problem], boots: list[dict], summary: pd.DataFrame, metric: str,
           level: float, extra) -> pd.DataFrame:
    """Per multi-class head: the mean of `metric` over its classes, its interval from the per-resample
    means, and `extra(head, its summary rows)`."""
    rows = []
    for head in preds.heads():
        sub = summary[summary["head"] == head.name]
        if head.kind != "multiclass" or sub.empty:
            continue
        classes = [b[metric] for p, b in zip(probs, boots, strict=True) if p.head == head.name and b]
        lo, hi = interval(np.nanmean(np.column_stack(classes), axis=1), level) if classes else (None, None)
        rows.append({"head": head.name, metric: float(sub[metric].mean()), f"{metric}_low": lo,
                     f"{metric}_high": hi, **extra(head, sub)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- PR
@dataclass
class PrCurves:
    """Precision-recall curve per binary problem, average precision with its interval, no-skill baseline."""

    task: str
    heads: list[str]
    curves: pd.DataFrame  # head, class, recall, precision, threshold
    summary: pd.DataFrame  # head, class, ap and interval, prevalence (the no-skill precision), max F1 point
    macro: pd.DataFrame
    n_boot: int
    level: float
    left_out: list[str] = field(default_factory=list)
    bootstrap_unit: str = "samples"  # "groups": whole groups of `group_column` were resampled
    group_column: str | None = None
    n_groups: int | None = None


def pr_analysis(preds: Predictions, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> PrCurves:
    probs, left = _two_class_problems(preds, "a precision-recall curve")
    boots = _resampled(preds, probs, n_boot, seed)
    curves, rows = [], []
    for p, boot in zip(probs, boots, strict=True):
        prec, rec, thr = precision_recall_curve(p.y, p.s)
        curves.append(pd.DataFrame({"head": p.head, "class": p.cls, "recall": rec, "precision": prec,
                                    "threshold": np.r_[thr, np.nan]}))
        ap = float(average_precision_score(p.y, p.s))
        lo, hi = interval(boot.get("ap", []), level)
        ft, f1 = max_f1_point(p.y, p.s)
        r = rates(counts_at(p.y, p.s, np.array([ft])))
        rows.append({"head": p.head, "class": p.cls, "n_pos": int(p.y.sum()), "n": int(len(p.y)), "ap": ap,
                     "ap_low": lo, "ap_high": hi, "prevalence": float(p.y.mean()), "f1_threshold": ft,
                     "max_f1": f1, "f1_precision": float(r["precision"][0]), "f1_recall": float(r["recall"][0])})
    summary = pd.DataFrame(rows)
    macro = _macro(preds, probs, boots, summary, "ap", level, lambda head, sub: {
        "prevalence": float(sub["prevalence"].mean()), "n_classes": int(len(sub))})
    return PrCurves(preds.task, [h.name for h in preds.heads()], pd.concat(curves, ignore_index=True), summary,
                    macro, n_boot, level, left, **bootstrap_unit(preds))


# --------------------------------------------------------------------------- metrics vs threshold
@dataclass
class ThresholdMetrics:
    """Precision, recall, F1, accuracy and specificity against the threshold; a threshold table."""

    task: str
    heads: list[str]
    curves: pd.DataFrame  # head, class, threshold, precision, recall, f1, accuracy, specificity (fine grid)
    table: pd.DataFrame  # head, class, threshold, tp, fp, tn, fn, precision, recall, specificity, f1, accuracy, ...
    chosen: pd.DataFrame  # head, class, threshold, rule; and the max-F1 threshold
    rule: str
    convention: str = "predicted positive when score >= threshold; multi-class: each class one-vs-rest, macro = mean"


def _grids(s: np.ndarray, probabilities: bool) -> tuple[np.ndarray, np.ndarray]:
    if probabilities:
        return np.linspace(0, 1, 201), np.round(np.arange(0.05, 0.951, 0.05), 2)
    lo, hi = float(np.min(s)), float(np.max(s))
    fine = np.quantile(s, np.linspace(0, 1, 201))
    coarse = np.unique(np.quantile(s, np.linspace(0.05, 0.95, 19)))
    return np.unique(np.r_[lo, fine, hi]), coarse


def threshold_analysis(preds: Predictions, threshold="auto") -> ThresholdMetrics:
    probs, _ = _two_class_problems(preds, "metrics against the threshold")
    curves, table, chosen = [], [], []
    heads = {h.name: h for h in preds.heads()}
    for p in probs:
        fine, coarse = _grids(p.s, p.probabilities)
        t_chosen, rule = choose_threshold(p.y, p.s, threshold, p.probabilities)
        t_f1, f1 = max_f1_point(p.y, p.s)
        chosen.append({"head": p.head, "class": p.cls, "threshold": t_chosen, "rule": rule,
                       "max_f1_threshold": t_f1, "max_f1": f1})
        fc = counts_at(p.y, p.s, fine)
        curves.append(pd.DataFrame({"head": p.head, "class": p.cls, "threshold": fine, **rates(fc)}))
        marks = np.r_[coarse, t_chosen, t_f1]
        kinds = ["grid"] * len(coarse) + ["chosen", "max F1"]
        cc = counts_at(p.y, p.s, marks)
        tab = pd.DataFrame({"head": p.head, "class": p.cls, "threshold": marks, "marker": kinds, **cc,
                            **rates(cc), "flagged": cc["tp"] + cc["fp"], "support_pos": int(p.y.sum()),
                            "support_neg": int(len(p.y) - p.y.sum())})
        table.append(tab.sort_values(["threshold", "marker"], kind="mergesort"))
    curves_df = pd.concat(curves, ignore_index=True)
    table_df = pd.concat(table, ignore_index=True)
    for name, head in heads.items():  # macro rows for multi-class heads
        sub = curves_df[curves_df["head"] == name]
        if head.kind == "multiclass" and not sub.empty:
            mac = sub.groupby("threshold", as_index=False)[["precision", "recall", "f1", "accuracy",
                                                            "specificity"]].mean()
            curves_df = pd.concat([curves_df, mac.assign(head=name, **{"class": "macro"})], ignore_index=True)
    return ThresholdMetrics(preds.task, list(heads), curves_df, table_df, pd.DataFrame(chosen),
                            str(threshold))


# --------------------------------------------------------------------------- score distributions
def histogram_frame(v: np.ndarray, edges: np.ndarray, keys: dict) -> pd.DataFrame:
    """The `keys` columns, then bin_lo, bin_hi, count and density of v over edges."""
    counts, _ = np.histogram(v, bins=edges)
    dens = counts / (counts.sum() * np.diff(edges)) if counts.sum() else np.zeros(len(edges) - 1)
    return pd.DataFrame({**keys, "bin_lo": edges[:-1], "bin_hi": edges[1:], "count": counts, "density": dens})


@dataclass
class ScoreDistributions:
    """Class-conditional histograms of the score (binary) or of each class's probability (one-vs-rest)."""

    task: str
    heads: list[str]
    hist: pd.DataFrame  # head, class, group, bin_lo, bin_hi, count, density
    stats: pd.DataFrame  # head, class, group, n, mean, median, q1, q3
    separation: pd.DataFrame  # head, class, ks, ks_pvalue, threshold
    probabilities: bool
    bins: int


def score_distributions(preds: Predictions, bins: int = 30, threshold="auto") -> ScoreDistributions:
    from scipy.stats import ks_2samp

    hist, stats, sep = [], [], []
    for head in classification_heads(preds, "score distributions"):
        t_head, _ = head_threshold(head, threshold)
        for p in problems(head):
            lo, hi = (0.0, 1.0) if p.probabilities else (float(p.s.min()), float(p.s.max()))
            edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
            names = [f"other than {p.cls}", f"true {p.cls}"] if p.multiclass else head.class_names[:2]
            for code, gname in enumerate(names):  # label 0, then label 1
                v = p.s[p.y == code]
                hist.append(histogram_frame(v, edges, {"head": p.head, "class": p.cls, "group": gname}))
                q = np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else [np.nan] * 3
                stats.append({"head": p.head, "class": p.cls, "group": gname, "n": int(len(v)),
                              "mean": float(v.mean()) if len(v) else None, "median": float(q[1]),
                              "q1": float(q[0]), "q3": float(q[2])})
            ks = ks_2samp(p.s[p.y == 1], p.s[p.y == 0]) if p.both else None
            sep.append({"head": p.head, "class": p.cls, "ks": None if ks is None else float(ks.statistic),
                        "ks_pvalue": None if ks is None else float(ks.pvalue), "threshold": t_head})
    return ScoreDistributions(preds.task, [h.name for h in preds.heads()], pd.concat(hist, ignore_index=True),
                              pd.DataFrame(stats), pd.DataFrame(sep), bool(preds.probabilities), bins)


# --------------------------------------------------------------------------- confusion matrix
@dataclass
class Confusion:
    head: str
    title: str
    labels: list[str]
    counts: list[list[int]]
    row_percent: list[list[float | None]]
    threshold: float | None
    rule: str
    accuracy: float


@dataclass
class ConfusionMatrices:
    """Counts and row percentages (share of each true class) at the chosen threshold (binary) or arg-max."""

    task: str
    matrices: list[Confusion]
    convention: str


def _confusion(head: HeadView, threshold: float | None, rule: str, title: str) -> Confusion:
    pred = predicted_labels(head, threshold)
    k = len(head.class_names)
    cm = confusion_matrix(head.y, pred, labels=list(range(k)))
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(rows > 0, 100.0 * cm / np.where(rows > 0, rows, 1), np.nan)
    return Confusion(head.name, title, list(head.class_names), cm.tolist(),
                     [[None if not np.isfinite(v) else float(v) for v in r] for r in pct], threshold, rule,
                     float(np.trace(cm) / cm.sum()))


def confusion_analysis(preds: Predictions, threshold="auto") -> ConfusionMatrices:
    mats = []
    for head in classification_heads(preds, "a confusion matrix"):
        t, rule = head_threshold(head, threshold)
        label = f"{head.name}: " if head.name else ""
        if head.kind == "binary":
            mats.append(_confusion(head, t, rule, f"{label}threshold {t:.3g} ({rule})"))
            if 0 < head.y.sum() < len(head.y):
                t2, _ = max_f1_point(head.y, head.scores)
                if not np.isclose(t2, t) and rule != "max F1":
                    mats.append(_confusion(head, t2, "max F1", f"{label}threshold {t2:.3g} (max F1)"))
        else:
            mats.append(_confusion(head, None, "arg-max class", f"{label}arg-max class"))
    return ConfusionMatrices(preds.task, mats,
                             "rows: true class, columns: predicted class; binary: positive when score >= threshold "
                             "(the chosen threshold, and the max-F1 one beside it when they differ)")


# --------------------------------------------------------------------------- slices
@dataclass
class SliceMetrics:
    """Metrics per value of each grouping column with bootstrap intervals, worst slice first (by accuracy)."""

    task: str
    columns: list[str]
    table: pd.DataFrame  # head, column, value, n, metrics with _low/_high
    primary: str  # the metric slices are sorted by
    n_boot: int
    level: float
    notes: list[str] = field(default_factory=list)
    bootstrap_unit: str = "samples"  # "groups": whole groups of `group_column` were resampled
    group_column: str | None = None
    n_groups: int | None = None


def _group_values(meta: pd.DataFrame, col: str, limit: int = 30) -> tuple[list, str | None]:
    counts = meta[col].astype(str).value_counts()
    note = f"{col}: {len(counts)} values, the {limit} largest shown" if len(counts) > limit else None
    return list(counts.index[:limit]), note


def slice_metrics(preds: Predictions, group_columns: list[str] | None = None, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95, threshold="auto") -> SliceMetrics:
    cols = list(group_columns) if group_columns is not None else list(preds.group_columns)
    cols = [c for c in cols if c in preds.metadata.columns]
    if not cols:
        raise NotApplicable("no grouping column in the predictions (string, boolean or small-integer columns "
                            "such as sample type or dataset; name them with group_columns)")
    rows, notes = [], []
    groups = preds.groups
    for head in preds.heads():
        t, _ = head_threshold(head, threshold) if head.kind != "regression" else (None, "")
        for col in cols:
            values, note = _group_values(preds.metadata, col)
            if note:
                notes.append(note)
            key = preds.metadata[col].astype(str).to_numpy()
            for value in values:
                mask = key == value
                rows.append({"head": head.name, "column": col, "value": value,
                             **_slice_row(head, mask, t, n_boot, seed, level, groups)})
    table = pd.DataFrame(rows)
    primary = "mae" if preds.task == "regression" else "accuracy"
    asc = preds.task != "regression"
    table = table.sort_values(["head", "column", primary], ascending=[True, True, asc], kind="mergesort",
                              na_position="last").reset_index(drop=True)
    return SliceMetrics(preds.task, cols, table, primary, n_boot, level, notes, **bootstrap_unit(preds))


def _ci_cols(name: str, point: float | None, samples: np.ndarray | None, level: float) -> dict:
    lo, hi = interval(samples, level) if samples is not None else (None, None)
    return {name: point, f"{name}_low": lo, f"{name}_high": hi}


def _slice_row(head: HeadView, mask: np.ndarray, t: float | None, n_boot: int, seed: int, level: float,
               groups: np.ndarray | None = None) -> dict:
    """One slice's metrics; `groups`: all rows' group codes, to resample whole groups."""
    y, s = head.y[mask], head.scores[mask]
    n = int(mask.sum())
    if groups is not None:  # the slice's groups, made dense again (groups absent from it are not drawn)
        groups = np.unique(groups[mask], return_inverse=True)[1].astype(np.int64)
    if groups is not None and len(groups) and int(groups.max()) == 0:
        n_boot = 0  # the slice is one group: resampling it says nothing about the spread
    if head.kind == "regression":
        err = s - y
        vals = np.column_stack([np.abs(err), err ** 2, err])
        boot = bootstrap_means(vals, n_boot, seed, groups) if n_boot and n > 1 else np.zeros((0, 3))
        return {"n": n, **_ci_cols("mae", float(np.abs(err).mean()), boot[:, 0], level),
                **_ci_cols("rmse", float(np.sqrt((err ** 2).mean())), np.sqrt(boot[:, 1]), level),
                **_ci_cols("bias", float(err.mean()), boot[:, 2], level)}
    correct = (predicted_labels(head, t)[mask] == y).astype(float)
    out = {"n": n}
    if head.kind == "binary":
        pos = (y == 1).astype(float)
        npos = int(pos.sum())
        both = 0 < npos < n
        # one pass over the resamples for accuracy, recall, specificity and AUC (counts in score order)
        ranked = RankedScores(y, s) if both else None
        layout = ranked.layout if ranked is not None else np.arange(n)
        vals = np.column_stack([correct, correct * pos, correct * (1 - pos), pos])[layout]
        boot, aucs = [], []
        codes = None if groups is None else groups[layout]
        for w in resample_counts(n, n_boot, seed, groups=codes) if n_boot and n > 1 else []:
            a, b, c, wp = weighted_sums(w, vals).T
            total = w.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot.append(np.column_stack([a / total, b / wp, c / (total - wp)]))
            if ranked is not None:
                aucs.append(ranked.stats(w, ap=False)["auc"])
        # no resamples: no interval; no positives (negatives): recall (specificity) is NaN in every resample
        boot = np.concatenate(boot) if boot else np.zeros((0, 3))
        out.update({"n_pos": npos, "positive_rate": float(pos.mean())})
        out.update(_ci_cols("accuracy", float(correct.mean()), boot[:, 0], level))
        out.update(_ci_cols("recall", float(correct[y == 1].mean()) if npos else None, boot[:, 1], level))
        out.update(_ci_cols("specificity", float(correct[y == 0].mean()) if npos < n else None, boot[:, 2],
                            level))
        out.update(_ci_cols("auc", float(roc_auc_score(y, s)) if both else None,
                            np.concatenate(aucs) if aucs else None, level))
    else:
        boot = bootstrap_means(correct, n_boot, seed, groups) if n_boot and n > 1 else None
        out.update(_ci_cols("accuracy", float(correct.mean()), boot, level))
        p_true = np.clip(s[np.arange(n), y], np.finfo(float).eps, 1 - np.finfo(float).eps)
        out["nll"] = float(-np.log(p_true).mean())
    return out


# --------------------------------------------------------------------------- samples: hardest and gallery
class Pixels(dict):
    """Thumbnails of the selected samples for drawing. The JSON records only their shape (the dict part);
    the pixels themselves (`.array`, (m, H, W) or (m, H, W, 3) in [0, 1]) are not written out."""

    def __init__(self, array: np.ndarray | None, note: str = ""):
        super().__init__(shape=None if array is None else list(array.shape),
                         note=note or "pixels are drawn, not stored in the JSON")
        self.array = array
        self.overlays: np.ndarray | None = None  # (m, h, w) attribution maps in [0, 1], set by the pipeline


def thumbnails(images: np.ndarray | None, preds: Predictions, rows: np.ndarray) -> tuple[Pixels, np.ndarray | None]:
    """Pixels of the given prediction rows and each row's image index (None where the images are absent)."""
    if images is None or len(rows) == 0:
        return Pixels(None, "no images were given"), None
    idx = preds.image_indices(len(images))
    if idx is None:
        return Pixels(None, f"no image index column and {len(images)} images for {preds.n} predictions"), None
    idx = np.asarray(idx, dtype=int)
    if idx.max() >= len(images):
        raise MlvizError(f"image index column '{preds.image_column}' goes up to {int(idx.max())} but the image array "
                         f"holds {len(images)} images; the predictions and images do not match")
    pick = np.asarray(images[idx[rows]])
    return Pixels(display_images(pick)), idx[rows]


def display_images(arr: np.ndarray) -> np.ndarray:
    """(m, C, H, W), (m, H, W, C) or (m, H, W) → (m, H, W) or (m, H, W, 3) floats in [0, 1]."""
    a = np.asarray(arr, dtype=float)
    if a.ndim == 4:
        if a.shape[1] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.moveaxis(a, 1, -1)
        if a.shape[-1] == 1:
            a = a[..., 0]
        elif a.shape[-1] == 4:
            a = a[..., :3]
    elif a.ndim != 3:
        raise MlvizError(f"images must be (n, C, H, W), (n, H, W, C) or (n, H, W); got shape {tuple(arr.shape)}")
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo < 0 or hi > 1:
        a = (a - lo) / ((hi - lo) or 1.0)
    return np.clip(a, 0, 1)


def _sample_rows(preds: Predictions, rows: np.ndarray) -> dict:
    meta = preds.metadata.iloc[rows]
    out = {"row": rows, "sample_id": preds.sample_ids[rows]}
    for col in (preds.image_column, preds.image_path_column):
        if col and col in meta:
            out[col] = meta[col].to_numpy()
    for col in preds.group_columns:
        out[col] = meta[col].to_numpy()
    return out


@dataclass
class SampleSelection:
    """Selected samples (hardest, or a TP/TN/FP/FN gallery) with ids, image indices, scores and thumbnails."""

    task: str
    kind: str  # "hardest" or "gallery"
    table: pd.DataFrame  # head, case, rank, row, sample_id, image index/path, label, predicted, score, ...
    thresholds: dict[str, float | None]
    pixels: Pixels
    cases: list[str]
    rule: str


def _head_frame(head: HeadView, t: float | None) -> pd.DataFrame:
    pred = predicted_labels(head, t)
    n = len(head.y)
    names = np.asarray(head.class_names, dtype=object)
    if head.kind == "binary":
        case = np.where(head.y == 1, np.where(pred == 1, "TP", "FN"), np.where(pred == 1, "FP", "TN"))
        scores = {"score": head.scores}
    else:
        case = np.where(pred == head.y, "correct", "wrong")
        scores = {"score": head.scores[np.arange(n), pred], "p_true": head.scores[np.arange(n), head.y]}
    return pd.DataFrame({"row": np.arange(n), "case": case, "label": names[head.y], "predicted": names[pred],
                         **scores})


def hardest_samples(preds: Predictions, k: int = 12, threshold="auto", images: np.ndarray | None = None) -> SampleSelection:
    """FN with the lowest scores and FP with the highest (binary); wrong with the lowest true-class
    probability (multi-class): the most confidently wrong samples."""
    def pick(head: HeadView, f: pd.DataFrame) -> tuple[list[str], list[pd.DataFrame]]:
        if head.kind != "binary":
            return ["wrong"], [f[f["case"] == "wrong"].sort_values("p_true", kind="mergesort").head(k)]
        fn, fp = f[f["case"] == "FN"], f[f["case"] == "FP"]
        return ["FN", "FP"], [fn.sort_values("score", kind="mergesort").head(k),
                              fp.sort_values("score", ascending=False, kind="mergesort").head(k)]

    return _select(preds, "hardest samples", threshold, images, "hardest", pick)


def case_gallery(preds: Predictions, per_case: int = 6, threshold="auto",
                 images: np.ndarray | None = None) -> SampleSelection:
    """Examples of each case (TP, TN, FP, FN; multi-class: correct, wrong), spread evenly over the score
    range within the case (from the most to the least confident), so the gallery is representative."""
    def pick(head: HeadView, f: pd.DataFrame) -> tuple[list[str], list[pd.DataFrame]]:
        order = ["TP", "TN", "FP", "FN"] if head.kind == "binary" else ["correct", "wrong"]
        chosen = []
        for case in order:
            sub = f[f["case"] == case].sort_values("score", ascending=case in ("FN", "TN"), kind="mergesort")
            if not sub.empty:
                spread = np.round(np.linspace(0, len(sub) - 1, min(per_case, len(sub)))).astype(int)
                chosen.append(sub.iloc[np.unique(spread)])
        return order, chosen

    return _select(preds, "a case gallery", threshold, images, "gallery", pick)


def _select(preds: Predictions, what: str, threshold, images, kind: str, pick) -> SampleSelection:
    """The samples `pick(head, the head's rows)` chooses, given as (its cases, the chosen rows per case)."""
    parts, thresholds, cases = [], {}, []
    for head in classification_heads(preds, what):
        t, _ = head_threshold(head, threshold)
        thresholds[head.name] = t
        head_cases, chosen = pick(head, _head_frame(head, t))
        cases += [c for c in head_cases if c not in cases]
        parts += [s.assign(rank=np.arange(1, len(s) + 1), head=head.name) for s in chosen]
    table = pd.concat(parts, ignore_index=True)
    if table.empty:  # only the hardest samples can be none: a gallery shows every case present
        raise NotApplicable("no misclassified sample at the chosen threshold")
    rows = table["row"].to_numpy()
    extra = pd.DataFrame(_sample_rows(preds, rows)).drop(columns=["row"])
    table = pd.concat([table.reset_index(drop=True), extra.reset_index(drop=True)], axis=1)
    pixels, idx = thumbnails(images, preds, rows)
    table["thumbnail"] = np.arange(len(table)) if pixels.array is not None else -1
    front = ["head", "case", "rank", "row", "sample_id"]
    table = table[front + [c for c in table.columns if c not in front]]
    return SampleSelection(preds.task, kind, table, thresholds, pixels, cases, str(threshold))


# --------------------------------------------------------------------------- regression
@dataclass
class RegressionFit:
    """Predicted against true values; MAE, RMSE, R², bias with bootstrap intervals."""

    n: int
    points: pd.DataFrame  # y_true, y_pred (all samples)
    metrics: pd.DataFrame  # metric, value, low, high
    n_boot: int
    level: float
    bootstrap_unit: str = "samples"  # "groups": whole groups of `group_column` were resampled
    group_column: str | None = None
    n_groups: int | None = None


@dataclass
class RegressionResiduals:
    """Residuals (predicted − true) against the prediction, binned mean ± sd, and their histogram."""

    n: int
    points: pd.DataFrame  # y_pred, residual
    binned: pd.DataFrame  # bin_lo, bin_hi, n, mean, sd
    hist: pd.DataFrame  # bin_lo, bin_hi, count
    mean: float
    sd: float


def _regression_head(preds: Predictions, what: str) -> HeadView:
    if preds.task != "regression":
        raise NotApplicable(f"{what} is for regression predictions; these are {preds.task}")
    return preds.heads()[0]


def regression_fit(preds: Predictions, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> RegressionFit:
    head = _regression_head(preds, "predicted vs true")
    y, yhat = head.y, head.scores
    err = yhat - y
    point = {"mae": mean_absolute_error(y, yhat), "rmse": float(np.sqrt(mean_squared_error(y, yhat))),
             "r2": r2_score(y, yhat) if len(y) > 1 else np.nan, "bias": float(err.mean())}
    boot = {}
    if n_boot and len(y) > 1:
        vals = np.column_stack([np.abs(err), err ** 2, err, y, y ** 2])
        m = bootstrap_means(vals, n_boot, seed, preds.groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = {"mae": m[:, 0], "rmse": np.sqrt(m[:, 1]), "r2": 1 - m[:, 1] / (m[:, 4] - m[:, 3] ** 2),
                    "bias": m[:, 2]}
    rows = []
    for k, v in point.items():
        lo, hi = interval(boot[k], level) if k in boot else (None, None)
        rows.append({"metric": k, "value": float(v), "low": lo, "high": hi})
    return RegressionFit(len(y), pd.DataFrame({"y_true": y, "y_pred": yhat}), pd.DataFrame(rows), n_boot, level,
                         **bootstrap_unit(preds))


def regression_residuals(preds: Predictions, bins: int = 20) -> RegressionResiduals:
    head = _regression_head(preds, "residuals")
    res = head.scores - head.y
    edges = np.unique(np.quantile(head.scores, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, head.scores, side="right") - 1, 0, max(len(edges) - 2, 0))
    binned = []
    for b in range(max(len(edges) - 1, 1)):
        r = res[which == b]
        if len(r):
            binned.append({"bin_lo": float(edges[b]), "bin_hi": float(edges[min(b + 1, len(edges) - 1)]),
                           "n": int(len(r)), "mean": float(r.mean()), "sd": float(r.std())})
    counts, hedges = np.histogram(res, bins=40)
    return RegressionResiduals(len(res), pd.DataFrame({"y_pred": head.scores, "residual": res}), pd.DataFrame(binned),
                               pd.DataFrame({"bin_lo": hedges[:-1], "bin_hi": hedges[1:], "count": counts}),
                               float(res.mean()), float(res.std()))


def regression_error_by_slice(preds: Predictions, group_columns: list[str] | None = None, n_boot: int = 1000,
                              seed: int = 0, level: float = 0.95) -> SliceMetrics:
    _regression_head(preds, "error by slice")
    return slice_metrics(preds, group_columns, n_boot, seed, level)

