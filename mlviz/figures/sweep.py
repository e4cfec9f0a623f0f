"""The stage1/ and stage2/ figures of a sweep: the registry table and the context its analyses read."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from mlviz.analysis import NotApplicable
from mlviz.figures import FigureSpec, analysis
from mlviz.sweep import Sweep
from mlviz.text import safe_name


@dataclass
class SweepOptions:
    """The options every sweep figure may read, typed in one place."""

    n_boot: int = 500
    seed: int = 0
    top_k: int = 10


@dataclass
class Context:
    """What a sweep analysis may use: the sweep, the options, and the results computed before it."""

    sweep: Sweep
    options: SweepOptions = field(default_factory=SweepOptions)
    results: dict[str, Any] = field(default_factory=dict)  # registry key → result (or dict of results)
    histories: Any = None  # long table (run_id, key, step, value) of the runs that need curves, or None
    _stages: dict[int, Sweep] = field(default_factory=dict)

    def stage(self, n: int) -> Sweep:
        if n not in self._stages:
            self._stages[n] = self.sweep.stage(n)
        return self._stages[n]

    def importance_order(self) -> list[str] | None:
        imp = self.results.get("parameter_importance")
        return list(imp.params) if imp is not None else None

    @property
    def boot(self) -> dict:
        return {"n_boot": self.options.n_boot, "seed": self.options.seed}


def _stage1(ctx: Context, name: str | None = None, **kw):
    """The stage-1 runs; with `name`, mlviz.analysis.stage1's `name` on them."""
    sweep = ctx.stage(1)
    if len(sweep.runs) == 0:
        raise NotApplicable("no stage-1 runs")
    return analysis(f"stage1:{name}", sweep, **kw) if name else sweep


def _heatmaps(ctx):
    s = _stage1(ctx)
    result = analysis("stage1:heatmaps", s, params=ctx.importance_order(), **ctx.boot)
    return {f"heatmaps_{safe_name(s.objective)}": result}


def _top_k(ctx):
    result = _stage1(ctx, "top_k", k=ctx.options.top_k)
    order = ctx.importance_order()
    if order:  # the table shows the first parameters: the most important ones
        result.params = [p for p in order if p in result.params] + [p for p in result.params if p not in order]
    return result


def _panels(ctx, keys, whose: str, **more) -> dict:
    """The results a dashboard shows (None where skipped), unless it would have none."""
    panels = {k: ctx.results.get(k) for k in keys} | more
    if all(v is None for v in panels.values()):
        raise NotApplicable(f"none of the {whose} panels could be made")
    return panels


def _dashboard(ctx):
    s = _stage1(ctx)
    hm = ctx.results.get("heatmaps")
    panels = _panels(ctx, ("parameter_importance", "optimization_history", "metric_distributions",
                           "top_k_comparison"), "dashboard's", heatmaps=next(iter(hm.values())) if hm else None)
    best = s.best(1)
    panels["_summary"] = {
        "n_runs": len(s.runs), "objective": s.objective, "mode": s.mode,
        "best_value": float(best[s.objective_column].iloc[0]), "best_run_id": str(best["run_id"].iloc[0]),
    }
    return panels


def candidate_names(ctx) -> dict[str, str]:
    """{configuration key: "#rank run name"}: stage-2 figures name candidates as the runs are named in
    MLflow (the seeds' common name, e.g. `cand06` for `cand06-seed0`/`cand06-seed1`), ranked by the
    stage-2 objective, so a reader can find them in the UI."""
    if "_candidate_names" not in ctx.results:
        table = analysis("stage2:candidates", ctx.sweep).table
        name_of = dict(zip(ctx.sweep.runs["run_id"], ctx.sweep.runs["run_name"], strict=True))
        names = {}
        for rank, row in enumerate(table.itertuples(), start=1):
            runs = [str(name_of.get(r) or r[:8]) for r in str(row.run_ids).split(",")]
            common = re.sub(r"[-_/.\s]*(seed|s|rep|run)?[-_=]?$", "", os.path.commonprefix(runs), flags=re.I)
            label = common if len(runs) > 1 and len(common) >= 3 else str(name_of.get(row.best_run_id) or runs[0])
            names[row.config] = f"#{rank} {label}"
        ctx.results["_candidate_names"] = names
    return ctx.results["_candidate_names"]


def _named(ctx, name: str, *args, **kw):
    """mlviz.analysis.stage2's `name` on the sweep, with `config_names` (see candidate_names) for its renderer."""
    result = analysis(f"stage2:{name}", ctx.sweep, *args, **kw)
    try:
        result.config_names = candidate_names(ctx)
    except Exception:  # noqa: BLE001 - names are a nicety; the figure stands without them
        result.config_names = {}
    return result


def _stage2_sweep(ctx) -> Sweep:
    return analysis("stage2:_stage2", ctx.sweep)


def _hyperparams(ctx):
    s2 = _stage2_sweep(ctx)
    if not s2.varied_params:
        raise NotApplicable("no hyperparameter varies across the stage-2 runs")
    return {f"hyperparam_{safe_name(e.param)}": e for e in analysis("stage1:parameter_effects", s2).effects}


STAGE1 = "stage1"
STAGE2 = "stage2"
R1 = "mlviz.render.stage1"
R2 = "mlviz.render.stage2"
STAGE2_PANELS = ("stage2_quick_vs_full", "stage2_selection_criterion", "seed_variance", "best_config_summary")

