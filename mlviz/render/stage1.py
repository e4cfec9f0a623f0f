"""Stage-1 figures. `draw_*` draws one result on given axes (so the dashboard can reuse it);
`plot_*` makes the whole figure file."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection

from mlviz.analysis.stage1 import (
    CategoricalComparison,
    Heatmaps,
    MetricCorrelations,
    MetricDistributions,
    OptimizationHistory,
    ParallelCoordinates,
    ParameterEffects,
    ParameterImportance,
    TopK,
)
from mlviz.render import style
from mlviz.render.style import plt


# --------------------------------------------------------------------------- heatmaps
def draw_heatmap_pair(ax, pair, metric: str, mode: str, annotate: bool = True, colorbar: bool = True,
                      limits: tuple[float, float] | None = None):
    mean = np.array(pair.mean, dtype=float)  # None: nan
    cmap = plt.get_cmap(style.OBJECTIVE_CMAP if mode == "max" else style.OBJECTIVE_CMAP + "_r").with_extremes(
        bad="#eeeeee")
    vmin, vmax = limits if limits else (None, None)
    counts = np.array(pair.n, dtype=float)
    # A cell of one run is as loud as its mean is extreme: fade cells by their n (full colour at the
    # pair's largest n), so a reader's eye goes to the cells that carry evidence.
    alpha = 0.25 + 0.75 * np.sqrt(counts / counts.max()) if counts.size and counts.max() > 0 else None
    im = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, aspect="auto", origin="lower", vmin=vmin, vmax=vmax,
                   alpha=alpha)
    style.set_ticklabels(ax, "x", range(len(pair.x_labels)), pair.x_labels, limit=18, fontsize=7)
    style.set_ticklabels(ax, "y", range(len(pair.y_labels)), pair.y_labels, limit=18, fontsize=7)
    ax.set_xlabel(style.shorten(pair.x_param, style.chars_along(ax, "x", 9)))
    ax.set_ylabel(style.shorten(pair.y_param, style.chars_along(ax, "y", 9)))
    if annotate:
        lo, hi = limits or ((np.nanmin(mean), np.nanmax(mean)) if np.isfinite(mean).any() else (0.0, 1.0))
        for yi, row in enumerate(pair.mean):
            for xi, v in enumerate(row):
                if v is None:
                    continue
                dark = (v - lo) / ((hi - lo) or 1) < 0.5
                dark = (dark if mode == "max" else not dark) and alpha is not None and alpha[yi][xi] > 0.6
                ax.text(xi, yi, f"{v:.3g}\nn={pair.n[yi][xi]}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=f"mean {style.shorten(metric, 30)}")
    return im


def plot_heatmaps(result: Heatmaps):
    n = len(result.pairs)
    rows, cols = style.grid_shape(n, 4)
    fig, axes = style.subplots(rows, cols, 4.4 * cols, 3.9 * rows + 0.6)
    cells = max((len(p.x_labels) * len(p.y_labels) for p in result.pairs), default=0)
    values = np.concatenate([np.array(p.mean, dtype=float).ravel() for p in result.pairs]) if result.pairs else np.array([])
    values = values[np.isfinite(values)]
    limits = (float(values.min()), float(values.max())) if len(values) else None
    im = None
    for ax, pair in zip(axes.flat, result.pairs, strict=False):
        im = draw_heatmap_pair(ax, pair, result.metric, result.mode, annotate=cells <= 64, colorbar=False,
                               limits=limits)
    for ax in axes.flat[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label=style.wrap(
            f"mean {style.shorten(result.metric, 24)} (one scale for all panels)", 28))
    style.suptitle(fig, f"Mean {result.metric} per parameter pair ({style.direction_word(result.mode)}; "
                        "cells show mean and n, fainter cells have fewer runs; 95% bootstrap intervals in the JSON)")
    if result.params_left_out:
        left = result.params_left_out
        names = ", ".join(style.shorten(p, 24) for p in left[:6]) + (f" and {len(left) - 6} more" if len(left) > 6 else "")
        style.footnote(fig, f"Not shown ({len(left)} less important parameters): {names}")
    return fig


# --------------------------------------------------------------------------- parallel coordinates
MAX_AXES = 12  # above this many parameters, the figures show the most important ones and name the rest


DENSITY_ABOVE = 5000  # runs: above this, parallel coordinates draw all runs as a density, lines for the best
LINES_AT_SCALE = 1000  # the best runs drawn as lines over that density
_COLS_PER_GAP, _DENSITY_ROWS = 48, 240
_Y_RANGE = (-0.1, 1.05)


def line_density(data: np.ndarray, cols_per_gap: int = _COLS_PER_GAP, rows: int = _DENSITY_ROWS) -> np.ndarray:
    """How many polylines (rows of `data`, one y per axis at x = 0, 1, …, d-1) cross each pixel of a
    rows × (d-1)·cols_per_gap grid over y in _Y_RANGE: the parallel-coordinates picture of any number of
    runs in O(runs × pixels across), without drawing a line per run."""
    n, d = data.shape
    width = max(d - 1, 1) * cols_per_gap
    counts = np.zeros(rows * width, dtype=np.int64)
    lo, hi = _Y_RANGE
    t = (np.arange(cols_per_gap) + 0.5) / cols_per_gap
    for j in range(d - 1):
        a, b = data[:, j], data[:, j + 1]
        ok = np.isfinite(a) & np.isfinite(b)
        y = a[ok, None] * (1 - t) + b[ok, None] * t
        r = np.clip(((y - lo) / (hi - lo) * rows).astype(np.int64), 0, rows - 1)
        counts += np.bincount((r * width + np.arange(cols_per_gap) + j * cols_per_gap).ravel(),
                              minlength=rows * width)
    return counts.reshape(rows, width)


def draw_parallel_coordinates(ax, result: ParallelCoordinates, limit: int = MAX_AXES):
    params = [a for a in result.axes if a.name != result.objective]
    axes_shown = params[:limit] + [a for a in result.axes if a.name == result.objective]
    names = [a.name for a in axes_shown]
    data = result.coords[names].to_numpy(dtype=float, copy=True)
    values = result.coords["objective_value"].to_numpy(dtype=float)
    n, d = data.shape
    # Spread runs that share a discrete value over a narrow band so bundles stay distinguishable.
    rng = np.random.default_rng(0)
    for j, axis in enumerate(axes_shown):
        if axis.kind in ("categorical", "bool") or (axis.kind == "int" and len(axis.tick_positions) <= 12):
            spacing = 1.0 / max(len(axis.tick_positions) - 1, 1)
            data[:, j] += rng.uniform(-0.08, 0.08, n) * spacing
    # Best runs drawn last (on top); transparency scales with the number of runs so 10,000 stay legible.
    order = np.argsort(values if result.mode == "max" else -values, kind="mergesort")
    xs = np.arange(d)
    dense = n > DENSITY_ABOVE
    if dense:  # all runs as a density (grey, log scale), the best LINES_AT_SCALE as lines over it
        counts = line_density(data)
        ax.imshow(np.log1p(counts), cmap="Greys", aspect="auto", origin="lower", interpolation="bilinear",
                  extent=(0, max(d - 1, 1), *_Y_RANGE), vmin=0, zorder=1)
        order = order[-LINES_AT_SCALE:]
    drawn = data[order]
    segments = np.stack([np.broadcast_to(xs, drawn.shape), drawn], axis=2)
    shown = values[order]
    norm = plt.Normalize(np.nanmin(shown), np.nanmax(shown)) if n else None
    cmap = plt.get_cmap(style.OBJECTIVE_CMAP if result.mode == "max" else style.OBJECTIVE_CMAP + "_r")
    alpha = float(np.clip(15.0 / np.sqrt(max(len(order), 1)), 0.03, 0.8))
    lines = LineCollection(segments, cmap=cmap, norm=norm, alpha=alpha, linewidths=0.8 if len(order) < 2000 else 0.5,
                           rasterized=True, zorder=2)
    lines.set_array(shown)
    ax.add_collection(lines)
    top = result.coords.set_index("run_id").loc[result.top_run_ids, names].to_numpy(dtype=float)
    for row in top:
        ax.plot(xs, row, color=style.HIGHLIGHT, lw=1.6, alpha=0.9, zorder=3)
    # Tick labels sit on an opaque box above every line (zorder), cut to the room up to the next axis.
    room = max(6, int(style.axis_length_in(ax, "x") / max(d - 0.4, 1) * 72 / (0.62 * 7)) - 1)
    for i, axis in enumerate(axes_shown):
        ax.axvline(i, color="black", lw=0.8, zorder=4)
        for pos, lab in zip(axis.tick_positions, axis.tick_labels, strict=True):
            ax.text(i + 0.03, pos, style.shorten(lab, room), fontsize=7, va="center", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#bbbbbb", "lw": 0.4, "alpha": 0.95})
    style.set_ticklabels(ax, "x", xs, [style.shorten(a.name, 26) + (" (log)" if a.log_scale else "")
                                        for a in axes_shown], limit=32)
    ax.set_yticks([])
    ax.set(xlim=(-0.2, d - 0.6), ylim=_Y_RANGE)
    ax.spines["left"].set_visible(False)
    label = style.shorten(result.objective, 40) + (f" (best {len(order):,} runs)" if dense else "")
    ax.figure.colorbar(lines, ax=ax, label=label, shrink=0.8)
    return ax


def plot_parallel_coordinates(result: ParallelCoordinates):
    fig = style.figure(max(8, 1.5 * min(len(result.axes), MAX_AXES + 1) + 2), 6)
    ax = fig.add_subplot()
    draw_parallel_coordinates(ax, result)
    n = len(result.coords)
    what = (f"{n:,} runs as a density (grey, log scale); the best {min(n, LINES_AT_SCALE):,} as lines coloured by "
            if n > DENSITY_ABOVE else f"{n} runs, coloured by ")
    style.title(ax, f"{what}{result.objective} ({style.direction_word(result.mode)}); "
                    f"top {len(result.top_run_ids)} in red; runs missing a value sit below the axis")
    _name_the_rest(fig, [a.name for a in result.axes if a.name != result.objective][MAX_AXES:], MAX_AXES)
    return fig


def _name_the_rest(fig, rest: list[str], shown: int) -> None:
    if rest:
        names = ", ".join(style.shorten(p, 24) for p in rest[:8]) + (f" and {len(rest) - 8} more" if len(rest) > 8 else "")
        style.footnote(fig, f"The {shown} most important parameters are shown; not shown: {names} (all in the JSON).")


# --------------------------------------------------------------------------- importance
def draw_importance(ax, result: ParameterImportance, limit: int | None = None):
    k = min(len(result.params), limit or len(result.params))
    y = np.arange(k)[::-1]
    imp = np.array(result.importance[:k])
    lo, hi = np.array(result.ci_low[:k]), np.array(result.ci_high[:k])
    # The bar shows the share explained (never below 0); the interval is drawn as computed around the
    # bias-corrected estimate, which can lie below 0 for a parameter that explains nothing.
    ax.barh(y, np.clip(imp, 0, None), color=style.PRIMARY, alpha=0.85)
    ax.errorbar(imp, y, xerr=[np.clip(imp - lo, 0, None), np.clip(hi - imp, 0, None)],
                fmt="|", color="black", ecolor="black", capsize=3, lw=1)
    style.set_ticklabels(ax, "y", y, result.params[:k], limit=36)
    ax.axvline(0, color="black", lw=0.8)
    more = f"; top {k} of {len(result.params)}" if k < len(result.params) else ""
    ax.set_xlabel(style.wrap(f"share of {style.shorten(result.objective, 40)} variance explained alone "
                             f"(ω², 95% CI{more})", 60))
    return ax


def _decomposition(result: ParameterImportance) -> list[tuple[str, float, str]]:
    """The bars of the right panel: additive shares when the main effects are, otherwise the main effects'
    sum (overlapping, may exceed 100%) beside what the parameters explain together (forest OOB R²)."""
    overlap = getattr(result, "main_effects_overlap", False) or result.main_effects_total > 1.0
    if not overlap:
        parts = [("main effects", result.main_effects_total, style.PRIMARY)]
        if result.interactions is not None:
            parts.append(("interactions", result.interactions, style.SECONDARY))
        parts.append(("unexplained (noise, seeds)", result.unexplained, style.MUTED))
        return parts
    parts = [(f"main effects overlap (sum {result.main_effects_total:.0%})", result.main_effects_total,
              style.PRIMARY)]
    if result.forest_r2 is not None:
        parts.append(("all parameters together (forest OOB R²)", result.forest_r2, style.SECONDARY))
        parts.append(("unexplained (1 − R²)", 1.0 - result.forest_r2, style.MUTED))
    return parts


def plot_importance(result: ParameterImportance):
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, max(3.8, 0.42 * len(result.params) + 2)),
                                  layout="constrained", gridspec_kw={"width_ratios": [2.6, 1.4]})
    draw_importance(ax, result)
    style.title(ax, f"Parameter importance for {result.objective} ({result.n_runs} runs, "
                    f"{result.n_boot} bootstrap resamples)")
    parts = _decomposition(result)
    overlap = parts[0][0].startswith("main effects overlap")
    if overlap:  # side by side: the overlapping sum is not a share of one whole
        for i, (label, value, colour) in enumerate(parts):
            ax2.bar([i], [value], color=colour, width=0.6, label=label if "%" in label else f"{label}: {value:.0%}")
            ax2.text(i, value, f"{value:.0%}", ha="center", va="bottom", fontsize=8)
        ax2.axhline(1.0, color="black", lw=0.8, ls=":")
        ax2.set(xlim=(-0.6, len(parts) - 0.4), ylim=(0, max(1.0, max(v for _, v, _ in parts)) * 1.12))
    else:  # stacked: the shares add up to 100%
        bottom = 0.0
        for label, value, colour in parts:
            ax2.bar([0], [value], bottom=bottom, color=colour, width=0.6, label=f"{label}: {value:.0%}")
            bottom += value
        ax2.set(xlim=(-0.6, 0.6), ylim=(0, max(1.0, bottom)))
    ax2.set_xticks([])
    ax2.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax2.set_ylabel("share of variance")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, frameon=False)
    style.title(ax2, "what explains the objective")
    if result.note:
        style.footnote(fig, "Note: " + result.note)
    return fig


# --------------------------------------------------------------------------- effects
def _bxp_stats(levels):
    return [{"label": lv.label, "med": lv.median, "q1": lv.q1, "q3": lv.q3, "whislo": lv.whislo,
             "whishi": lv.whishi, "mean": lv.mean, "fliers": []} for lv in levels]


def plot_parameter_effects(result: ParameterEffects):
    effects = result.effects[:MAX_AXES]
    n = len(effects)
    rows, cols = style.grid_shape(n, 4 if n > 9 else 3)
    fig, axes = style.subplots(rows, cols, 4.6 * cols, 4.4 * rows + 0.5)
    for ax, eff in zip(axes.flat, effects, strict=False):
        ax.bxp(_bxp_stats(eff.levels), showmeans=True, patch_artist=True,
               boxprops={"facecolor": "#c6dbef"}, meanprops={"marker": "D", "markersize": 4})
        style.set_ticklabels(ax, "x", range(1, len(eff.levels) + 1), [f"{lv.label}\nn={lv.n}" for lv in eff.levels],
                             limit=18, fontsize=7)
        style.title(ax, style.shorten(eff.param, 60))
        ax.set_ylabel(style.shorten(result.objective, 30))
    for ax in axes.flat[n:]:
        ax.axis("off")
    style.suptitle(fig, f"{result.objective} by parameter value ({style.direction_word(result.mode)}; ◆ = mean)")
    _name_the_rest(fig, [e.param for e in result.effects[MAX_AXES:]], MAX_AXES)
    return fig


def plot_categorical_comparison(result: CategoricalComparison):
    fig, axes = style.subplots(1, 3, 14, 5.2)
    labels = [lv.label for lv in result.levels]
    x = np.arange(len(labels))
    means = [lv.mean for lv in result.levels]
    stds = [lv.std or 0.0 for lv in result.levels]
    ax = axes[0, 0]
    ax.bar(x, means, yerr=stds, capsize=4, color=[style.PALETTE[i % 8] for i in x], alpha=0.85)
    style.set_ticklabels(ax, "x", x, [f"{lab}\nn={lv.n}" for lab, lv in zip(labels, result.levels, strict=True)],
                         limit=18, fontsize=7)
    ax.set(title="mean ± std", ylabel=style.shorten(result.metric, 30))
    lo = min(lv.whislo for lv in result.levels)
    hi = max(lv.whishi for lv in result.levels)
    pad = 0.1 * ((hi - lo) or 1)
    ax.set_ylim(lo - pad, hi + pad)
    axes[0, 1].bxp(_bxp_stats(result.levels), showmeans=True)
    style.set_ticklabels(axes[0, 1], "x", range(1, len(labels) + 1), labels, limit=18, fontsize=7)
    axes[0, 1].set_title("box plot (◆ = mean)")
    data = [result.values[lab] for lab in labels]
    ok = [i for i, d in enumerate(data) if len(d) > 1]
    if ok:
        axes[0, 2].violinplot([data[i] for i in ok], positions=[i + 1 for i in ok], showmedians=True)
    style.set_ticklabels(axes[0, 2], "x", range(1, len(labels) + 1), labels, limit=18, fontsize=7)
    axes[0, 2].set_title("distribution")
    style.suptitle(fig, f"{result.metric} by {result.param} ({style.direction_word(result.mode)})")
    return fig


# --------------------------------------------------------------------------- runs and metrics
def draw_top_k_bars(ax, result: TopK):
    """Dots, not bars: the axis is zoomed to the values (bars from a cut-off baseline would exaggerate
    differences), and metrics of different scales share it."""
    table = result.table
    width = 0.8 / max(len(result.metrics), 1)
    x = np.arange(len(table))
    markers = "oDs^vP"
    for i, m in enumerate(result.metrics):
        ax.plot(x + i * width - 0.4 + width / 2, table[m].to_numpy(dtype=float), markers[i % 6], ms=6,
                label=style.shorten(m, 30), color=style.PALETTE[i % 8], ls="none")
    ax.grid(axis="y", color="#e5e5e5", lw=0.6)
    names = [str(nm or rid[:8]) for nm, rid in zip(table["run_name"], table["run_id"], strict=True)]
    style.set_ticklabels(ax, "x", x, [f"#{r} {nm}" for r, nm in zip(table["rank"], names, strict=True)],
                         limit=16, fontsize=7)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    vals = table[result.metrics].to_numpy(dtype=float)
    if np.isfinite(vals).any():
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        pad = 0.08 * ((hi - lo) or abs(hi) or 1)
        ax.set_ylim(lo - pad, hi + pad)


TABLE_PARAMS = 8


def plot_top_k(result: TopK):
    params = list(result.params[:TABLE_PARAMS])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(10, 1.35 * (len(params) + 3)), 8.5),
                                   layout="constrained", gridspec_kw={"height_ratios": [1, 1.1]})
    draw_top_k_bars(ax1, result)
    style.title(ax1, f"Top {result.k} runs by {result.objective} ({style.direction_word(result.mode)})")
    header = [style.wrap(style.shorten(h, 26), 13) for h in ["rank", "run", result.objective, *params]]
    rows = [[f"#{r['rank']}", style.shorten(r["run_name"] or r["run_id"][:8], 14), style.fmt(r[result.objective], 4),
             *[style.shorten(style.fmt(r[p]), 12) for p in params]] for r in result.table.to_dict(orient="records")]
    ax2.axis("off")
    tab = ax2.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1, 1.25)
    for j in range(len(header)):
        tab[0, j].set_height(tab[0, j].get_height() * 2)
    if len(result.params) > len(params):
        rest = result.params[len(params):]
        style.footnote(fig, f"{len(rest)} more parameters in the JSON: "
                            + ", ".join(style.shorten(p, 20) for p in rest[:8]) + (" …" if len(rest) > 8 else ""))
    return fig


def _draw_hist(ax, h, **line):
    """A metric's histogram with its mean and median (`line`: more properties of those two lines)."""
    ax.stairs(h.counts, h.edges, fill=True, color="#9ecae1")
    ax.axvline(h.mean, color=style.HIGHLIGHT, label=f"mean {h.mean:.3g}", **line)
    ax.axvline(h.median, color="black", ls="--", label=f"median {h.median:.3g}", **line)


