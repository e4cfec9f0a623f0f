"""How the model learned, from per-epoch predictions (a predictions table with an `epoch` column).

- `metrics_evolution`: AUC (with bootstrap interval), AP, accuracy, F1, precision, recall, ECE, Brier and
  NLL at every epoch;
- `score_evolution`: class-conditional score distributions at checkpoint epochs;
- `sample_trajectories`: individual samples' scores across epochs, with each class's median and IQR;
- `late_bloomers`: samples whose classification changed, each epoch judged at its own threshold;
- `decision_boundary_evolution`: the threshold and how far apart the classes' scores are, per epoch.

Each epoch's threshold (binary heads) is chosen by the same rule at every epoch, the max-F1 threshold by
default (`threshold="max_f1"`; "youden", "0.5" or a number also work), because a model's score scale
drifts while it trains. Multi-class heads are judged by the arg-max class and their "score" is the
probability of the true class. Samples are followed across epochs by their sample id (or by their position
within each epoch when there is no id column and every epoch has the same number of rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from mlviz.analysis import NotApplicable
from mlviz.analysis.calibration import calibration_targets, expected_calibration_error, per_sample_losses
from mlviz.analysis.diagnostics import (
    Pixels,
    bootstrap_means,
    bootstrap_ranking,
    bootstrap_unit,
    class_name,
    counts_at,
    head_threshold,
    histogram_frame,
    interval,
    predicted_labels,
    rates,
    thumbnails,
)
from mlviz.analysis.predictions import HeadView, Predictions


def _need_epochs(per_epoch: Predictions | None, what: str, minimum: int = 2) -> list:
    if per_epoch is None or not per_epoch.has_epochs:
        raise NotApplicable(f"{what} needs per-epoch predictions (a predictions table with an epoch column)")
    if per_epoch.task == "regression":
        raise NotApplicable(f"{what} is drawn for classifiers; these are regression predictions")
    epochs = per_epoch.epochs()
    if len(epochs) < minimum:
        raise NotApplicable(f"{what} needs predictions from at least {minimum} epochs, found {len(epochs)}")
    return epochs


def _epoch_score(head: HeadView) -> np.ndarray:
    """The per-sample score followed over epochs: the positive score, or the true class's probability."""
    if head.kind == "binary":
        return head.scores
    return head.scores[np.arange(len(head.y)), head.y]


def _two_groups(head: HeadView) -> tuple[np.ndarray, np.ndarray]:
    """Binary: the negatives' and the positives' scores. Multi-class, per sample: the largest probability
    of another class, and the true class's."""
    if head.kind == "binary":
        return head.scores[head.y == 0], head.scores[head.y == 1]
    p = head.scores.copy()
    rows = np.arange(len(p))
    p_true = p[rows, head.y]
    p[rows, head.y] = -1
    return p.max(axis=1), p_true


# --------------------------------------------------------------------------- metrics per epoch
@dataclass
class MetricsEvolution:
    task: str
    heads: list[str]
    table: pd.DataFrame  # head, epoch, n, auc (+ interval), ap, accuracy (+ interval), f1, ..., threshold
    best: pd.DataFrame  # head, metric, epoch, value: the best epoch per metric
    rule: str
    n_boot: int
    level: float
    bootstrap_unit: str = "samples"  # "groups": whole groups of `group_column` were resampled (per epoch)
    group_column: str | None = None
    n_groups: int | None = None  # groups at the largest epoch


