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
def _cells(pair) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in pair.mean], dtype=float)


def draw_heatmap_pair(ax, pair, metric: str, mode: str, annotate: bool = True, colorbar: bool = True,
                      limits: tuple[float, float] | None = None):
    mean = _cells(pair)
    cmap = plt.get_cmap(style.OBJECTIVE_CMAP if mode == "max" else style.OBJECTIVE_CMAP + "_r").with_extremes(
        bad="#eeeeee")
    vmin, vmax = limits if limits else (None, None)
    im = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(pair.x_labels)), pair.x_labels, rotation=40, ha="right")
    ax.set_yticks(range(len(pair.y_labels)), pair.y_labels)
    ax.set_xlabel(pair.x_param)
    ax.set_ylabel(pair.y_param)
    if annotate:
        if limits:
            lo, hi = limits
        else:
            lo, hi = (np.nanmin(mean), np.nanmax(mean)) if np.isfinite(mean).any() else (0.0, 1.0)
        for yi, row in enumerate(pair.mean):
            for xi, v in enumerate(row):
                if v is None:
                    continue
                dark = (v - lo) / ((hi - lo) or 1) < 0.5
                dark = dark if mode == "max" else not dark
                ax.text(xi, yi, f"{v:.3g}\nn={pair.n[yi][xi]}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=f"mean {metric}")
    return im


def plot_heatmaps(result: Heatmaps):
    n = len(result.pairs)
    rows, cols = style.grid_shape(n, 4)
    fig, axes = style.subplots(rows, cols, 4.2 * cols, 3.6 * rows)
    cells = max((len(p.x_labels) * len(p.y_labels) for p in result.pairs), default=0)
    values = np.concatenate([_cells(p).ravel() for p in result.pairs]) if result.pairs else np.array([])
    values = values[np.isfinite(values)]
    limits = (float(values.min()), float(values.max())) if len(values) else None
    im = None
    for ax, pair in zip(axes.flat, result.pairs, strict=False):
        im = draw_heatmap_pair(ax, pair, result.metric, result.mode, annotate=cells <= 64, colorbar=False,
                               limits=limits)
    for ax in axes.flat[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label=f"mean {result.metric} (one scale for all panels)")
    note = f"; not shown: {', '.join(result.params_left_out)}" if result.params_left_out else ""
    fig.suptitle(f"Mean {result.metric} per parameter pair ({style.direction_word(result.mode)}; "
                 f"cells show mean and n; 95% bootstrap intervals in the JSON){note}")
    return fig


# --------------------------------------------------------------------------- parallel coordinates
def draw_parallel_coordinates(ax, result: ParallelCoordinates):
    names = [a.name for a in result.axes]
    data = result.coords[names].to_numpy(dtype=float, copy=True)
    values = result.coords["objective_value"].to_numpy(dtype=float)
    n, d = data.shape
    # Spread runs that share a discrete value over a narrow band so bundles stay distinguishable.
    rng = np.random.default_rng(0)
    for j, axis in enumerate(result.axes):
        if axis.kind in ("categorical", "bool") or (axis.kind == "int" and len(axis.tick_positions) <= 12):
            spacing = 1.0 / max(len(axis.tick_positions) - 1, 1)
            data[:, j] += rng.uniform(-0.08, 0.08, n) * spacing
    # Best runs drawn last (on top); transparency scales with the number of runs so 10,000 stay legible.
    order = np.argsort(values if result.mode == "max" else -values, kind="mergesort")
    xs = np.arange(d)
    segments = np.stack([np.column_stack([xs, row]) for row in data[order]]) if n else np.zeros((0, d, 2))
    norm = plt.Normalize(np.nanmin(values), np.nanmax(values)) if n else None
    cmap = plt.get_cmap(style.OBJECTIVE_CMAP if result.mode == "max" else style.OBJECTIVE_CMAP + "_r")
    alpha = float(np.clip(15.0 / np.sqrt(max(n, 1)), 0.03, 0.8))
    lines = LineCollection(segments, cmap=cmap, norm=norm, alpha=alpha, linewidths=0.8 if n < 2000 else 0.5,
                           rasterized=True)
    lines.set_array(values[order])
    ax.add_collection(lines)
    top = result.coords.set_index("run_id").loc[result.top_run_ids, names].to_numpy(dtype=float)
    for row in top:
        ax.plot(xs, row, color=style.HIGHLIGHT, lw=1.6, alpha=0.9, zorder=3)
    for i, axis in enumerate(result.axes):
        ax.axvline(i, color="black", lw=0.8, zorder=2)
        for pos, lab in zip(axis.tick_positions, axis.tick_labels, strict=True):
            ax.text(i + 0.03, pos, lab, fontsize=7, va="center", zorder=4,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xticks(xs, [a.name + (" (log)" if a.log_scale else "") for a in result.axes], rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_xlim(-0.2, d - 0.6)
    ax.set_ylim(-0.1, 1.05)
    ax.spines["left"].set_visible(False)
    ax.figure.colorbar(lines, ax=ax, label=result.objective, shrink=0.8)
    return ax


def plot_parallel_coordinates(result: ParallelCoordinates):
    fig = style.figure(max(8, 1.6 * len(result.axes) + 2), 5.5)
    ax = fig.add_subplot()
    draw_parallel_coordinates(ax, result)
    ax.set_title(f"{len(result.coords)} runs, coloured by {result.objective} ({style.direction_word(result.mode)}); "
                 f"top {len(result.top_run_ids)} in red; runs missing a value sit below the axis")
    return fig


# --------------------------------------------------------------------------- importance
def draw_importance(ax, result: ParameterImportance):
    y = np.arange(len(result.params))[::-1]
    imp = np.array(result.importance)
    lo, hi = np.array(result.ci_low), np.array(result.ci_high)
    # The bar shows the share explained (never below 0); the interval is drawn as computed around the
    # bias-corrected estimate, which can lie below 0 for a parameter that explains nothing.
    ax.barh(y, np.clip(imp, 0, None), color=style.PRIMARY, alpha=0.85)
    ax.errorbar(imp, y, xerr=[np.clip(imp - lo, 0, None), np.clip(hi - imp, 0, None)],
                fmt="|", color="black", ecolor="black", capsize=3, lw=1)
    ax.set_yticks(y, result.params)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"share of {result.objective} variance explained alone (ω², 95% CI)")
    return ax


def plot_importance(result: ParameterImportance):
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, max(3.5, 0.45 * len(result.params) + 1.5)),
                                  layout="constrained", gridspec_kw={"width_ratios": [3, 1]})
    draw_importance(ax, result)
    ax.set_title(f"Parameter importance for {result.objective} ({result.n_runs} runs, {result.n_boot} bootstrap resamples)")
    parts = [("main effects", result.main_effects_total, style.PRIMARY)]
    if result.interactions is not None:
        parts.append(("interactions", result.interactions, style.SECONDARY))
    parts.append(("unexplained\n(noise, seeds)", result.unexplained, style.MUTED))
    bottom = 0.0
    for label, value, colour in parts:
        ax2.bar([0], [value], bottom=bottom, color=colour, width=0.6)
        ax2.text(0, bottom + value / 2, f"{label}\n{value:.0%}", ha="center", va="center", fontsize=8)
        bottom += value
    ax2.set_xticks([])
    ax2.set_ylim(0, max(1.0, bottom))
    ax2.set_ylabel("share of variance")
    r2 = "" if result.forest_r2 is None else f" (forest OOB R² {result.forest_r2:.2f})"
    ax2.set_title("what explains the objective" + r2)
    if result.note:
        fig.text(0.01, 0.005, "Note: " + result.note, fontsize=8, color=style.MUTED)
    return fig


