"""Stage-2 figures: quick-vs-full agreement, selection criteria, learning curves, seed variance,
per-parameter effects, interactions and the best configuration."""

from __future__ import annotations

import numpy as np

from mlviz.analysis.stage1 import ParamEffect
from mlviz.analysis.stage2 import BestConfig, LearningCurves, SeedVariance, SelectionCriteria, StageAgreement
from mlviz.render import style
from mlviz.render.stage1 import _bxp_stats, plot_heatmaps


def _ci(v, ci):
    if v is None:
        return "n/a"
    lo, hi = ci
    return f"{v:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")


def _names(r) -> dict[str, str]:
    return getattr(r, "config_names", None) or {}


def _name(r, config: str, i: int) -> str:
    """A candidate as the reader finds it in MLflow: "#rank run name" (figures/sweep.candidate_names)."""
    return _names(r).get(config, f"#{i + 1}")


def _rank_labels(r: StageAgreement) -> list[str]:
    """Each point's candidate name ("#rank run name"), in the order of `r.points`."""
    return [_name(r, c, i) for i, c in enumerate(r.points["config"])]


def _label_points(ax, xs, ys, labels, fontsize: float = 7) -> None:
    """Put each point's rank ("#3") beside it where it has room; a label that would cover another is left out
    (the panel beside names every candidate)."""
    fig = ax.figure
    fig.draw_without_rendering()  # settle the layout first, so the boxes compared are where they will be drawn
    renderer = fig.canvas.get_renderer()
    placed, frame = [], ax.get_window_extent(renderer)
    for x, y, label in zip(xs, ys, labels, strict=True):
        text = label.split(" ", 1)[0]
        for dx, dy, ha, va in ((5, 3, "left", "bottom"), (-5, 3, "right", "bottom"), (5, -3, "left", "top"),
                               (-5, -3, "right", "top")):
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize, color="#333333")
            box = t.get_window_extent(renderer).expanded(1.1, 1.2)
            if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) and \
                    not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            t.remove()


