"""best_model/ figures. `draw_*` draws one head (or one panel) on given axes; `plot_*` makes the file.
Multi-output models get one panel (or one row of panels) per head in the same file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlviz.analysis.calibration import Calibration
from mlviz.analysis.diagnostics import (
    ConfusionMatrices,
    PrCurves,
    RegressionFit,
    RegressionResiduals,
    RocCurves,
    SampleSelection,
    ScoreDistributions,
    SliceMetrics,
    ThresholdMetrics,
)
from mlviz.analysis.stats import resamples_phrase
from mlviz.render import style
from mlviz.render.style import plt


def _of_groups(r) -> str:
    """' of G groups (column)' when the result's bootstrap resampled whole groups, else ''."""
    if getattr(r, "bootstrap_unit", "samples") != "groups":
        return ""
    return f" of {r.n_groups} groups ({r.group_column})"

NEG, POS = "#4c72b0", "#dd4444"
CASE_COLOURS = {"TP": "#2ca02c", "TN": "#1f77b4", "FP": "#ff7f0e", "FN": "#d62728", "correct": "#2ca02c",
                "wrong": "#d62728"}


def _class_colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _head_title(head: str, extra: str = "") -> str:
    return " — ".join(p for p in (head, extra) if p) or " "


def _note(fig, text: str | None):
    """A footnote that constrained layout makes room for."""
    if text:
        fig.supxlabel(style.wrap(text, max(int(fig.get_figwidth() * 15), 60)), fontsize=7, color=style.MUTED)


def _num(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".") or "0"


def draw_table(ax, header, rows, fontsize: float = 7, highlight: dict[int, str] | None = None):
    """A table filling the axes (rows shrink to fit rather than spill over the title)."""
    ax.axis("off")
    if not rows:
        style.empty_axis(ax, "no rows")
        return None
    tab = ax.table(cellText=[[str(c) for c in r] for r in rows], colLabels=header, cellLoc="center",
                   bbox=[0, 0, 1, 1])
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    for i, colour in {-1: "#e8e8e8", **(highlight or {})}.items():  # -1: the header
        for j in range(len(header)):
            tab[i + 1, j].set_facecolor(colour)
    return tab


# --------------------------------------------------------------------------- ROC
def _classes(r, head: str):
    """A head's curves for the ROC and PR panels: (its summary rows, several classes?, [(colour, row,
    curve points)]): one curve in the primary colour for a binary head, a colour per class otherwise."""
    summary = r.summary[r.summary["head"] == head]
    multi = len(summary) > 1
    colours = _class_colours(len(summary)) if multi else [style.PRIMARY]
    curves = r.curves[r.curves["head"] == head]
    return summary, multi, [(colour, row, curves[curves["class"] == row["class"]])
                            for colour, row in zip(colours, summary.to_dict(orient="records"), strict=True)]


def draw_roc(ax, r: RocCurves, head: str):
    summary, multi, classes = _classes(r, head)
    colours = [c for c, _, _ in classes]
    for colour, row, cur in classes:
        auc = style.with_interval(row["auc"], row["auc_low"], row["auc_high"])
        label = f"{row['class']}: AUC {auc}" if multi else f"AUC {auc}"
        ax.plot(cur["fpr"], cur["tpr"], color=colour, lw=1.4 if not multi else 1.0, label=label,
                drawstyle="steps-post")
        if len(r.band):
            band = r.band[(r.band["head"] == head) & (r.band["class"] == row["class"])]
            ax.fill_between(band["fpr"], band["tpr_low"], band["tpr_high"], step="post", color=colour,
                            alpha=0.18 if not multi else 0.07, lw=0,
                            label=f"{r.level:.0%} bootstrap band (pointwise)" if not multi or colour == colours[0]
                            else None)
        if multi:  # each class's operating points, in its colour; one legend entry says what they are
            for key, marker, what in (("youden", "o", "● Youden J"), ("f1", "s", "■ max-F1")):
                ax.plot(row[f"{key}_fpr"], row[f"{key}_tpr"], marker, color=colour, ms=4.5, mec="black", mew=0.5,
                        zorder=4, label=f"{what}, per class" if colour == colours[0] else None)
        else:
            ax.plot(row["youden_fpr"], row["youden_tpr"], "o", color="black", ms=6, zorder=4,
                    label=f"Youden J {row['youden_j']:.2f} at {row['youden_threshold']:.3g}")
            ax.plot(row["f1_fpr"], row["f1_tpr"], "s", color=style.SECONDARY, ms=6, zorder=4, mec="black",
                    label=f"max F1 {row['max_f1']:.2f} at {row['f1_threshold']:.3g}")
    ax.plot([0, 1], [0, 1], ls="--", color=style.MUTED, lw=0.8, label="chance")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal",
           xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (recall)")
    ax.legend(loc="lower right", fontsize=6.5 if multi else 7.5)
    title = _macro_title(r, head, "auc")
    if not title and not multi and len(summary):
        row = summary.iloc[0]
        title = f"{row['class']} vs rest: n+ = {row['n_pos']}, n− = {row['n_neg']}"
    ax.set_title(_head_title(head, title))