# --------------------------------------------------------------------------- effects
def _bxp_stats(levels):
    return [{"label": lv.label, "med": lv.median, "q1": lv.q1, "q3": lv.q3, "whislo": lv.whislo,
             "whishi": lv.whishi, "mean": lv.mean, "fliers": []} for lv in levels]


def plot_parameter_effects(result: ParameterEffects):
    n = len(result.effects)
    rows, cols = style.grid_shape(n, 3)
    fig, axes = style.subplots(rows, cols, 4.4 * cols, 3.3 * rows)
    for ax, eff in zip(axes.flat, result.effects, strict=False):
        ax.bxp(_bxp_stats(eff.levels), showmeans=True, patch_artist=True,
               boxprops={"facecolor": "#c6dbef"}, meanprops={"marker": "D", "markersize": 4})
        ax.set_xticks(range(1, len(eff.levels) + 1), [f"{lv.label}\nn={lv.n}" for lv in eff.levels],
                      rotation=30, ha="right")
        ax.set_title(eff.param)
        ax.set_ylabel(result.objective)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle(f"{result.objective} by parameter value ({style.direction_word(result.mode)}; ◆ = mean)")
    return fig


def plot_categorical_comparison(result: CategoricalComparison):
    fig, axes = style.subplots(1, 3, 14, 4.2)
    labels = [lv.label for lv in result.levels]
    x = np.arange(len(labels))
    means = [lv.mean for lv in result.levels]
    stds = [lv.std or 0.0 for lv in result.levels]
    ax = axes[0, 0]
    ax.bar(x, means, yerr=stds, capsize=4, color=[style.PALETTE[i % 8] for i in x], alpha=0.85)
    ax.set_xticks(x, [f"{lab}\nn={lv.n}" for lab, lv in zip(labels, result.levels, strict=True)])
    ax.set_title("mean ± std")
    ax.set_ylabel(result.metric)
    lo = min(lv.whislo for lv in result.levels)
    hi = max(lv.whishi for lv in result.levels)
    pad = 0.1 * ((hi - lo) or 1)
    ax.set_ylim(lo - pad, hi + pad)
    axes[0, 1].bxp(_bxp_stats(result.levels), showmeans=True)
    axes[0, 1].set_title("box plot (◆ = mean)")
    data = [result.values[lab] for lab in labels]
    ok = [i for i, d in enumerate(data) if len(d) > 1]
    if ok:
        axes[0, 2].violinplot([data[i] for i in ok], positions=[i + 1 for i in ok], showmedians=True)
    axes[0, 2].set_xticks(range(1, len(labels) + 1), labels)
    axes[0, 2].set_title("distribution")
    fig.suptitle(f"{result.metric} by {result.param} ({style.direction_word(result.mode)})")
    return fig