def metrics_evolution(per_epoch: Predictions, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                      threshold="max_f1", n_bins: int = 15) -> MetricsEvolution:
    epochs = _need_epochs(per_epoch, "metrics per epoch", minimum=1)
    rows = []
    for e in epochs:
        at = per_epoch.at_epoch(e)
        groups = at.groups  # dense within the epoch: each epoch resamples its own groups
        for head in at.heads():
            t, _ = head_threshold(head, threshold)
            row = {"head": head.name, "epoch": e, "n": int(len(head.y)), "threshold": t}
            correct = (predicted_labels(head, t) == head.y).astype(float)
            boot = bootstrap_means(correct, n_boot, seed, groups) if n_boot and len(correct) > 1 else None
            lo, hi = interval(boot, level) if boot is not None else (None, None)
            row.update({"accuracy": float(correct.mean()), "accuracy_low": lo, "accuracy_high": hi})
            if head.kind == "binary":
                r = rates(counts_at(head.y, head.scores, np.array([t])))
                row.update({k: float(r[k][0]) for k in ("precision", "recall", "f1", "specificity")})
                if 0 < head.y.sum() < len(head.y):
                    b = bootstrap_ranking(head.y, head.scores, n_boot, seed, grid=None, groups=groups) \
                        if n_boot else {}
                    lo, hi = interval(b.get("auc", []), level)
                    row.update({"auc": float(roc_auc_score(head.y, head.scores)), "auc_low": lo, "auc_high": hi,
                                "ap": float(average_precision_score(head.y, head.scores))})
            else:
                present = [c for c in range(head.scores.shape[1]) if 0 < (head.y == c).sum() < len(head.y)]
                if present:
                    row["auc"] = float(np.mean([roc_auc_score(head.y == c, head.scores[:, c]) for c in present]))
            if head.kind != "binary" or head.probabilities:  # binary: positive class; multi-class: top label
                main, _ = calibration_targets(head)
                brier, nll = per_sample_losses(head)
                row.update({"ece": expected_calibration_error(main.conf, main.outcome, n_bins, main.float32),
                            "brier": float(brier.mean()), "nll": float(nll.mean())})
            rows.append(row)
    table = pd.DataFrame(rows)
    best = []
    for head, sub in table.groupby("head", sort=False):
        for metric, mode in (("auc", "max"), ("accuracy", "max"), ("f1", "max"), ("ap", "max"), ("nll", "min"),
                             ("ece", "min")):
            if metric in sub and sub[metric].notna().any():
                i = sub[metric].idxmax() if mode == "max" else sub[metric].idxmin()
                best.append({"head": head, "metric": metric, "epoch": sub.loc[i, "epoch"],
                             "value": float(sub.loc[i, metric])})
    unit = bootstrap_unit(per_epoch)
    if unit["n_groups"] is not None:
        unit["n_groups"] = max(int(per_epoch.at_epoch(e).n_groups or 0) for e in epochs)
    return MetricsEvolution(per_epoch.task, [h.name for h in per_epoch.heads()], table, pd.DataFrame(best),
                            str(threshold), n_boot, level, **unit)


# --------------------------------------------------------------------------- score distributions at checkpoints
@dataclass
class ScoreEvolution:
    task: str
    heads: list[str]
    checkpoints: list
    hist: pd.DataFrame  # head, epoch, group, bin_lo, bin_hi, count, density
    stats: pd.DataFrame  # head, epoch, group, n, median, q1, q3
    thresholds: pd.DataFrame  # head, epoch, threshold
    score: str


def checkpoint_epochs(epochs: list, k: int = 6) -> list:
    if len(epochs) <= k:
        return list(epochs)
    return [epochs[i] for i in np.unique(np.round(np.linspace(0, len(epochs) - 1, k)).astype(int))]


