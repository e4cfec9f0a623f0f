"""Stage-2 figures: quick-vs-full agreement, selection criteria, learning curves, seed variance,
per-parameter effects, interactions and the best configuration."""

from __future__ import annotations

import numpy as np

from mlviz.analysis.stage1 import ParamEffect
from mlviz.analysis.stage2 import BestConfig, LearningCurves, SeedVariance, SelectionCriteria, StageAgreement
from mlviz.render import style
from mlviz.render.stage1 import _bxp_stats, draw_table, plot_heatmaps
from mlviz.render.style import plt


def _ci(v, ci):
    if v is None:
        return "n/a"
    lo, hi = ci
    return f"{v:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")


def draw_agreement(ax, r: StageAgreement):
    p = r.points
    ax.errorbar(p["stage1"], p["stage2_mean"], yerr=p["stage2_std"].fillna(0), fmt="o", color=style.PRIMARY,
                ecolor=style.MUTED, capsize=3, label="candidate (± std over seeds)")
    lo = float(np.nanmin([p["stage1"].min(), p["stage2_mean"].min()]))
    hi = float(np.nanmax([p["stage1"].max(), p["stage2_mean"].max()]))
    pad = 0.05 * ((hi - lo) or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="black", lw=1, label="y = x")
    ax.set_xlabel(f"stage-1 {r.objective}")
    ax.set_ylabel(f"stage-2 {r.objective}")
    ax.text(0.02, 0.98, f"Spearman ρ {_ci(r.spearman, r.spearman_ci)}\nKendall τ {_ci(r.kendall, r.kendall_ci)}\n"
            f"top-{r.top_k} overlap {r.top_k_overlap:.0%}\nregret of stage-1 pick {r.regret:.4g}",
            transform=ax.transAxes, va="top", fontsize=8,
            bbox={"boxstyle": "round", "fc": "white", "ec": "#cccccc"})
    ax.legend(loc="lower right")


def plot_agreement(r: StageAgreement):
    fig, axes = style.subplots(1, 2, 13, 5)
    draw_agreement(axes[0, 0], r)
    axes[0, 0].set_title(f"Stage 1 vs stage 2 ({r.n_candidates} candidates; stage-1 score: {r.stage1_source})",
                         fontsize=9)
    imp = r.points["improvement"].dropna()
    axes[0, 1].hist(imp, bins=min(20, max(len(imp), 1)), color="#9ecae1")
    axes[0, 1].axvline(0, color="black", lw=1)
    axes[0, 1].set_xlabel(f"improvement of {r.objective} from stage 1 to stage 2 ({style.direction_word(r.mode)})")
    axes[0, 1].set_ylabel("candidates")
    axes[0, 1].set_title("Improvement with full training")
    return fig


def draw_criteria(ax, r: SelectionCriteria):
    for i, g in enumerate(r.groups):
        ax.scatter([i] * len(g.values), g.values, color=style.PALETTE[i % 8], alpha=0.8)
        ax.hlines(g.mean, i - 0.3, i + 0.3, color="black")
    ax.set_xticks(range(len(r.groups)), [f"{g.criterion}\n(n={g.n})" for g in r.groups], rotation=35, ha="right")
    ax.set_ylabel(f"stage-2 {r.objective}")


def plot_criteria(r: SelectionCriteria):
    fig = style.figure(max(7, 0.9 * len(r.groups) + 3), 5)
    ax = fig.add_subplot()
    draw_criteria(ax, r)
    ax.set_title(f"Stage-2 {r.objective} by selection criterion (bar = mean; {style.direction_word(r.mode)})")
    return fig


def plot_learning_curves(r: LearningCurves):
    fig, axes = style.subplots(1, len(r.keys), 5 * len(r.keys), 4.2)
    configs = list(dict.fromkeys(c.config for c in r.curves))
    for ax, key in zip(axes.flat, r.keys, strict=True):
        for c in (c for c in r.curves if c.key == key):
            colour = style.PALETTE[configs.index(c.config) % 8]
            ax.plot(c.steps, c.mean, color=colour, label=f"#{configs.index(c.config) + 1} (n={c.n_seeds})")
            if c.n_seeds > 1:
                ax.fill_between(c.steps, c.low, c.high, color=colour, alpha=0.2)
        ax.set_title(key)
        ax.set_xlabel("epoch (step)")
    axes[0, 0].legend(title="candidate")
    fig.suptitle(f"Learning curves of the top {len(configs)} candidates (mean over seeds, band = {r.band}); "
                 "candidate configurations in the JSON")
    return fig


