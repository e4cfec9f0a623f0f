"""The figure registry: what each figure is, which analysis and renderer make it, what it needs.

`visualize` walks this list in order: a figure whose analysis raises `NotApplicable` is recorded as
skipped with its reason. Adding a figure is an analysis function, a renderer and one entry here.
Renderers are named as `module:function` strings so that importing the registry costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlviz.sweep import Sweep


@dataclass
class Context:
    """What an analysis may use: the sweep, the options, and the results computed before it."""

    sweep: Sweep
    options: dict = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # registry key → result (or dict of results)
    _stages: dict[int, Sweep] = field(default_factory=dict)

    def stage(self, n: int) -> Sweep:
        if n not in self._stages:
            self._stages[n] = self.sweep.stage(n)
        return self._stages[n]

    def importance_order(self) -> list[str] | None:
        imp = self.results.get("parameter_importance")
        return list(imp.params) if imp is not None else None


@dataclass(frozen=True)
class FigureSpec:
    section: str
    key: str  # registry key; also the file stem unless `compute` names several files
    caption: str
    needs: str
    compute: Callable[[Context], Any]
    renderer: str  # "module:function" taking the result and returning a matplotlib Figure
    many: bool = False  # compute returns {file stem: result}

    def render(self, result):
        module, func = self.renderer.split(":")
        return getattr(importlib.import_module(module), func)(result)

    def outputs(self, result) -> dict[str, Any]:
        return dict(result) if self.many else {self.key: result}


def _stage1(ctx: Context) -> Sweep:
    from mlviz.analysis import NotApplicable

    sweep = ctx.stage(1)
    if len(sweep.runs) == 0:
        raise NotApplicable("no stage-1 runs")
    return sweep


def _importance(ctx):
    from mlviz.analysis.stage1 import parameter_importance

    o = ctx.options
    return parameter_importance(_stage1(ctx), n_boot=o.get("n_boot", 500), seed=o.get("seed", 0))


def _heatmaps(ctx):
    from mlviz.analysis.stage1 import heatmaps, safe_name

    s = _stage1(ctx)
    result = heatmaps(s, params=ctx.importance_order(), n_boot=ctx.options.get("n_boot", 500),
                      seed=ctx.options.get("seed", 0))
    return {f"heatmaps_{safe_name(s.objective)}": result}


def _parallel(ctx):
    from mlviz.analysis.stage1 import parallel_coordinates

    return parallel_coordinates(_stage1(ctx), params=ctx.importance_order(), top_k=10)


def _effects(ctx):
    from mlviz.analysis.stage1 import parameter_effects

    return parameter_effects(_stage1(ctx), params=ctx.importance_order())


def _top_k(ctx):
    from mlviz.analysis.stage1 import top_k

    return top_k(_stage1(ctx), k=ctx.options.get("top_k", 10))


def _distributions(ctx):
    from mlviz.analysis.stage1 import metric_distributions

    return metric_distributions(_stage1(ctx))


def _correlations(ctx):
    from mlviz.analysis.stage1 import metric_correlations

    return metric_correlations(_stage1(ctx))


def _categorical(ctx):
    from mlviz.analysis.stage1 import categorical_comparisons

    return categorical_comparisons(_stage1(ctx))


def _history(ctx):
    from mlviz.analysis.stage1 import optimization_history

    return optimization_history(_stage1(ctx))


def _dashboard(ctx):
    from mlviz.analysis import NotApplicable

    s = _stage1(ctx)
    panels = {k: ctx.results.get(k) for k in
              ("parameter_importance", "optimization_history", "metric_distributions", "top_k_comparison")}
    hm = ctx.results.get("heatmaps")
    panels["heatmaps"] = next(iter(hm.values())) if hm else None
    if all(v is None for v in panels.values()):
        raise NotApplicable("none of the dashboard's panels could be made")
    best = s.best(1)
    panels["_summary"] = {
        "n_runs": len(s.runs), "objective": s.objective, "mode": s.mode,
        "best_value": float(best[s.objective_column].iloc[0]), "best_run_id": str(best["run_id"].iloc[0]),
    }
    return panels


STAGE1 = "stage1"
R1 = "mlviz.render.stage1"

REGISTRY: list[FigureSpec] = [
    FigureSpec(STAGE1, "parameter_importance",
               "Share of the objective's variance each parameter explains alone (ω²) with 95% bootstrap "
               "intervals, and how much is left to interactions and noise.",
               "a varied parameter and 4 runs", _importance, f"{R1}:plot_importance"),
    FigureSpec(STAGE1, "heatmaps", "Mean objective per cell for each pair of varied parameters, with n per cell.",
               "two varied parameters", _heatmaps, f"{R1}:plot_heatmaps", many=True),
    FigureSpec(STAGE1, "parallel_coordinates",
               "One line per run across the parameters (log axes where the parameter is log-scaled), "
               "coloured by the objective; the top 10 in red.",
               "a varied parameter", _parallel, f"{R1}:plot_parallel_coordinates"),
    FigureSpec(STAGE1, "parameter_effects", "Box plots of the objective for each value or bin of each parameter.",
               "a varied parameter", _effects, f"{R1}:plot_parameter_effects"),
    FigureSpec(STAGE1, "top_k_comparison", "The best runs: their main metrics and parameters.",
               "one run", _top_k, f"{R1}:plot_top_k"),
    FigureSpec(STAGE1, "metric_distributions", "Histogram of every final metric, mean and median marked.",
               "one run", _distributions, f"{R1}:plot_metric_distributions"),
    FigureSpec(STAGE1, "metric_correlations", "Correlation between the final metrics.",
               "two varying metrics", _correlations, f"{R1}:plot_metric_correlations"),
    FigureSpec(STAGE1, "param_comparison", "For each categorical or boolean parameter: mean ± std, box plot, violin.",
               "a varied categorical or boolean parameter", _categorical,
               f"{R1}:plot_categorical_comparison", many=True),
    FigureSpec(STAGE1, "optimization_history", "The objective in run order with the best-so-far line.",
               "one run", _history, f"{R1}:plot_optimization_history"),
    FigureSpec(STAGE1, "stage1_summary_dashboard", "The key panels of the stage-1 analysis on one page.",
               "any stage-1 panel", _dashboard, f"{R1}:plot_dashboard"),
]