def score_evolution(per_epoch: Predictions, checkpoints: int = 6, bins: int = 30, threshold="max_f1") -> ScoreEvolution:
    epochs = _need_epochs(per_epoch, "score distributions per epoch")
    chosen = checkpoint_epochs(epochs, checkpoints)
    hist, stats, thr = [], [], []
    raw = per_epoch.task == "binary" and not per_epoch.probabilities
    lo_all, hi_all = (float(per_epoch.scores.min()), float(per_epoch.scores.max())) if raw else (0.0, 1.0)
    edges = np.linspace(lo_all, hi_all if hi_all > lo_all else lo_all + 1, bins + 1)
    for e in chosen:
        for head in per_epoch.at_epoch(e).heads():
            t, _ = head_threshold(head, threshold)
            thr.append({"head": head.name, "epoch": e, "threshold": t})
            names = head.class_names[:2] if head.kind == "binary" else ["max P(other class)", "P(true class)"]
            for g, v in zip(names, _two_groups(head), strict=True):
                hist.append(histogram_frame(v, edges, {"head": head.name, "epoch": e, "group": g}))
                q = np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else [np.nan] * 3
                stats.append({"head": head.name, "epoch": e, "group": g, "n": int(len(v)), "q1": float(q[0]),
                              "median": float(q[1]), "q3": float(q[2])})
    score = "score" if per_epoch.task == "binary" else "probability"
    return ScoreEvolution(per_epoch.task, [h.name for h in per_epoch.heads()], chosen,
                          pd.concat(hist, ignore_index=True), pd.DataFrame(stats), pd.DataFrame(thr), score)


# --------------------------------------------------------------------------- aligned samples
@dataclass
class _Aligned:
    epochs: list
    rows: np.ndarray  # (E, n): row of each sample in the per-epoch table, per epoch
    ids: np.ndarray
    dropped: int


def align(per_epoch: Predictions) -> _Aligned:
    """Each sample's row at every epoch (samples missing from an epoch are dropped, and counted)."""
    epochs = per_epoch.epochs()
    ep = per_epoch.metadata[per_epoch.epoch_column].to_numpy()
    if per_epoch.id_column and per_epoch.id_column in per_epoch.metadata:
        key = per_epoch.metadata[per_epoch.id_column].astype(str).to_numpy()
    else:
        sizes = {e: int((ep == e).sum()) for e in epochs}
        if len(set(sizes.values())) != 1:
            raise NotApplicable("per-epoch predictions without a sample id column must have the same number "
                                f"of rows at every epoch to follow samples; rows per epoch: {sizes}")
        key = np.zeros(len(ep), dtype=np.int64)
        for e in epochs:
            key[ep == e] = np.arange(sizes[e])
        key = key.astype(str)
    frame = pd.DataFrame({"epoch": ep, "key": key, "row": np.arange(len(ep))})
    frame = frame.drop_duplicates(["epoch", "key"], keep="last")
    wide = frame.pivot(index="key", columns="epoch", values="row")
    full = wide.dropna()
    first = frame[frame["epoch"] == epochs[0]]["key"]
    order = [k for k in first if k in full.index] or list(full.index)
    full = full.loc[order, epochs]
    if full.empty:
        raise NotApplicable("no sample appears at every epoch of the per-epoch predictions")
    ids = per_epoch.sample_ids[full[epochs[0]].to_numpy(dtype=int)]
    return _Aligned(epochs, full.to_numpy(dtype=int).T, ids, int(len(wide) - len(full)))


def _head_views(per_epoch: Predictions, al: _Aligned) -> list[list[HeadView]]:
    """views[e][h]: head h at epoch e, rows aligned across epochs."""
    return [per_epoch.subset(al.rows[i]).heads() for i in range(len(al.epochs))]


def _epoch_thresholds(views: list[list[HeadView]], h: int, epochs: list, rule, thr: list[dict]) -> list:
    """Head h's threshold at every epoch, each also recorded in `thr`."""
    ts = [head_threshold(v[h], rule)[0] for v in views]
    thr += [{"head": views[-1][h].name, "epoch": e, "threshold": t} for e, t in zip(epochs, ts, strict=True)]
    return ts


# --------------------------------------------------------------------------- trajectories
@dataclass
class SampleTrajectories:
    task: str
    heads: list[str]
    epochs: list
    trajectories: pd.DataFrame  # head, sample_id, label, epoch, score (the followed samples)
    bands: pd.DataFrame  # head, group, epoch, q1, median, q3 (all samples)
    thresholds: pd.DataFrame  # head, epoch, threshold
    score: str
    n_samples: int
    dropped: int