def draw_seed_variance(ax, r: SeedVariance):
    for i, row in r.configs.iterrows():
        vals = r.values[row["config"]]
        ax.scatter([i] * len(vals), vals, color=style.PRIMARY, alpha=0.8, s=18)
        ax.vlines(i, row["min"], row["max"], color=style.MUTED)
        ax.hlines(row["mean"], i - 0.3, i + 0.3, color="black")
    ax.set_xticks(range(len(r.configs)), [f"#{i + 1}" for i in range(len(r.configs))])
    ax.set_xlabel("configuration (ranked by mean)")
    ax.set_ylabel(r.objective)
    ax.set_title(f"hyperparameters {r.share_hyperparameters:.0%} / seeds {r.share_seeds:.0%} of the variance")


def plot_seed_variance(r: SeedVariance):
    fig, axes = style.subplots(1, 2, 13, 4.8)
    draw_seed_variance(axes[0, 0], r)
    ax = axes[0, 1]
    ax.bar(["hyperparameters", "seeds"], [r.var_hyperparameters, r.var_seeds], color=[style.PRIMARY, style.MUTED])
    ax.set_ylabel("variance component")
    ax.set_title(f"one-way random effects, {r.n_configs} configurations, {r.n_runs} runs")
    fig.suptitle(f"Seed variance of {r.objective}")
    return fig


def plot_hyperparam(effect: ParamEffect):
    fig = style.figure(6.5, 4.2)
    ax = fig.add_subplot()
    ax.bxp(_bxp_stats(effect.levels), showmeans=True, patch_artist=True, boxprops={"facecolor": "#c6dbef"})
    ax.set_xticks(range(1, len(effect.levels) + 1), [f"{lv.label}\nn={lv.n}" for lv in effect.levels],
                  rotation=30, ha="right")
    ax.set_title(f"Stage-2 objective by {effect.param} (◆ = mean)")
    return fig


def plot_interactions(result):
    fig = plot_heatmaps(result)
    fig.suptitle(f"Stage 2: mean {result.metric} per parameter pair (n per cell)")
    return fig


def draw_best_config(ax, r: BestConfig):
    rows = [[k, style.fmt(v)] for k, v in r.params.items()]
    rows += [[f"{r.objective} (stage 2)", f"{r.stage2_mean:.4g}" + (f" ± {r.stage2_std:.2g}" if r.stage2_std else "")
              + f" over {r.n_seeds} seed(s)"],
             [f"{r.objective} (stage 1)", style.fmt(r.stage1, 4) + (f", rank {r.stage1_rank}/{r.n_candidates}"
                                                                    if r.stage1_rank else "")],
             ["selected because", str(r.criterion)]]
    rows += [[k, f"{v:.4g}"] for k, v in list(r.other_metrics.items())[:6]]
    draw_table(ax, ["", "value"], rows, fontsize=8)


def plot_best_config(r: BestConfig):
    fig = style.figure(8, 0.32 * (len(r.params) + len(r.other_metrics) + 6) + 1.5)
    ax = fig.add_subplot()
    draw_best_config(ax, r)
    ax.set_title(f"Best configuration ({style.direction_word(r.mode)})")
    return fig


def plot_dashboard(results: dict):
    fig = plt.figure(figsize=(16, 10), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    panels = [("stage2_quick_vs_full", draw_agreement, "stage 1 vs stage 2"),
              ("stage2_selection_criterion", draw_criteria, "by selection criterion"),
              ("seed_variance", draw_seed_variance, "seed variance"),
              ("best_config_summary", draw_best_config, "best configuration")]
    style.draw_panels(fig, [grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]], panels, results,
                      keep_titles=("seed_variance",))
    fig.suptitle("Stage 2 summary")
    return fig