def _per_head(r, draw, height: float, title: str):
    """One panel per head that has a curve, drawn by `draw(ax, r, head)`; heads left out are noted."""
    heads = [h for h in r.heads if (r.summary["head"] == h).any()]
    fig, axes = style.grid(len(heads), 3 if len(heads) != 4 else 2, 5.2, height)
    for ax, head in zip(axes, heads, strict=True):
        draw(ax, r, head)
    style.suptitle(fig, title)
    _note(fig, f"left out (one class only): {', '.join(r.left_out)}" if r.left_out else None)
    return fig


def _macro_title(r, head: str, metric: str) -> str:
    """'macro AUC 0.91 [0.88, 0.93]' for a multi-class head, else ''."""
    mac = r.macro[r.macro["head"] == head] if len(r.macro) else r.macro
    if not len(mac):
        return ""
    m = mac.iloc[0]
    return f"macro {metric.upper()} {style.with_interval(m[metric], m[f'{metric}_low'], m[f'{metric}_high'])}"


def plot_roc_curve(r: RocCurves):
    return _per_head(r, draw_roc, 5.0, f"ROC curve ({resamples_phrase(r)}; intervals {r.level:.0%}"
                     + ("; multi-class: one-vs-rest per class, macro = mean)" if len(r.macro) else ")"))


# --------------------------------------------------------------------------- PR
def draw_pr(ax, r: PrCurves, head: str):
    summary, multi, classes = _classes(r, head)
    colours = [c for c, _, _ in classes]
    for colour, row, cur in classes:
        ap = style.with_interval(row["ap"], row["ap_low"], row["ap_high"])
        ax.plot(cur["recall"], cur["precision"], color=colour, lw=1.0 if multi else 1.4, drawstyle="steps-post",
                label=f"{row['class']}: AP {ap}" if multi else f"AP {ap}")
        ax.axhline(row["prevalence"], color=colour, ls=":", lw=0.8,
                   label=None if multi else f"no skill (positive rate {row['prevalence']:.3f})")
        if not multi:
            ax.plot(row["f1_recall"], row["f1_precision"], "s", color=style.SECONDARY, mec="black", ms=6, zorder=4,
                    label=f"max F1 {row['max_f1']:.2f} at {row['f1_threshold']:.3g}")
        else:
            ax.plot(row["f1_recall"], row["f1_precision"], "s", color=colour, mec="black", mew=0.5, ms=4.5, zorder=4,
                    label="■ max-F1, per class" if colour == colours[0] else None)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.03), xlabel="recall", ylabel="precision")
    ax.legend(loc="lower left", fontsize=6.5 if multi else 7.5)
    title = _macro_title(r, head, "ap")
    if not title and len(summary):
        title = f"{summary.iloc[0]['class']} vs rest"
    ax.set_title(_head_title(head, title))


def plot_precision_recall(r: PrCurves):
    return _per_head(r, draw_pr, 4.6, f"Precision-recall curve (AP: step-wise average precision, {r.level:.0%} "
                     f"bootstrap interval{_of_groups(r)}; dotted: the no-skill precision, i.e. the positive rate)")


# --------------------------------------------------------------------------- metrics vs threshold
METRIC_COLOURS = {"precision": "#1f77b4", "recall": "#d62728", "f1": "#2ca02c", "accuracy": "#9467bd",
                  "specificity": "#8c564b"}