def draw_agreement(ax, r: StageAgreement, labels: bool = False):
    """The scatter; `labels` puts each point's rank beside it (the standalone figure, whose layout is settled)."""
    p = r.points
    ax.errorbar(p["stage1"], p["stage2_mean"], yerr=p["stage2_std"].fillna(0), fmt="o", color=style.PRIMARY,
                ecolor=style.MUTED, capsize=3, label="candidate (± std over seeds)")
    lo = float(np.nanmin([p["stage1"].min(), p["stage2_mean"].min()]))
    hi = float(np.nanmax([p["stage1"].max(), p["stage2_mean"].max()]))
    pad = 0.05 * ((hi - lo) or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="black", lw=1, label="y = x")
    ax.set_xlabel(f"stage-1 {style.shorten(r.objective, 40)}")
    ax.set_ylabel(f"stage-2 {style.shorten(r.objective, 40)}")
    spread = float(np.nanstd(p["stage2_mean"])) if len(p) > 1 else None
    regret = "n/a" if r.regret is None else style.precision_fmt(r.regret, ref=spread or r.regret)
    overlap = "n/a" if r.top_k_overlap is None else f"{r.top_k_overlap:.0%}"
    ax.text(0.02, 0.98, f"Spearman ρ {_ci(r.spearman, r.spearman_ci)}\nKendall τ {_ci(r.kendall, r.kendall_ci)}\n"
            f"top-{r.top_k} overlap {overlap}\nregret of stage-1 pick {regret}",
            transform=ax.transAxes, va="top", fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc"})
    ax.legend(loc="lower right")
    if labels and len(p) <= 30:
        _label_points(ax, p["stage1"].to_numpy(), p["stage2_mean"].to_numpy(), _rank_labels(r))


def draw_ranks(ax, r: StageAgreement):
    """One row per candidate, best in stage 2 at the top: its stage-1 score (hollow) and stage-2 mean (filled,
    ± std over seeds), so the reader sees who gained and who lost with full training, by name."""
    p = r.points.reset_index(drop=True)
    labels = _rank_labels(r)
    sign = -1.0 if r.mode == "min" else 1.0
    order = np.argsort(-sign * p["stage2_mean"].to_numpy(), kind="mergesort")
    y = np.arange(len(order))[::-1]
    for yy, i in zip(y, order, strict=True):
        ax.plot([p.at[i, "stage1"], p.at[i, "stage2_mean"]], [yy, yy], color=style.MUTED, lw=1, zorder=1)
    ax.scatter(p["stage1"].to_numpy()[order], y, facecolors="white", edgecolors=style.PRIMARY, zorder=2,
               label="stage 1 (screening)")
    ax.errorbar(p["stage2_mean"].to_numpy()[order], y, xerr=p["stage2_std"].fillna(0).to_numpy()[order], fmt="o",
                color=style.PRIMARY, ecolor=style.PRIMARY, capsize=2, zorder=3, label="stage 2 (mean ± std over seeds)")
    names = [f"{style.shorten(labels[i], 24)} (n={int(p.at[i, 'n_seeds'])})" for i in order]
    style.set_ticklabels(ax, "y", y, names, limit=34, fontsize=7)
    ax.set_xlabel(f"{style.shorten(r.objective, 40)} ({style.direction_word(r.mode)})")
    ax.legend(loc="best", fontsize=7)


def plot_agreement(r: StageAgreement):
    fig, axes = style.subplots(1, 2, 13, max(5.0, 0.28 * len(r.points) + 2))
    draw_agreement(axes[0, 0], r, labels=True)
    style.title(axes[0, 0], f"Stage 1 vs stage 2 ({r.n_candidates} candidates; stage-1 score: {r.stage1_source})",
                fontsize=9)
    draw_ranks(axes[0, 1], r)
    style.title(axes[0, 1], "Each candidate: stage 1 → stage 2 (#rank in stage 2, run name; n = seeds)", fontsize=9)
    return fig


def draw_criteria(ax, r: SelectionCriteria):
    for i, g in enumerate(r.groups):
        ax.scatter([i] * len(g.values), g.values, color=style.PALETTE[i % 8], alpha=0.8)
        ax.hlines(g.mean, i - 0.3, i + 0.3, color="black")
    style.set_ticklabels(ax, "x", range(len(r.groups)), [f"{g.criterion}\n(n={g.n})" for g in r.groups], limit=26)
    ax.set_ylabel(f"stage-2 {style.shorten(r.objective, 36)}")


def plot_criteria(r: SelectionCriteria):
    fig = style.figure(max(7, 0.9 * len(r.groups) + 3), 5)
    ax = fig.add_subplot()
    draw_criteria(ax, r)
    style.title(ax, f"Stage-2 {r.objective} by selection criterion (bar = mean; {style.direction_word(r.mode)})")
    return fig


def plot_learning_curves(r: LearningCurves):
    fig, axes = style.subplots(1, len(r.keys), max(5 * len(r.keys), 8), 4.6)
    configs = list(dict.fromkeys(c.config for c in r.curves))
    for ax, key in zip(axes.flat, r.keys, strict=True):
        for c in (c for c in r.curves if c.key == key):
            colour = style.PALETTE[configs.index(c.config) % 8]
            ax.plot(c.steps, c.mean, color=colour,
                    label=f"{style.shorten(_name(r, c.config, configs.index(c.config)), 22)} (n={c.n_seeds})")
            if c.n_seeds > 1:
                ax.fill_between(c.steps, c.low, c.high, color=colour, alpha=0.2)
        style.title(ax, style.shorten(key, 50))
        ax.set_xlabel("epoch (step)")
    axes[0, 0].legend(title="candidate (seeds)", fontsize=7)
    style.suptitle(fig, f"Learning curves of the top {len(configs)} candidates (mean over seeds, band = {r.band}); "
                        "candidate configurations in the JSON")
    return fig


def draw_seed_variance(ax, r: SeedVariance):
    for i, row in r.configs.iterrows():
        vals = r.values[row["config"]]
        ax.scatter([i] * len(vals), vals, color=style.PRIMARY, alpha=0.8, s=18)
        ax.vlines(i, row["min"], row["max"], color=style.MUTED)
        ax.hlines(row["mean"], i - 0.3, i + 0.3, color="black")
    style.set_ticklabels(ax, "x", range(len(r.configs)), [_name(r, c, i) for i, c in enumerate(r.configs["config"])],
                         limit=20, fontsize=7)
    ax.set_xlabel("candidate (#rank in stage 2, run name), ordered by mean over seeds")
    ax.set_ylabel(style.shorten(r.objective, 36))
    ax.set_title(f"hyperparameters {r.share_hyperparameters:.0%} / seeds {r.share_seeds:.0%} of the variance")


def plot_seed_variance(r: SeedVariance):
    fig, [[ax0, ax]] = style.subplots(1, 2, 13, 4.8)
    draw_seed_variance(ax0, r)
    ax.bar(["hyperparameters", "seeds"], [r.var_hyperparameters, r.var_seeds], color=[style.PRIMARY, style.MUTED])
    ax.set_ylabel("variance component")
    style.title(ax, f"one-way random effects, {r.n_configs} configurations, {r.n_runs} runs")
    style.suptitle(fig, f"Seed variance of {r.objective}")
    return fig


def plot_hyperparam(effect: ParamEffect):
    fig = style.figure(6.5, 4.6)
    ax = fig.add_subplot()
    ax.bxp(_bxp_stats(effect.levels), showmeans=True, patch_artist=True, boxprops={"facecolor": "#c6dbef"})
    style.set_ticklabels(ax, "x", range(1, len(effect.levels) + 1), [f"{lv.label}\nn={lv.n}" for lv in effect.levels],
                         limit=18, fontsize=7)
    style.title(ax, f"Stage-2 objective by {effect.param} (◆ = mean)")
    return fig


def plot_interactions(result):
    fig = plot_heatmaps(result)
    style.suptitle(fig, f"Stage 2: mean {result.metric} per parameter pair (n per cell; fainter cells have fewer runs)")
    return fig


def draw_best_config(ax, r: BestConfig):
    name = _names(r).get(r.config)
    rows = [["candidate", name]] if name else []
    rows += [[style.shorten(k, 30), style.shorten(style.fmt(v), 30)] for k, v in r.params.items()]
    mean = style.precision_fmt(r.stage2_mean, ref=r.stage2_std, sig=2) if r.stage2_std else f"{r.stage2_mean:.4g}"
    rows += [[f"{style.shorten(r.objective, 24)} (stage 2)",
              mean + (f" ± {r.stage2_std:.2g}" if r.stage2_std else "") + f" over {r.n_seeds} seed(s)"],
             [f"{r.objective} (stage 1)", style.fmt(r.stage1, 4) + (f", rank {r.stage1_rank}/{r.n_candidates}"
                                                                    if r.stage1_rank else "")],
             ["selected because", str(r.criterion)]]
    rows += [[k, f"{v:.4g}"] for k, v in list(r.other_metrics.items())[:6]]
    # The table fills its axes (never spills over the axes' title above it).
    ax.axis("off")
    tab = ax.table(cellText=rows, colLabels=["", "value"], cellLoc="left", bbox=[0, 0, 1, 1], colWidths=[0.45, 0.55])
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)


def plot_best_config(r: BestConfig):
    fig = style.figure(8, 0.32 * (len(r.params) + len(r.other_metrics) + 6) + 1.5)
    ax = fig.add_subplot()
    draw_best_config(ax, r)
    style.title(ax, f"Best configuration ({style.direction_word(r.mode)})")
    return fig


def plot_dashboard(results: dict):
    fig = style.figure(16, 10)
    grid = fig.add_gridspec(2, 2)
    panels = [("stage2_quick_vs_full", draw_agreement, "stage 1 vs stage 2"),
              ("stage2_selection_criterion", draw_criteria, "by selection criterion"),
              ("seed_variance", draw_seed_variance, "seed variance"),
              ("best_config_summary", draw_best_config, "best configuration")]
    style.draw_panels(fig, [grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]], panels, results,
                      keep_titles=("seed_variance",))
    style.suptitle(fig, "Stage 2 summary")
    return fig