def plot_metric_distributions(result: MetricDistributions):
    fig, axes = style.grid(len(result.histograms), 4, 3.6, 2.8)
    for ax, h in zip(axes, result.histograms, strict=True):
        _draw_hist(ax, h, lw=1.2)
        style.title(ax, f"{style.shorten(h.metric, 40)} (n={h.n})")
        ax.legend(fontsize=7)
    fig.suptitle("Final metric distributions")
    return fig


def plot_metric_correlations(result: MetricCorrelations):
    k = len(result.metrics)
    fig = style.figure(max(5, 0.7 * k + 3), max(4.2, 0.6 * k + 2))
    ax = fig.add_subplot()
    mat = np.array(result.pearson, dtype=float)  # None: nan
    im = ax.imshow(mat, cmap=style.DIVERGING_CMAP, vmin=-1, vmax=1)
    style.set_ticklabels(ax, "x", range(k), result.metrics, limit=28)
    style.set_ticklabels(ax, "y", range(k), result.metrics, limit=28)
    if k <= 14:
        for i in range(k):
            for j in range(k):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(mat[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="Pearson r (Spearman ρ in the JSON)")
    ax.set_title("Correlation between final metrics")
    return fig


def draw_history(ax, result: OptimizationHistory):
    x = np.arange(1, len(result.values) + 1)
    values = np.asarray(result.values, dtype=float)
    if len(x) > DENSITY_ABOVE:  # a point per run would be one blob: runs per cell instead
        ok = np.isfinite(values)
        ax.hexbin(x[ok], values[ok], gridsize=(60, 25), cmap="Blues", mincnt=1, linewidths=0.2,
                  label="runs (darker: more runs)", rasterized=True)
    else:
        ax.scatter(x, values, s=8 if len(x) < 2000 else 2, color=style.PRIMARY, alpha=0.6, label="run",
                   rasterized=True)
    ax.plot(x, result.best_so_far, color=style.HIGHLIGHT, lw=1.5, label="best so far")
    ax.set(xlabel="run (in start order)", ylabel=style.shorten(result.objective, 36))
    ax.legend()


def plot_optimization_history(result: OptimizationHistory):
    fig = style.figure(9, 4.5)
    ax = fig.add_subplot()
    draw_history(ax, result)
    style.title(ax, f"Optimisation history of {result.objective} ({style.direction_word(result.mode)})")
    return fig


# --------------------------------------------------------------------------- dashboard
def plot_dashboard(results: dict):
    """The key stage-1 panels on one page; panels whose analysis was skipped say so."""
    fig = style.figure(16, 10)
    grid = fig.add_gridspec(2, 3)
    panels = [
        ("parameter_importance", lambda ax, r: draw_importance(ax, r, limit=10), "parameter importance"),
        ("optimization_history", lambda ax, r: draw_history(ax, r), "optimisation history"),
        ("metric_distributions", lambda ax, r: _draw_objective_hist(ax, r), "objective distribution"),
        ("heatmaps", lambda ax, r: draw_heatmap_pair(ax, r.pairs[0], r.metric, r.mode, annotate=False)
         if r.pairs else style.empty_axis(ax, "no pair"), "strongest pair"),
        ("top_k_comparison", lambda ax, r: draw_top_k_bars(ax, r), "top runs"),
    ]
    style.draw_panels(fig, [grid[0, 0], grid[0, 1], grid[0, 2], grid[1, 0], grid[1, 1:]], panels, results)
    summary = results.get("_summary", {})
    style.suptitle(fig, f"Stage 1: {summary.get('n_runs', '?')} runs, objective {summary.get('objective', '?')} "
                        f"({style.direction_word(summary.get('mode', 'max'))}); best "
                        f"{style.fmt(summary.get('best_value'), 4)}")
    return fig


def _draw_objective_hist(ax, result: MetricDistributions):
    h = result.histograms[0]
    _draw_hist(ax, h)
    ax.set_xlabel(style.shorten(h.metric, 40))
    ax.legend()