def draw_threshold_curves(ax, r: ThresholdMetrics, head: str):
    cur = r.curves[r.curves["head"] == head]
    classes = [c for c in pd.unique(cur["class"]) if c != "macro"]
    chosen = r.chosen[r.chosen["head"] == head]
    if "macro" in set(cur["class"]):
        main = cur[cur["class"] == "macro"]
        for colour, c in zip(_class_colours(len(classes)), classes, strict=True):
            sub = cur[cur["class"] == c]
            ax.plot(sub["threshold"], sub["f1"], color=colour, lw=0.6, alpha=0.5)
        what = "macro over classes (one-vs-rest); thin: F1 per class"
    else:
        main = cur
        what = f"{classes[0]} vs rest"
    for m, colour in METRIC_COLOURS.items():
        ax.plot(main["threshold"], main[m], color=colour, lw=1.5, label=m)
    if len(chosen) == 1:
        c = chosen.iloc[0]
        ax.axvline(c["threshold"], color="black", ls="--", lw=1, label=f"chosen {c['threshold']:.3g} ({c['rule']})")
        if not np.isclose(c["max_f1_threshold"], c["threshold"]):
            ax.axvline(c["max_f1_threshold"], color=METRIC_COLOURS["f1"], ls=":", lw=1,
                       label=f"max F1 at {c['max_f1_threshold']:.3g}")
    ax.set(ylim=(-0.02, 1.02), xlabel="threshold (positive when score ≥ threshold)", ylabel="metric")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(_head_title(head, what))


def _threshold_rows(r: ThresholdMetrics, head: str) -> tuple[list[str], list[list[str]], dict]:
    tab = r.table[r.table["head"] == head]
    classes = list(pd.unique(tab["class"]))
    if len(classes) == 1:
        header = ["threshold", "TP", "FP", "TN", "FN", "precision", "recall", "specificity", "F1", "flagged"]
        rows, marks = [], {}
        recs = tab.to_dict(orient="records")
        special = [t for t in recs if t["marker"] != "grid"]
        for t in recs:  # a grid row equal to the chosen / max-F1 threshold carries its mark instead of a duplicate
            if t["marker"] != "grid" and any(g["marker"] == "grid" and np.isclose(g["threshold"], t["threshold"])
                                             for g in recs):
                continue
            kinds = [x["marker"] for x in special if np.isclose(x["threshold"], t["threshold"])] \
                if t["marker"] == "grid" else [t["marker"]]
            mark = "".join({"chosen": " *", "max F1": " †"}.get(k, "") for k in kinds)
            if mark:
                marks[len(rows)] = "#fff2cc"
            rows.append([f"{t['threshold']:.3g}{mark}", t["tp"], t["fp"], t["tn"], t["fn"], _num(t["precision"]),
                         _num(t["recall"]), _num(t["specificity"]), _num(t["f1"]), t["flagged"]])
        return header, rows, marks
    header = ["class", "TP", "FP", "TN", "FN", "precision", "recall", "specificity", "F1", "support"]
    rows = [[str(t["class"])[:12], t["tp"], t["fp"], t["tn"], t["fn"], _num(t["precision"]), _num(t["recall"]),
             _num(t["specificity"]), _num(t["f1"]), t["support_pos"]]
            for t in tab[tab["marker"] == "chosen"].to_dict(orient="records")]
    return header, rows, {}


def plot_metrics_vs_threshold(r: ThresholdMetrics):
    heads = [h for h in r.heads if (r.curves["head"] == h).any()]
    n = len(heads)
    fig, axes = style.subplots(n, 2, 14, 5.0 * n if n == 1 else 4.2 * n, gridspec_kw={"width_ratios": [1, 1.05]})
    for (ax, tax), head in zip(axes, heads, strict=True):
        draw_threshold_curves(ax, r, head)
        header, rows, marks = _threshold_rows(r, head)
        draw_table(tax, header, rows, fontsize=7, highlight=marks)
        tax.set_title("per class, one-vs-rest, at the chosen threshold" if header[0] == "class" else
                      "threshold table (* chosen, † max F1; flagged = predicted positive)", fontsize=9)
    style.suptitle(fig, "Metrics against the decision threshold")
    return fig


# --------------------------------------------------------------------------- score distributions
def draw_densities(ax, hist: pd.DataFrame, lw: float, label=str):
    """Each group's histogram (bin_lo, bin_hi, density), negatives then positives: filled, then outlined."""
    for colour, (group, sub) in zip((NEG, POS), hist.groupby("group", sort=False), strict=False):
        edges = np.r_[sub["bin_lo"].to_numpy(), sub["bin_hi"].to_numpy()[-1]]
        ax.stairs(sub["density"].to_numpy(), edges, color=colour, fill=True, alpha=0.3)
        ax.stairs(sub["density"].to_numpy(), edges, color=colour, lw=lw, label=label(group))