REGISTRY: list[FigureSpec] = [
    FigureSpec(STAGE1, "parameter_importance",
               "Share of the objective's variance each parameter explains alone (ω²) with 95% bootstrap "
               "intervals, and how much is left to interactions and noise; when the main effects overlap (an "
               "adaptive sampler such as TPE), their real sum beside what the parameters explain together "
               "(random-forest out-of-bag R²).",
               "a varied parameter and 4 runs",
               lambda c: _stage1(c, "parameter_importance", **c.boot), f"{R1}:plot_importance"),
    FigureSpec(STAGE1, "heatmaps", "Mean objective per cell for each pair of the most important varied parameters, with n per "
               "cell; cells with fewer runs are drawn fainter.",
               "two varied parameters", _heatmaps, f"{R1}:plot_heatmaps", many=True),
    FigureSpec(STAGE1, "parallel_coordinates",
               "One line per run across the parameters (log axes where the parameter is log-scaled), "
               "coloured by the objective; the top 10 in red. Above 12 parameters, the 12 most important "
               "(the others named; all in the JSON).",
               "a varied parameter",
               lambda c: _stage1(c, "parallel_coordinates", params=c.importance_order(), top_k=10),
               f"{R1}:plot_parallel_coordinates"),
    FigureSpec(STAGE1, "parameter_effects", "Box plots of the objective for each value or bin of each parameter, most important "
               "first (above 12 parameters, the others named; all in the JSON).",
               "a varied parameter", lambda c: _stage1(c, "parameter_effects", params=c.importance_order()),
               f"{R1}:plot_parameter_effects"),
    FigureSpec(STAGE1, "top_k_comparison", "The best runs: their main metrics and parameters.",
               "one run", _top_k, f"{R1}:plot_top_k"),
    FigureSpec(STAGE1, "metric_distributions", "Histogram of every final metric, mean and median marked.",
               "one run", lambda c: _stage1(c, "metric_distributions"),
               f"{R1}:plot_metric_distributions"),
    FigureSpec(STAGE1, "metric_correlations", "Correlation between the final metrics.",
               "two varying metrics", lambda c: _stage1(c, "metric_correlations"),
               f"{R1}:plot_metric_correlations"),
    FigureSpec(STAGE1, "param_comparison", "For each categorical or boolean parameter: mean ± std, box plot, violin.",
               "a varied categorical or boolean parameter", lambda c: _stage1(c, "categorical_comparisons"),
               f"{R1}:plot_categorical_comparison", many=True),
    FigureSpec(STAGE1, "optimization_history", "The objective in run order with the best-so-far line.",
               "one run", lambda c: _stage1(c, "optimization_history"),
               f"{R1}:plot_optimization_history"),
    FigureSpec(STAGE1, "stage1_summary_dashboard", "The key panels of the stage-1 analysis on one page.",
               "any stage-1 panel", _dashboard, f"{R1}:plot_dashboard",
               grid_key="mlviz_stage1_summary_dashboard"),
    FigureSpec(STAGE2, "stage2_quick_vs_full",
               "Stage-1 score against stage-2 score per candidate with y = x, Spearman ρ and Kendall τ with "
               "bootstrap intervals, top-k overlap, the regret of picking by the stage-1 score; each candidate "
               "by name (#rank run name) from its stage-1 to its stage-2 score.",
               "stage-2 runs with a stage-1 score", lambda c: _named(c, "stage_agreement", **c.boot),
               f"{R2}:plot_agreement"),
    FigureSpec(STAGE2, "stage2_selection_criterion", "Stage-2 results grouped by why each candidate was selected.",
               "the mlviz.selection_criterion tag", lambda c: _named(c, "selection_criteria"),
               f"{R2}:plot_criteria"),
    FigureSpec(STAGE2, "learning_curves",
               "Per-epoch curves of the top candidates (named by run, with their stage-2 rank); bands span "
               "the seeds of a configuration.",
               "stage-2 metric histories", lambda c: _named(c, "learning_curves", c.histories),
               f"{R2}:plot_learning_curves"),
    FigureSpec(STAGE2, "seed_variance",
               "Spread over seeds per configuration, and the share of variance due to hyperparameters vs seeds.",
               "configurations run with several seeds",
               lambda c: _named(c, "seed_variance"), f"{R2}:plot_seed_variance"),
    FigureSpec(STAGE2, "hyperparam", "Each parameter's effect on the stage-2 objective.",
               "a hyperparameter varying across stage-2 runs", _hyperparams, f"{R2}:plot_hyperparam", many=True),
    FigureSpec(STAGE2, "hyperparameter_interactions", "Pairwise interaction heatmaps on the stage-2 objective.",
               "two hyperparameters varying across stage-2 runs",
               lambda c: analysis("stage1:heatmaps", _stage2_sweep(c), **c.boot),
               f"{R2}:plot_interactions"),
    FigureSpec(STAGE2, "best_config_summary", "The best configuration and its scores.",
               "stage-2 runs", lambda c: _named(c, "best_config"), f"{R2}:plot_best_config"),
    FigureSpec(STAGE2, "stage2_summary_dashboard", "The key panels of the stage-2 analysis on one page.",
               "any stage-2 panel", lambda c: _panels(c, STAGE2_PANELS, "stage-2 dashboard's"),
               f"{R2}:plot_dashboard", grid_key="mlviz_stage2_summary_dashboard"),
]