# --------------------------------------------------------------------------- runs and metrics
def draw_top_k_bars(ax, result: TopK):
    table = result.table
    width = 0.8 / max(len(result.metrics), 1)
    x = np.arange(len(table))
    for i, m in enumerate(result.metrics):
        ax.bar(x + i * width - 0.4 + width / 2, table[m].to_numpy(dtype=float), width, label=m,
               color=style.PALETTE[i % 8])
    ax.set_xticks(x, [f"#{r}" for r in table["rank"]])
    ax.legend(ncol=min(3, len(result.metrics)), loc="lower right")
    vals = table[result.metrics].to_numpy(dtype=float)
    if np.isfinite(vals).any():
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        ax.set_ylim(lo - 0.1 * ((hi - lo) or abs(lo) or 1), hi + 0.05 * ((hi - lo) or abs(hi) or 1))


def draw_table(ax, header, rows, fontsize=7):
    ax.axis("off")
    tab = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    tab.scale(1, 1.25)
    return tab


def plot_top_k(result: TopK):
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(10, 1.1 * (len(result.params) + 3)), 8.5),
                                   layout="constrained", gridspec_kw={"height_ratios": [1, 1.1]})
    draw_top_k_bars(ax1, result)
    ax1.set_title(f"Top {result.k} runs by {result.objective} ({style.direction_word(result.mode)})")
    header = ["rank", "run", result.objective, *result.params]
    rows = [[f"#{r['rank']}", str(r["run_name"] or r["run_id"][:8])[:18], style.fmt(r[result.objective], 4),
             *[style.fmt(r[p]) for p in result.params]] for r in result.table.to_dict(orient="records")]
    draw_table(ax2, header, rows)
    return fig