def draw_distribution(ax, r: ScoreDistributions, head: str, cls: str, compact: bool = False):
    hist = r.hist[(r.hist["head"] == head) & (r.hist["class"] == cls)]
    stats = r.stats[(r.stats["head"] == head) & (r.stats["class"] == cls)]
    draw_densities(ax, hist, 1.2, lambda g: f"{g} (n={int(stats[stats['group'] == g]['n'].iloc[0])})")
    sep = r.separation[(r.separation["head"] == head) & (r.separation["class"] == cls)]
    title = cls if compact else ""
    if len(sep):
        s = sep.iloc[0]
        if s["threshold"] is not None and np.isfinite(s["threshold"]):
            ax.axvline(s["threshold"], color="black", ls="--", lw=1, label=f"threshold {s['threshold']:.3g}")
        if s["ks"] is not None and np.isfinite(s["ks"]):
            title += f"{' — ' if title else ''}KS {s['ks']:.2f}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("probability" if r.probabilities else "score", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.legend(fontsize=6.5 if compact else 8)


def plot_score_distributions(r: ScoreDistributions):
    pairs = r.stats[["head", "class"]].drop_duplicates().to_records(index=False).tolist()
    heads = list(dict.fromkeys(h for h, _ in pairs))
    per_head = {h: [c for hh, c in pairs if hh == h] for h in heads}
    k = max(len(v) for v in per_head.values())
    if len(heads) == 1 and k == 1:
        fig, axes = style.subplots(1, 1, 7, 4.4)
        draw_distribution(axes[0, 0], r, heads[0], per_head[heads[0]][0])
        axes[0, 0].set_title(f"{per_head[heads[0]][0]} vs rest — " + axes[0, 0].get_title())
    elif len(heads) == 1:
        fig, axes = style.grid(k, 3, 3.6, 3.0)
        for ax, c in zip(axes, per_head[heads[0]], strict=True):
            draw_distribution(ax, r, heads[0], c, compact=True)
    else:
        fig, grid = style.subplots(len(heads), k, 3.4 * k, 2.8 * len(heads))
        for row, h in zip(grid, heads, strict=True):
            for ax in row[len(per_head[h]):]:
                ax.axis("off")
            for ax, c in zip(row, per_head[h], strict=False):
                draw_distribution(ax, r, h, c, compact=True)
                ax.set_title(f"{h}: {ax.get_title()}", fontsize=8.5)
    what = "score" if not r.probabilities else "probability"
    style.suptitle(fig, f"Class-conditional {what} distributions (each group's density integrates to 1; "
                        "multi-class: each class's probability, true class vs the rest)")
    return fig


# --------------------------------------------------------------------------- confusion
def draw_confusion(ax, m):
    counts = np.array(m.counts)
    pct = np.array(m.row_percent, dtype=float)  # None: nan
    im = ax.imshow(np.nan_to_num(pct), cmap="Blues", vmin=0, vmax=100)
    k = len(m.labels)
    fs = 9 if k <= 4 else (7 if k <= 8 else 5.5)
    for i in range(k):
        for j in range(k):
            p = pct[i, j]
            txt = f"{counts[i, j]}\n{p:.1f}%" if np.isfinite(p) and counts[i, j] else f"{counts[i, j]}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fs,
                    color="white" if np.isfinite(p) and p > 55 else "black")
    labels = [str(x)[:12] for x in m.labels]
    ax.set_xticks(range(k), labels, rotation=40 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), labels)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(f"{m.title}\naccuracy {m.accuracy:.3f}", fontsize=9)
    return im


def plot_confusion_matrix(r: ConfusionMatrices):
    n = len(r.matrices)
    k = max(len(m.labels) for m in r.matrices)
    size = 3.6 if k <= 3 else min(3.6 + 0.45 * k, 8)
    fig, axes = style.grid(n, 2 if n == 4 else 3, size + 0.6, size)
    im = None
    for ax, m in zip(axes, r.matrices, strict=True):
        im = draw_confusion(ax, m)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.7, label="row % (share of the true class)")
    style.suptitle(fig, "Confusion matrix: counts and row percentages")
    _note(fig, r.convention)
    return fig