def sample_trajectories(per_epoch: Predictions, per_class: int = 15, threshold="max_f1") -> SampleTrajectories:
    epochs = _need_epochs(per_epoch, "sample trajectories")
    al = align(per_epoch)
    views = _head_views(per_epoch, al)
    traj, bands, thr = [], [], []
    for h, head_last in enumerate(views[-1]):
        S = np.stack([_epoch_score(v[h]) for v in views])  # (E, n)
        y = head_last.y
        _epoch_thresholds(views, h, epochs, threshold, thr)
        for c in np.unique(y):
            cols = np.flatnonzero(y == c)
            name = class_name(head_last, c)
            q = np.quantile(S[:, cols], [0.25, 0.5, 0.75], axis=1)
            bands.append(pd.DataFrame({"head": head_last.name, "group": name, "epoch": epochs, "q1": q[0],
                                       "median": q[1], "q3": q[2]}))
            order = cols[np.argsort(S[-1, cols], kind="mergesort")]
            pick = order[np.unique(np.round(np.linspace(0, len(order) - 1, min(per_class, len(order)))).astype(int))]
            traj += [pd.DataFrame({"head": head_last.name, "sample_id": al.ids[j], "label": name,
                                   "epoch": epochs, "score": S[:, j]}) for j in pick]
    score = "score" if per_epoch.task == "binary" else "probability of the true class"
    return SampleTrajectories(per_epoch.task, [h.name for h in views[-1]], epochs, pd.concat(traj, ignore_index=True),
                              pd.concat(bands, ignore_index=True), pd.DataFrame(thr), score, al.rows.shape[1],
                              al.dropped)


# --------------------------------------------------------------------------- late bloomers
CATEGORIES = ("always right", "late bloomer", "forgotten", "unstable, ends right", "unstable, ends wrong",
              "never right")


@dataclass
class LateBloomers:
    """Samples whose classification changed over training, each epoch judged at its own threshold."""

    task: str
    heads: list[str]
    epochs: list
    counts: pd.DataFrame  # head, category, n, share
    learned: pd.DataFrame  # head, epoch, n: late bloomers by the epoch from which they stay right
    transitions: pd.DataFrame  # head, epoch, became_right, became_wrong (vs the previous epoch)
    table: pd.DataFrame  # head, sample_id, label, learned_epoch, flips, first_score, last_score, ...
    thresholds: pd.DataFrame  # head, epoch, threshold
    pixels: Pixels
    rule: str
    definitions: dict = field(default_factory=lambda: {
        "late bloomer": "wrong at the first epoch, right at the last",
        "forgotten": "right at the first epoch, wrong at the last",
        "unstable": "same at the first and last epoch but changed in between",
        "learned epoch": "the first epoch from which the sample stays right"})