def plot_metric_distributions(result: MetricDistributions):
    n = len(result.histograms)
    rows, cols = style.grid_shape(n, 4)
    fig, axes = style.subplots(rows, cols, 3.6 * cols, 2.8 * rows)
    for ax, h in zip(axes.flat, result.histograms, strict=False):
        ax.stairs(h.counts, h.edges, fill=True, color="#9ecae1")
        ax.axvline(h.mean, color=style.HIGHLIGHT, lw=1.2, label=f"mean {h.mean:.3g}")
        ax.axvline(h.median, color="black", ls="--", lw=1.2, label=f"median {h.median:.3g}")
        ax.set_title(f"{h.metric} (n={h.n})")
        ax.legend()
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.suptitle("Final metric distributions")
    return fig


def plot_metric_correlations(result: MetricCorrelations):
    k = len(result.metrics)
    fig = style.figure(max(5, 0.7 * k + 3), max(4.2, 0.6 * k + 2))
    ax = fig.add_subplot()
    mat = np.array([[np.nan if v is None else v for v in row] for row in result.pearson], dtype=float)
    im = ax.imshow(mat, cmap=style.DIVERGING_CMAP, vmin=-1, vmax=1)
    ax.set_xticks(range(k), result.metrics, rotation=40, ha="right")
    ax.set_yticks(range(k), result.metrics)
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
    ax.scatter(x, result.values, s=8 if len(x) < 2000 else 2, color=style.PRIMARY, alpha=0.6, label="run",
               rasterized=True)
    ax.plot(x, result.best_so_far, color=style.HIGHLIGHT, lw=1.5, label="best so far")
    ax.set_xlabel("run (in start order)")
    ax.set_ylabel(result.objective)
    ax.legend()


def plot_optimization_history(result: OptimizationHistory):
    fig = style.figure(9, 4.5)
    ax = fig.add_subplot()
    draw_history(ax, result)
    ax.set_title(f"Optimisation history of {result.objective} ({style.direction_word(result.mode)})")
    return fig


# --------------------------------------------------------------------------- dashboard
def plot_dashboard(results: dict):
    """The key stage-1 panels on one page; panels whose analysis was skipped say so."""
    fig = plt.figure(figsize=(16, 10), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    panels = [
        ("parameter_importance", lambda ax, r: draw_importance(ax, r), "parameter importance"),
        ("optimization_history", lambda ax, r: draw_history(ax, r), "optimisation history"),
        ("metric_distributions", lambda ax, r: _draw_objective_hist(ax, r), "objective distribution"),
        ("heatmaps", lambda ax, r: draw_heatmap_pair(ax, r.pairs[0], r.metric, r.mode, annotate=False)
         if r.pairs else style.empty_axis(ax, "no pair"), "strongest pair"),
        ("top_k_comparison", lambda ax, r: draw_top_k_bars(ax, r), "top runs"),
    ]
    style.draw_panels(fig, [grid[0, 0], grid[0, 1], grid[0, 2], grid[1, 0], grid[1, 1:]], panels, results)
    summary = results.get("_summary", {})
    fig.suptitle(f"Stage 1: {summary.get('n_runs', '?')} runs, objective {summary.get('objective', '?')} "
                 f"({style.direction_word(summary.get('mode', 'max'))}); best {style.fmt(summary.get('best_value'), 4)}")
    return fig


def _draw_objective_hist(ax, result: MetricDistributions):
    h = result.histograms[0]
    ax.stairs(h.counts, h.edges, fill=True, color="#9ecae1")
    ax.axvline(h.mean, color=style.HIGHLIGHT, label=f"mean {h.mean:.3g}")
    ax.axvline(h.median, color="black", ls="--", label=f"median {h.median:.3g}")
    ax.set_xlabel(h.metric)
    ax.legend()