# --------------------------------------------------------------------------- calibration
def draw_reliability(ax, r: Calibration, head: str):
    b = r.bins[(r.bins["head"] == head) & (r.bins["target"] == r.targets[head])]
    ax.plot([0, 1], [0, 1], ls="--", color=style.MUTED, lw=0.8, label="perfect calibration")
    for strategy, colour, marker, label in (("equal_width", style.PRIMARY, "o", f"{r.n_bins} equal-width bins"),
                                            ("equal_mass", style.SECONDARY, "s", f"{r.n_bins} equal-mass bins")):
        sub = b[(b["strategy"] == strategy) & (b["count"] > 0)]
        ax.plot(sub["confidence"], sub["observed"], marker=marker, ms=4, color=colour, lw=1.2, label=label)
    ew = b[(b["strategy"] == "equal_width") & (b["count"] > 0)]
    for row in ew.to_dict(orient="records"):  # the gap of each equal-width bin
        ax.plot([row["confidence"]] * 2, [row["confidence"], row["observed"]], color="#e377c2", lw=2, alpha=0.45)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    target = r.targets[head]
    ax.set_xlabel("mean predicted probability in the bin" + (" (top label)" if target == "top label" else ""))
    ax.set_ylabel("observed accuracy" if target == "top label" else "observed fraction positive")
    ax.legend(loc="upper left", fontsize=7)
    m = r.metrics[r.metrics["head"] == head].set_index("metric")
    names = {"ece": "ECE (equal-width)", "ece_equal_mass": "ECE (equal-mass)", "mce": "MCE",
             "classwise_ece": "classwise ECE", "brier": "Brier", "nll": "NLL"}
    lines = [f"{names[k]}: {style.with_interval(m.loc[k, 'value'], m.loc[k, 'low'], m.loc[k, 'high'])}"
             for k in names if k in m.index]
    ax.text(0.98, 0.02, "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
            bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc", "alpha": 0.9})
    ax.set_title(_head_title(head, target))


def draw_bin_counts(ax, r: Calibration, head: str):
    b = r.bins[(r.bins["head"] == head) & (r.bins["target"] == r.targets[head]) & (r.bins["strategy"] == "equal_width")]
    width = np.maximum((b["hi"] - b["lo"]).to_numpy(), 0.012)
    ax.bar(b["lo"], b["count"], width=width, align="edge", color="#9ecae1", edgecolor="white")
    for row in b.to_dict(orient="records"):
        if row["count"]:
            ax.text(row["lo"] + max(row["hi"] - row["lo"], 0.012) / 2, row["count"], str(row["count"]), ha="center",
                    va="bottom", fontsize=5.5, rotation=90 if r.n_bins > 10 else 0)
    if b["count"].max() > 50 * max(b.loc[b["count"] > 0, "count"].min(), 1):
        ax.set_yscale("log")
    ax.set(xlim=(-0.01, 1.02), xlabel="predicted probability (equal-width bins)", ylabel="samples")


def plot_calibration(r: Calibration):
    n = len(r.heads)
    rows, cols = style.grid_shape(n, 4)
    fig = style.figure(max(4.6 * cols, 7.5), 6.6 * rows)
    gs = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    for i, head in enumerate(r.heads):
        rr, cc = divmod(i, cols)
        draw_reliability(fig.add_subplot(gs[2 * rr, cc]), r, head)
        draw_bin_counts(fig.add_subplot(gs[2 * rr + 1, cc]), r, head)
    style.suptitle(fig, f"Calibration: reliability diagram, {r.level:.0%} bootstrap intervals "
                        f"({resamples_phrase(r, 'resamples')})")
    _note(fig, r.convention)
    return fig


# --------------------------------------------------------------------------- slices
def draw_slices(ax, r: SliceMetrics, head: str, column: str):
    t = r.table[(r.table["head"] == head) & (r.table["column"] == column)]
    y = np.arange(len(t))[::-1]
    p = r.primary
    vals = t[p].to_numpy(dtype=float)
    lo = t[f"{p}_low"].to_numpy(dtype=float)
    hi = t[f"{p}_high"].to_numpy(dtype=float)
    # a dot plot (not bars from zero) so that differences between slices stay visible
    ax.plot(vals, y, "o", color="black", ms=6, label=p, zorder=4)
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(vals[ok], y[ok], xerr=[vals[ok] - lo[ok], hi[ok] - vals[ok]], fmt="none", ecolor="black", capsize=3,
                lw=1.2, zorder=4)
    shown = [vals, lo, hi]
    extra = [m for m in (("auc", "#d62728", "D"), ("recall", "#2ca02c", ">"), ("specificity", "#9467bd", "<"),
                         ("rmse", "#d62728", "D"), ("bias", "#2ca02c", "s")) if m[0] in t.columns]
    for k, (name, colour, marker) in enumerate(extra):
        v = t[name].to_numpy(dtype=float)
        if not np.isfinite(v).any():
            continue
        elo = t.get(f"{name}_low", pd.Series([np.nan] * len(t))).to_numpy(dtype=float)
        ehi = t.get(f"{name}_high", pd.Series([np.nan] * len(t))).to_numpy(dtype=float)
        ok2 = np.isfinite(v) & np.isfinite(elo) & np.isfinite(ehi)
        dy = 0.12 * (k + 1)  # small vertical offsets keep the markers apart
        ax.plot(v, y - dy, marker, color=colour, ms=5, ls="none", label=name)
        ax.errorbar(v[ok2], y[ok2] - dy, xerr=[v[ok2] - elo[ok2], ehi[ok2] - v[ok2]], fmt="none", ecolor=colour,
                    capsize=2, lw=0.8, alpha=0.8)
        shown += [v, elo, ehi]
    allv = np.concatenate(shown)
    allv = allv[np.isfinite(allv)]
    if len(allv):
        a, b = float(allv.min()), float(allv.max())
        pad = 0.08 * ((b - a) or max(abs(a), 1e-3))
        ax.set_xlim(a - pad, b + pad)
    for yy in y:
        ax.axhspan(yy - 0.5, yy + 0.5, color="#f2f2f2" if yy % 2 else "white", zorder=0)
    ax.set_ylim(-0.6 - 0.12 * len(extra), len(t) - 0.4)
    labels = [f"{str(row['value'])[:20]}\n(n={row['n']}"
              + (f", {row['n_pos']} pos" if row.get("n_pos") is not None else "") + ")"
              for row in t.to_dict(orient="records")]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(f"{p} ● and the others' markers, with {r.level:.0%} bootstrap intervals")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16 if len(t) > 3 else -0.3), ncol=4)
    ax.set_title(_head_title(head, f"by {column} (worst first)"), fontsize=9)


