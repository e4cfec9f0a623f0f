"""training_progress/ figures: one row of panels per head for multi-output models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlviz.analysis.progress import (
    CATEGORIES,
    DecisionBoundary,
    LateBloomers,
    MetricsEvolution,
    SampleTrajectories,
    ScoreEvolution,
)
from mlviz.analysis.stats import resamples_phrase
from mlviz.render import diagnostics, style
from mlviz.render.diagnostics import NEG, POS, _class_colours, _head_title, draw_table, draw_thumbnail_row

LINE_METRICS = {"auc": "#d62728", "ap": "#ff7f0e", "accuracy": "#1f77b4", "f1": "#2ca02c", "precision": "#17becf",
                "recall": "#9467bd"}


def _epoch_axis(ax, epochs):
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    ax.set_xlabel("epoch")


# --------------------------------------------------------------------------- metrics
def draw_metrics_evolution(ax, ax2, r: MetricsEvolution, head: str):
    t = r.table[r.table["head"] == head]
    e = t["epoch"].to_numpy()
    for m, colour in LINE_METRICS.items():
        if m not in t or not t[m].notna().any():
            continue
        ax.plot(e, t[m], marker="o", ms=3, color=colour, label=m)
        if f"{m}_low" in t and t[f"{m}_low"].notna().any():
            ax.fill_between(e, t[f"{m}_low"].astype(float), t[f"{m}_high"].astype(float), color=colour, alpha=0.15)
    best = r.best[(r.best["head"] == head) & (r.best["metric"] == ("auc" if "auc" in t else "accuracy"))]
    if len(best):
        b = best.iloc[0]
        ax.axvline(b["epoch"], color="black", ls=":", lw=1, label=f"best {b['metric']} (epoch {b['epoch']})")
    ax.set_ylabel("metric (bands: 95% bootstrap)")
    ax.legend(fontsize=7, loc="lower right")
    _epoch_axis(ax, e)
    ax.set_title(_head_title(head, "discrimination; binary metrics at each epoch's threshold" if r.task == "binary"
                             else "discrimination; predicted class = arg-max"))
    for m, colour in (("ece", "#8c564b"), ("brier", "#e377c2")):
        if m in t and t[m].notna().any():
            ax2.plot(e, t[m], marker="o", ms=3, color=colour, label=m)
    ax2.set_ylabel("ECE, Brier (lower is better)")
    if "nll" in t and t["nll"].notna().any():
        twin = ax2.twinx()
        twin.plot(e, t["nll"], marker="s", ms=3, color=style.MUTED, ls="--", label="NLL (right)")
        twin.set_ylabel("NLL")
        twin.spines["right"].set_visible(True)
        lines = ax2.get_lines() + twin.get_lines()
        ax2.legend(lines, [ln.get_label() for ln in lines], fontsize=7)
    elif ax2.get_lines():
        ax2.legend(fontsize=7)
    _epoch_axis(ax2, e)
    ax2.set_title("calibration")


def plot_metrics_evolution(r: MetricsEvolution):
    fig, axes = style.subplots(len(r.heads), 2, 6.2 * 2, 4.0 * len(r.heads))
    for (ax, ax2), head in zip(axes, r.heads, strict=True):
        draw_metrics_evolution(ax, ax2, r, head)
    rule = f"threshold rule: {r.rule}" if r.task == "binary" else "predicted class: arg-max"
    style.suptitle(fig, f"Metrics per epoch ({rule}; {resamples_phrase(r)})")
    return fig


# --------------------------------------------------------------------------- score evolution
def plot_score_evolution(r: ScoreEvolution):
    k = len(r.checkpoints)
    # One head: checkpoints wrap onto rows of three, so the figure is not a thin strip.
    wrap = len(r.heads) == 1 and k > 3
    cols = 3 if wrap else k
    rows = -(-k // 3) if wrap else len(r.heads)
    fig, axes = style.subplots(rows, cols, (3.4 if wrap else 2.8) * cols, 2.8 * rows, sharex=True)
    for ax in axes.flat[k:] if wrap else []:
        ax.axis("off")
    for ax in axes.flat if wrap else []:
        ax.tick_params(labelbottom=True)  # wrapped rows: every panel keeps its own scale labels
    dashed = False
    for i, head in enumerate(r.heads):
        for j, e in enumerate(r.checkpoints):
            ax = axes.flat[j] if wrap else axes[i, j]
            sub = r.hist[(r.hist["head"] == head) & (r.hist["epoch"] == e)]
            diagnostics.draw_densities(ax, sub, 1.1)
            thr = r.thresholds[(r.thresholds["head"] == head) & (r.thresholds["epoch"] == e)]["threshold"]
            if len(thr) and thr.iloc[0] is not None and np.isfinite(thr.iloc[0]):
                ax.axvline(thr.iloc[0], color="black", ls="--", lw=1)
                dashed = True
            ax.set_title(f"{head + ': ' if head else ''}epoch {e}", fontsize=8.5)
            if j % cols == 0:
                ax.set_ylabel("density")
                ax.legend(fontsize=6)
            ax.set_xlabel(r.score, fontsize=7)
    style.suptitle(fig, "Score distributions at checkpoint epochs" + (" (dashed: that epoch's threshold)" if dashed
                                                                      else " (predicted class: arg-max)"))
    return fig


# --------------------------------------------------------------------------- trajectories
def plot_sample_trajectories(r: SampleTrajectories):
    rows, cols = 1 if len(r.heads) == 1 else -(-len(r.heads) // 2), min(len(r.heads), 2)
    fig, axes = style.subplots(rows, cols, 6.6 * cols, 4.6 * rows)
    flat = list(axes.flat)
    for ax, head in zip(flat, r.heads, strict=False):
        bands = r.bands[r.bands["head"] == head]
        groups = list(pd.unique(bands["group"]))
        colours = dict(zip(groups, [NEG, POS] if len(groups) == 2 else _class_colours(len(groups)), strict=True))
        traj = r.trajectories[r.trajectories["head"] == head]
        for (_, label), t in traj.groupby(["sample_id", "label"], sort=False):
            ax.plot(t["epoch"], t["score"], color=colours.get(label, style.MUTED), lw=0.6, alpha=0.45)
        for g in groups:
            b = bands[bands["group"] == g]
            ax.plot(b["epoch"], b["median"], color=colours[g], lw=2.4, label=f"{g}: median (band IQR)")
            ax.fill_between(b["epoch"], b["q1"], b["q3"], color=colours[g], alpha=0.15)
        thr = r.thresholds[r.thresholds["head"] == head]
        if thr["threshold"].notna().any():
            ax.step(thr["epoch"], thr["threshold"].astype(float), where="mid", color="black", ls="--", lw=1.2,
                    label="threshold (per epoch)")
        ax.set_ylabel(r.score)
        _epoch_axis(ax, r.epochs)
        ax.legend(fontsize=6.5, loc="best", ncol=1 if len(groups) <= 4 else 2)
        ax.set_title(_head_title(head, f"thin lines: samples spread over the final {r.score}"))
    for ax in flat[len(r.heads):]:
        ax.axis("off")
    note = f"; {r.dropped} samples missing at some epoch left out" if r.dropped else ""
    style.suptitle(fig, f"Sample trajectories ({r.n_samples} samples followed{note})")
    return fig


# --------------------------------------------------------------------------- late bloomers
CATEGORY_COLOURS = dict(zip(CATEGORIES, ["#2ca02c", "#17becf", "#d62728", "#bcbd22", "#ff7f0e", "#7f7f7f"],
                            strict=True))


def plot_late_bloomers(r: LateBloomers):
    n = len(r.heads)
    has_img = r.pixels is not None and r.pixels.array is not None
    fig = style.figure(16, 4.3 * n + (1.9 if has_img else 0))
    gs = fig.add_gridspec(n + (1 if has_img else 0), 3, width_ratios=[1, 1.1, 1.4],
                          height_ratios=[4.3] * n + ([1.9] if has_img else []))
    for i, head in enumerate(r.heads):
        ax = fig.add_subplot(gs[i, 0])
        c = r.counts[r.counts["head"] == head]
        y = np.arange(len(c))[::-1]
        ax.barh(y, c["n"], color=[CATEGORY_COLOURS[k] for k in c["category"]])
        for yy, row in zip(y, c.to_dict(orient="records"), strict=True):
            ax.text(row["n"], yy, f" {row['n']} ({row['share']:.0%})", va="center", fontsize=7)
        ax.set_yticks(y, c["category"], fontsize=8)
        ax.set(xlabel="samples", xlim=(0, max(c["n"].max(), 1) * 1.3))
        ax.set_title(_head_title(head, "first vs last epoch"), fontsize=9)
        ax2 = fig.add_subplot(gs[i, 1])
        tr = r.transitions[r.transitions["head"] == head]
        le = r.learned[r.learned["head"] == head]
        ax2.bar(le["epoch"], le["n"], color=CATEGORY_COLOURS["late bloomer"], alpha=0.6,
                label="late bloomers learned (stay right from)")
        ax2.plot(tr["epoch"], tr["became_right"], marker="o", ms=3, color="#2ca02c", label="became right")
        ax2.plot(tr["epoch"], tr["became_wrong"], marker="o", ms=3, color="#d62728", label="became wrong")
        ax2.set_ylabel("samples")
        ax2.set_ylim(bottom=0)
        _epoch_axis(ax2, r.epochs)
        ax2.legend(fontsize=7)
        ax2.set_title("flips between consecutive epochs", fontsize=9)
        tax = fig.add_subplot(gs[i, 2])
        t = r.table[r.table["head"] == head].head(12)
        if len(t):
            rows = [[str(v["sample_id"])[:14], str(v["label"])[:10], v["learned_epoch"], v["flips"],
                     f"{v['first_score']:.3f}", f"{v['last_score']:.3f}"] for v in t.to_dict(orient="records")]
            draw_table(tax, ["sample", "label", "learned", "flips", "first", "last"], rows, fontsize=7)
            tax.set_title("latest bloomers (first / last: score or true-class probability)", fontsize=9)
        else:
            style.empty_axis(tax, "no late bloomer")
    if has_img:
        t = r.table[r.table["thumbnail"] >= 0].to_dict(orient="records")
        ax = fig.add_subplot(gs[n, :])
        draw_thumbnail_row(ax, t, r.pixels.array, CATEGORY_COLOURS["late bloomer"], max(len(t), 1),
                           text=lambda row: f"id {str(row['sample_id'])[:10]}\nlearned at epoch {row['learned_epoch']}")
        ax.set_title(f"{r.heads[0] + ': ' if r.heads[0] else ''}the latest bloomers", fontsize=9)
    how = f"each epoch at its own threshold (rule: {r.rule})" if r.task == "binary" else \
        "predicted class = arg-max at each epoch"
    style.suptitle(fig, f"Late bloomers: classification changes, {how}")
    return fig


# --------------------------------------------------------------------------- decision boundary
def plot_decision_boundary_evolution(r: DecisionBoundary):
    fig, axes = style.subplots(len(r.heads), 2, 6.2 * 2, 4.0 * len(r.heads))
    for (ax, ax2), head in zip(axes, r.heads, strict=True):
        t = r.table[r.table["head"] == head]
        e = t["epoch"].to_numpy()
        names = ("negative", "positive") if "negative_median" in t else ("best other class", "true class")
        for name, colour in zip(names, (NEG, POS), strict=True):
            ax.plot(e, t[f"{name}_median"], color=colour, lw=1.8, marker="o", ms=3, label=f"{name}: median (IQR)")
            ax.fill_between(e, t[f"{name}_q1"].astype(float), t[f"{name}_q3"].astype(float), color=colour, alpha=0.15)
        if t["threshold"].notna().any():
            ax.plot(e, t["threshold"].astype(float), color="black", ls="--", lw=1.2, label="threshold")
        if "youden_threshold" in t:
            ax.plot(e, t["youden_threshold"].astype(float), color=style.MUTED, ls=":", lw=1.2,
                    label="Youden threshold")
        ax.set_ylabel(r.score)
        _epoch_axis(ax, e)
        ax.legend(fontsize=7)
        ax.set_title(_head_title(head, "where the classes' scores lie"))
        if "separation" in t:
            ax2.plot(e, t["separation"].astype(float), marker="o", ms=3, color=style.PRIMARY, label="d' (separation)")
        ax2.set_ylabel("d'")
        twin = ax2.twinx()
        twin.spines["right"].set_visible(True)
        for col, colour, label in (("ks", "#2ca02c", "KS statistic"), ("auc", "#d62728", "AUC"),
                                   ("accuracy", "#9467bd", "accuracy")):
            if col in t and t[col].notna().any():
                twin.plot(e, t[col].astype(float), marker="s", ms=3, color=colour, ls="--", label=label)
        twin.set(ylim=(0, 1.02), ylabel="KS / AUC / accuracy")
        lines = ax2.get_lines() + twin.get_lines()
        ax2.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower right")
        _epoch_axis(ax2, e)
        ax2.set_title("separation of the classes")
    style.suptitle(fig, f"Decision boundary per epoch ({r.separation})")
    return fig