def late_bloomers(per_epoch: Predictions, threshold="max_f1", top: int = 30, images: np.ndarray | None = None,
                  n_thumbnails: int = 12) -> LateBloomers:
    epochs = _need_epochs(per_epoch, "late bloomers")
    al = align(per_epoch)
    views = _head_views(per_epoch, al)
    counts, learned, trans, tables, thr = [], [], [], [], []
    thumb_rows: list[int] = []
    for h, last in enumerate(views[-1]):
        ts = _epoch_thresholds(views, h, epochs, threshold, thr)
        R = np.array([predicted_labels(v[h], t) == v[h].y for v, t in zip(views, ts, strict=True)])
        flips = (R[1:] != R[:-1]).sum(axis=0)
        first, final = R[0], R[-1]
        # the first matching condition wins; after the first two, first == final
        cat = np.select([~first & final, first & ~final, first & (flips == 0), ~first & (flips == 0), first],
                        ["late bloomer", "forgotten", "always right", "never right", "unstable, ends right"],
                        "unstable, ends wrong")
        n = len(cat)
        for c in CATEGORIES:
            k = int((cat == c).sum())
            counts.append({"head": last.name, "category": c, "n": k, "share": k / n if n else None})
        # the first epoch from which the sample stays right
        stays = np.flip(np.logical_and.accumulate(np.flip(R, axis=0), axis=0), axis=0)
        learned_idx = np.where(stays.any(axis=0), np.argmax(stays, axis=0), -1)
        bloom = np.flatnonzero(cat == "late bloomer")
        learned += [{"head": last.name, "epoch": epochs[i], "n": int((learned_idx[bloom] == i).sum())}
                    for i in range(1, len(epochs))]
        trans += [{"head": last.name, "epoch": epochs[i], "became_right": int((~R[i - 1] & R[i]).sum()),
                   "became_wrong": int((R[i - 1] & ~R[i]).sum())} for i in range(1, len(epochs))]
        s_first, s_last = _epoch_score(views[0][h]), _epoch_score(last)
        order = bloom[np.lexsort((-flips[bloom], -learned_idx[bloom]))][:top]
        name = [class_name(last, v) for v in last.y[order]]
        tables.append(pd.DataFrame({"head": last.name, "sample_id": al.ids[order], "label": name,
                                    "learned_epoch": [epochs[i] for i in learned_idx[order]],
                                    "flips": flips[order], "first_score": s_first[order], "last_score": s_last[order],
                                    "row": al.rows[-1][order]}))
        if h == 0:
            thumb_rows = list(al.rows[-1][order[:n_thumbnails]])
    table = pd.concat(tables, ignore_index=True)
    pixels, _ = thumbnails(images, per_epoch, np.asarray(thumb_rows, dtype=int))
    table["thumbnail"] = -1
    if pixels.array is not None:
        first_head = table["head"] == table["head"].iloc[0]
        table.loc[table.index[first_head][:len(thumb_rows)], "thumbnail"] = np.arange(len(thumb_rows))
    return LateBloomers(per_epoch.task, [h.name for h in views[-1]], epochs, pd.DataFrame(counts),
                        pd.DataFrame(learned), pd.DataFrame(trans), table, pd.DataFrame(thr), pixels, str(threshold))


# --------------------------------------------------------------------------- decision boundary
@dataclass
class DecisionBoundary:
    """Per epoch: the threshold(s) and how far apart the classes' scores lie."""

    task: str
    heads: list[str]
    table: pd.DataFrame  # head, epoch, threshold, youden, group medians and IQRs, separation (d'), ks, auc
    score: str
    separation: str = "d' = difference of the two groups' means over their pooled standard deviation"


def decision_boundary_evolution(per_epoch: Predictions, threshold="max_f1") -> DecisionBoundary:
    from scipy.stats import ks_2samp

    epochs = _need_epochs(per_epoch, "decision boundary per epoch")
    rows = []
    for e in epochs:
        for head in per_epoch.at_epoch(e).heads():
            t, _ = head_threshold(head, threshold)
            row = {"head": head.name, "epoch": e, "threshold": t}
            a, b = _two_groups(head)
            if head.kind == "binary":
                row["youden_threshold"] = head_threshold(head, "youden")[0]
                names = ("negative", "positive")
            else:
                names = ("best other class", "true class")
                row["accuracy"] = float((b > a).mean())
            for name, v in zip(names, (a, b), strict=True):
                q = np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else [np.nan] * 3
                row.update({f"{name}_q1": float(q[0]), f"{name}_median": float(q[1]), f"{name}_q3": float(q[2]),
                            f"{name}_mean": float(np.mean(v)) if len(v) else None})
            if len(a) > 1 and len(b) > 1:
                sd = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
                row["separation"] = float((b.mean() - a.mean()) / sd) if sd > 0 else None
                row["ks"] = float(ks_2samp(b, a).statistic)
            if head.kind == "binary" and len(a) and len(b):
                row["auc"] = float(roc_auc_score(head.y, head.scores))
            rows.append(row)
    score = "score" if per_epoch.task == "binary" else "probability (true class vs best other class)"
    return DecisionBoundary(per_epoch.task, [h.name for h in per_epoch.heads()], pd.DataFrame(rows), score)