def plot_slice_metrics(r: SliceMetrics):
    pairs = r.table[["head", "column"]].drop_duplicates().to_records(index=False).tolist()
    sizes = [int(((r.table["head"] == h) & (r.table["column"] == c)).sum()) for h, c in pairs]
    fig, axes = style.grid(len(pairs), 3, 5.4, max(3.0, 0.5 * max(sizes) + 1.8))
    for ax, (h, c) in zip(axes, pairs, strict=True):
        draw_slices(ax, r, h, c)
    what = "Error by slice" if r.primary == "mae" else "Metrics by slice"
    grouped = f"; intervals resample whole groups of {r.group_column}" if r.bootstrap_unit == "groups" else ""
    style.suptitle(fig, f"{what}: {r.primary} per value, worst slice on top{grouped}")
    _note(fig, "; ".join(r.notes) if r.notes else None)
    return fig


# --------------------------------------------------------------------------- samples
def _card_text(row: dict) -> str:
    """Under each thumbnail: the id, the true and the predicted class (each named as such) with their
    probabilities; lines short enough for the thumbnail's width."""
    p_true = row.get("p_true")
    if p_true is not None and p_true == p_true:  # multi-class: probability of the predicted and the true class
        if row["label"] != row["predicted"]:
            text = (f"true {style.shorten(row['label'], 11)} P {p_true:.2f}\n"
                    f"pred {style.shorten(row['predicted'], 11)} P {row['score']:.2f}")
        else:
            text = f"true = pred {style.shorten(row['label'], 11)}\nP {row['score']:.2f}"
    else:
        text = f"true {style.shorten(row['label'], 12)}\nscore {row['score']:.3f}" if "label" in row else \
            f"score {row['score']:.3f}"
    return f"id {str(row['sample_id'])[:14]}\n{text}"


def draw_thumbnail_row(ax, rows: list[dict], images: np.ndarray, colour, ncols: int, text=_card_text,
                       overlays: np.ndarray | None = None):
    """Thumbnails side by side in one axes (one axes per row keeps large galleries quick to lay out);
    `overlays`: attribution maps in [0, 1] drawn over them (opacity growing with the map)."""
    gap = 0.12
    # With an overlay, the input is drawn beside it (not only under it), so the input stays visible.
    tile = 2.04 if overlays is not None else 1.0
    for j, row in enumerate(rows):
        x0 = j * (tile + gap)
        img = images[int(row["thumbnail"])]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest",
                  extent=(x0, x0 + 1, 0, 1))
        if overlays is not None:
            from mlviz.render.overlay import MLVIZ_HEAT

            cam = np.asarray(overlays[int(row["thumbnail"])], dtype=float)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest",
                      extent=(x0 + 1.04, x0 + 2.04, 0, 1))
            ax.imshow(cam, cmap=MLVIZ_HEAT, vmin=0, vmax=1, alpha=np.clip(0.6 * (0.3 + 0.7 * cam), 0, 1),
                      interpolation="nearest", extent=(x0 + 1.04, x0 + 2.04, 0, 1))
        ax.add_patch(plt.Rectangle((x0, 0), tile, 1, fill=False, ec=colour, lw=2.5))
        ax.text(x0 + tile / 2, 1.04, text(row), ha="center", va="bottom", fontsize=6.5)
    ax.set(xlim=(-0.05, ncols * (tile + gap) - gap + 0.05), ylim=(-0.03, 1.6), aspect="equal")
    ax.axis("off")


def _selection_table(r: SampleSelection, title: str):
    """Without images: one table of the selected samples per head (case, rank, id, label, score)."""
    heads = list(dict.fromkeys(r.table["head"]))
    multi = "p_true" in r.table.columns
    header = ["case", "#", "sample id", "true", "predicted", "P(pred)" if multi else "score"] + \
        (["P(true)"] if multi else []) + [c for c in ("image_path",) if c in r.table.columns]
    sizes = [int((r.table["head"] == h).sum()) for h in heads]
    fig, axes = style.grid(len(heads), 2, 7.2, 0.24 * max(sizes) + 1.0)
    for ax, h in zip(axes, heads, strict=True):
        t = r.table[r.table["head"] == h]
        body, marks = [], {}
        for i, row in enumerate(t.to_dict(orient="records")):
            body.append([row["case"], row["rank"], str(row["sample_id"])[:18], str(row["label"])[:12],
                         str(row["predicted"])[:12], f"{row['score']:.3f}"]
                        + ([f"{row['p_true']:.3f}"] if multi else [])
                        + ([str(row["image_path"])[-28:]] if "image_path" in row else []))
            marks[i] = {"TP": "#e5f5e0", "TN": "#deebf7", "FP": "#fee6ce", "FN": "#fcbba1", "correct": "#e5f5e0",
                        "wrong": "#fcbba1"}.get(row["case"], "white")
        draw_table(ax, header, body, fontsize=7, highlight=marks)
        thr = r.thresholds.get(h)
        ax.set_title(_head_title(h, f"threshold {thr:.3g}" if thr is not None else "arg-max class"), fontsize=9)
    style.suptitle(fig, title)
    return fig


def _selection_grid(r: SampleSelection, ncols: int, title: str):
    if r.pixels is None or r.pixels.array is None:
        fig = _selection_table(r, title)
        _note(fig, f"no thumbnails: {r.pixels.get('note') if r.pixels is not None else 'no images'}")
        return fig
    groups = [(h, c) for h in dict.fromkeys(r.table["head"]) for c in r.cases
              if ((r.table["head"] == h) & (r.table["case"] == c)).any()]
    if not groups:
        fig, axes = style.subplots(1, 1, 6, 2)
        style.empty_axis(axes[0, 0], "no sample in any case")
        return fig
    ncols = min(ncols, max(int(((r.table["head"] == h) & (r.table["case"] == c)).sum()) for h, c in groups))
    layout = [(h, c, sub.iloc[i:i + ncols], i == 0) for h, c in groups
              for sub in [r.table[(r.table["head"] == h) & (r.table["case"] == c)]] for i in range(0, len(sub), ncols)]
    cell = 1.5
    overlays = getattr(r.pixels, "overlays", None)
    wide = 2.16 if overlays is not None else 1.0  # input | overlay per card
    fig = style.figure(max(1.3 + cell * ncols * wide, 6), 1.45 * cell * len(layout) + 0.7)
    gs = fig.add_gridspec(len(layout), 2, width_ratios=[1.2, cell * ncols * wide])
    for i, (h, c, chunk, first) in enumerate(layout):
        lab = fig.add_subplot(gs[i, 0])
        lab.axis("off")
        if first:
            thr = r.thresholds.get(h)
            text = f"{h + chr(10) if h else ''}{c}" + (f"\n(thr {thr:.3g})" if thr is not None else "")
            lab.text(0.95, 0.5, text, ha="right", va="center", fontsize=9, fontweight="bold",
                     color=CASE_COLOURS.get(c, "black"))
        draw_thumbnail_row(fig.add_subplot(gs[i, 1]), chunk.to_dict(orient="records"), r.pixels.array,
                           CASE_COLOURS.get(c, "black"), ncols, overlays=overlays)
    if overlays is not None:
        from matplotlib.cm import ScalarMappable

        from mlviz.render.overlay import MLVIZ_HEAT

        bar = fig.colorbar(ScalarMappable(plt.Normalize(0, 1), MLVIZ_HEAT), ax=fig.axes, shrink=0.6, pad=0.01)
        bar.set_label(r.pixels["overlay"], fontsize=7)
        title += f" (each card: the input, then the {r.pixels['overlay'].split(' for ')[0]} overlay)"
    style.suptitle(fig, title)
    notes = []
    for h in dict.fromkeys(r.table["head"]):
        empty = [c for c in r.cases if not ((r.table["head"] == h) & (r.table["case"] == c)).any()]
        if empty:
            notes.append(f"{h + ': ' if h else ''}no {', no '.join(empty)} at the threshold")
    _note(fig, "; ".join(notes))
    return fig


def plot_hardest_samples(r: SampleSelection):
    return _selection_grid(r, 6, "Hardest samples: " + (
        "wrong with the lowest probability of the true class (most confidently wrong first)" if r.cases == ["wrong"]
        else "false negatives with the lowest scores, false positives with the highest"))


def plot_case_gallery(r: SampleSelection):
    title = "Case gallery: " + " / ".join(r.cases) + " examples, spread from the most to the least confident"
    return _selection_grid(r, 6, title)


# --------------------------------------------------------------------------- regression
def plot_regression_predicted_vs_true(r: RegressionFit):
    fig, [[ax]] = style.subplots(1, 1, 6.2, 5.8)
    y, yhat = r.points["y_true"].to_numpy(), r.points["y_pred"].to_numpy()
    if r.n > 5000:
        hb = ax.hexbin(y, yhat, gridsize=60, mincnt=1, bins="log", cmap="viridis")
        fig.colorbar(hb, ax=ax, label="samples (log)")
    else:
        ax.scatter(y, yhat, s=10, alpha=float(np.clip(30 / np.sqrt(max(r.n, 1)), 0.15, 0.8)), color=style.PRIMARY)
    lo, hi = float(min(y.min(), yhat.min())), float(max(y.max(), yhat.max()))
    pad = 0.03 * ((hi - lo) or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="black", lw=1, label="y = x")
    ax.set(xlabel="true value", ylabel="predicted value")
    m = r.metrics.set_index("metric")
    names = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "bias": "bias (mean predicted − true)"}
    text = "\n".join(f"{names[k]}: {style.with_interval(m.loc[k, 'value'], m.loc[k, 'low'], m.loc[k, 'high'])}"
                     for k in names if k in m.index)
    ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc"})
    ax.legend(loc="lower right")
    ax.set_title(f"Predicted vs true ({r.n} samples; {r.level:.0%} bootstrap intervals{_of_groups(r)})")
    return fig


def plot_regression_residuals(r: RegressionResiduals):
    fig, [[ax, ax2]] = style.subplots(1, 2, 12, 4.6)
    x, res = r.points["y_pred"].to_numpy(), r.points["residual"].to_numpy()
    ax.scatter(x, res, s=8, alpha=float(np.clip(30 / np.sqrt(max(r.n, 1)), 0.08, 0.7)), color=style.PRIMARY,
               rasterized=True)
    if len(r.binned):
        mid = (r.binned["bin_lo"] + r.binned["bin_hi"]) / 2
        ax.plot(mid, r.binned["mean"], color=style.HIGHLIGHT, lw=1.6, label="binned mean")
        ax.fill_between(mid, r.binned["mean"] - r.binned["sd"], r.binned["mean"] + r.binned["sd"],
                        color=style.HIGHLIGHT, alpha=0.15, label="± sd")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="predicted value", ylabel="residual (predicted − true)")
    ax.legend(fontsize=8)
    ax.set_title("Residuals against the prediction")
    edges = np.r_[r.hist["bin_lo"].to_numpy(), r.hist["bin_hi"].to_numpy()[-1]]
    ax2.stairs(r.hist["count"].to_numpy(), edges, fill=True, color="#9ecae1")
    ax2.axvline(0, color="black", lw=0.8)
    ax2.axvline(r.mean, color=style.HIGHLIGHT, ls="--", lw=1, label=f"mean {r.mean:.3g}")
    ax2.set(xlabel="residual", ylabel="samples")
    ax2.legend(fontsize=8)
    ax2.set_title(f"Residual distribution (sd {r.sd:.3g})")
    return fig
