"""Stage-1 (screening sweep) analyses: each function takes a Sweep and returns plain data.

Every result is a dataclass that `mlviz.analysis.stats.to_jsonable` turns into the JSON beside its
figure; renderers in `mlviz.render.stage1` draw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlviz.analysis import NotApplicable
from mlviz.analysis.binning import bin_param, fold_categories, format_number
from mlviz.analysis.stats import bootstrap_counts, bootstrap_mean_interval, percentile_interval
from mlviz.sweep import METRIC_PREFIX, ParamSpec, Sweep
from mlviz.text import safe_name


def _objective(sweep: Sweep) -> np.ndarray:
    return sweep.runs[sweep.objective_column].to_numpy(dtype=float)


def _need_varied(sweep: Sweep, n: int, what: str) -> list[ParamSpec]:
    varied = sweep.varied_params
    if len(varied) < n:
        names = [p.name for p in sweep.fixed_params]
        fixed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") or "none"
        raise NotApplicable(f"{what} needs {n} varied parameter(s), found {len(varied)} (fixed: {fixed})")
    return varied


def _ordered(varied: list[ParamSpec], params: list[str] | None) -> list[ParamSpec]:
    """The varied parameters, those named in `params` first (in that order)."""
    by_name = {p.name: p for p in varied}
    first = [by_name[p] for p in (params or []) if p in by_name]
    return first + [p for p in varied if p.name not in (params or [])]


# --------------------------------------------------------------------------- importance


@dataclass
class ParameterImportance:
    """Share of the objective's variance each parameter explains on its own (ω², bias-corrected
    one-way ANOVA on binned values), with percentile bootstrap intervals, plus how much a random
    forest explains beyond the sum of the main effects (interactions)."""

    objective: str
    method: str
    params: list[str]
    importance: list[float]  # ω², can be slightly negative for a null parameter
    ci_low: list[float]
    ci_high: list[float]
    normalized: list[float]  # max(ω², 0) / Σ max(ω², 0), comparable with fANOVA's normalised output
    n_levels: list[int]
    main_effects_total: float
    forest_r2: float | None
    interactions: float | None
    unexplained: float
    n_runs: int
    n_boot: int
    level: float = 0.95
    note: str | None = None
    main_effects_overlap: bool = False  # Σ ω² > 100% (or > the forest's R²): shares are not additive


def _omega_squared(counts: np.ndarray, sums: np.ndarray, sum_y: np.ndarray, sum_y2: np.ndarray, n: float, slices):
    """ω² per parameter from per-level counts and sums; works on one row or a batch of rows."""
    ss_total = sum_y2 - sum_y**2 / n
    out = []
    for sl in slices:
        c, s = counts[..., sl], sums[..., sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            between = np.where(c > 0, s**2 / np.where(c > 0, c, 1), 0.0).sum(axis=-1) - sum_y**2 / n
        k = (c > 0).sum(axis=-1)
        within = np.maximum(ss_total - between, 0.0)
        ms_within = within / np.maximum(n - k, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            omega = (between - (k - 1) * ms_within) / (ss_total + ms_within)
        out.append(np.where(ss_total > 0, omega, 0.0))
    return np.stack(out, axis=-1)


def parameter_importance(sweep: Sweep, n_boot: int = 500, max_bins: int = 10, seed: int = 0,
                         forest: bool = True) -> ParameterImportance:
    """Main-effect importance with bootstrap intervals; a whole bootstrap is two matrix products."""
    varied = _need_varied(sweep, 1, "parameter importance")
    if len(sweep.runs) < 4:
        raise NotApplicable(f"parameter importance needs at least 4 runs, the sweep has {len(sweep.runs)}")
    y = _objective(sweep)
    n = len(y)
    binned = [bin_param(sweep.runs[p.column], p, max_bins=max_bins, method="quantile") for p in varied]
    n_levels = [b.n_levels for b in binned]
    design = np.hstack([np.eye(b.n_levels)[b.codes] for b in binned])  # each parameter's levels, one-hot
    ends = np.cumsum(n_levels)
    slices = [slice(int(end - k), int(end)) for end, k in zip(ends, n_levels, strict=True)]
    yc = y - y.mean()  # centring keeps the sums of squares numerically stable
    point = _omega_squared(design.sum(0), (design * yc[:, None]).sum(0), yc.sum(), (yc**2).sum(), n, slices)
    weights = bootstrap_counts(n, n_boot, np.random.default_rng(seed))
    boot = _omega_squared(weights @ design, weights @ (design * yc[:, None]), weights @ yc, weights @ yc**2, n, slices)
    # Resampling duplicates runs, which inflates between-level variance: shift the percentile
    # interval by the bootstrap's own bias so a null parameter's interval straddles zero.
    bias = boot.mean(axis=0) - point
    lo, hi = percentile_interval(boot - bias)
    positive = np.clip(point, 0, None)
    total = float(positive.sum())
    normalized = positive / total if total > 0 else np.zeros_like(positive)
    forest_r2 = _forest_r2(sweep, varied, y, seed) if forest and n >= 20 else None
    # Main effects add up only when the parameters were sampled independently; an adaptive sampler
    # (TPE) makes them overlap (Σ ω² > 100%). Then what the parameters explain together is the forest's
    # R², and the split into main effects and interactions is not defined: say so, never cap at 100%.
    overlap = total > 1.0
    interactions = None if forest_r2 is None or overlap else max(0.0, forest_r2 - total)
    explained = (forest_r2 if forest_r2 is not None else 1.0) if overlap else max(total, forest_r2 or 0.0)
    order = np.argsort(-point, kind="mergesort")
    pick = lambda a: [float(a[i]) for i in order]  # noqa: E731
    return ParameterImportance(
        objective=sweep.objective,
        method="omega-squared (binned one-way ANOVA), bias-corrected percentile bootstrap",
        params=[varied[i].name for i in order], importance=pick(point), ci_low=pick(lo), ci_high=pick(hi),
        normalized=pick(normalized), n_levels=[n_levels[i] for i in order], main_effects_total=total,
        forest_r2=forest_r2, interactions=interactions, unexplained=max(0.0, 1.0 - explained), n_runs=n,
        n_boot=n_boot, main_effects_overlap=overlap,
        note=(f"main effects add up to {total:.0%}: the parameters were not sampled independently (an adaptive "
              "sampler such as TPE, or a filtered grid), so their effects overlap" if overlap else None))


def encode_params(sweep: Sweep, specs: list[ParamSpec]) -> np.ndarray:
    """Numeric design matrix for tree models: log10 of log-scaled values, codes for categories."""
    cols = []
    for spec in specs:
        col = sweep.runs[spec.column]
        if spec.numeric:
            x = col.to_numpy(dtype=float)
            if spec.log_scale:
                x = np.log10(x)
        else:
            x = pd.Series(pd.Categorical(col.astype(object).astype(str).where(col.notna(), None))).cat.codes
            x = x.to_numpy(dtype=float)
        cols.append(np.nan_to_num(x, nan=-1.0))
    return np.column_stack(cols)


def _forest_r2(sweep: Sweep, specs: list[ParamSpec], y: np.ndarray, seed: int, max_rows: int = 2000) -> float:
    """Out-of-bag R² of a random forest: how much of the objective the parameters explain at all."""
    from sklearn.ensemble import RandomForestRegressor

    x = encode_params(sweep, specs)
    if len(y) > max_rows:
        idx = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
        x, y = x[idx], y[idx]
    model = RandomForestRegressor(n_estimators=48, min_samples_leaf=3, oob_score=True, random_state=seed,
                                  n_jobs=1).fit(x, y)
    return float(max(0.0, model.oob_score_))


# --------------------------------------------------------------------------- heatmaps


@dataclass
class HeatmapPair:
    x_param: str
    y_param: str
    x_labels: list[str]
    y_labels: list[str]
    mean: list[list[float | None]]  # [y][x]
    n: list[list[int]]
    ci_low: list[list[float | None]]
    ci_high: list[list[float | None]]


@dataclass
class Heatmaps:
    metric: str
    mode: str
    pairs: list[HeatmapPair]
    n_runs: int
    n_boot: int
    params_left_out: list[str] = field(default_factory=list)


def heatmaps(sweep: Sweep, metric: str | None = None, params: list[str] | None = None, max_bins: int = 6,
             max_params: int = 8, n_boot: int = 500, seed: int = 0) -> Heatmaps:
    """Mean metric per cell for every pair of varied parameters, with n and a bootstrap interval."""
    metric = metric or sweep.objective
    order = _ordered(_need_varied(sweep, 2, "pairwise heatmaps"), params)
    chosen, left_out = order[:max_params], [p.name for p in order[max_params:]]
    y = sweep.runs[METRIC_PREFIX + metric].to_numpy(dtype=float)
    binned = {p.name: bin_param(sweep.runs[p.column], p, max_bins=max_bins) for p in chosen}
    rng = np.random.default_rng(seed)
    pairs = []
    for i, px in enumerate(chosen):
        for py in chosen[i + 1 :]:
            bx, by = binned[px.name], binned[py.name]
            mean, lo, hi = ([[None] * bx.n_levels for _ in range(by.n_levels)] for _ in range(3))
            count = [[0] * bx.n_levels for _ in range(by.n_levels)]
            frame = pd.DataFrame({"x": bx.codes, "y": by.codes, "v": y}).dropna()
            for (cx, cy), vals in frame.groupby(["x", "y"])["v"]:
                v = vals.to_numpy()
                mean[cy][cx] = float(v.mean())
                count[cy][cx] = len(v)
                lo[cy][cx], hi[cy][cx] = bootstrap_mean_interval(v, n_boot, rng)
            pairs.append(HeatmapPair(px.name, py.name, bx.labels, by.labels, mean, count, lo, hi))
    return Heatmaps(metric, sweep.mode, pairs, len(sweep.runs), n_boot, left_out)


# --------------------------------------------------------------------------- parallel coordinates


@dataclass
class Axis:
    name: str
    kind: str
    log_scale: bool
    tick_positions: list[float]
    tick_labels: list[str]


@dataclass
class ParallelCoordinates:
    """Runs as polylines over normalised axes (0..1); the last axis is the objective."""

    objective: str
    mode: str
    axes: list[Axis]
    coords: pd.DataFrame  # run_id, one column per axis in [0, 1], objective
    top_run_ids: list[str]


def _numeric_axis(x: np.ndarray, spec_kind: str, log: bool, name: str) -> tuple[np.ndarray, Axis]:
    present = x[np.isfinite(x)]
    t = np.log10(np.where(x > 0, x, np.nan)) if log else x
    tp = np.log10(present) if log else present
    lo, hi = (float(tp.min()), float(tp.max())) if len(tp) else (0.0, 1.0)
    span = hi - lo or 1.0
    pos = (t - lo) / span
    if log:
        decades = np.arange(np.floor(lo), np.ceil(hi) + 1)
        ticks = [d for d in decades if lo - 1e-9 <= d <= hi + 1e-9] or [lo, hi]
        tick_pos = [(d - lo) / span for d in ticks]
        tick_lab = [format_number(10**d) for d in ticks]
    elif spec_kind == "int" and 1 < len(np.unique(present)) <= 12:
        vals = np.unique(present)
        tick_pos = list((vals - lo) / span)
        tick_lab = [format_number(v) for v in vals]
    else:
        vals = np.linspace(lo, hi, 5)
        tick_pos = list(np.linspace(0, 1, 5))
        tick_lab = [format_number(v) for v in vals]
    return np.nan_to_num(pos, nan=-0.05), Axis(name, spec_kind, log, [float(p) for p in tick_pos], tick_lab)


def parallel_coordinates(sweep: Sweep, params: list[str] | None = None, top_k: int = 10,
                         max_categories: int = 12) -> ParallelCoordinates:
    """Axes log-scaled where the parameter is; categorical axes list their (folded) values."""
    order = _ordered(_need_varied(sweep, 1, "parallel coordinates"), params)
    coords = {"run_id": sweep.runs["run_id"].to_numpy()}
    axes = []
    for spec in order:
        col = sweep.runs[spec.column]
        if spec.numeric:
            pos, axis = _numeric_axis(col.to_numpy(dtype=float), spec.kind, spec.log_scale, spec.name)
        else:
            folded = fold_categories(col.astype(object), max_levels=max_categories)
            labels = sorted({str(v) for v in folded.dropna()}, key=lambda s: (s == "other", s))
            index = {lab: i for i, lab in enumerate(labels)}
            k = max(len(labels) - 1, 1)
            pos = np.array([index[str(v)] / k if pd.notna(v) else -0.05 for v in folded])
            axis = Axis(spec.name, spec.kind, False, [i / k for i in range(len(labels))], labels)
        coords[spec.name] = pos
        axes.append(axis)
    y = _objective(sweep)
    coords[sweep.objective], axis = _numeric_axis(y, "objective", False, sweep.objective)
    axes.append(axis)
    frame = pd.DataFrame({**coords, "objective_value": y})
    return ParallelCoordinates(sweep.objective, sweep.mode, axes, frame, sweep.best(top_k)["run_id"].tolist())


# --------------------------------------------------------------------------- effects and comparisons


@dataclass
class LevelStats:
    label: str
    n: int
    mean: float
    std: float | None
    median: float
    q1: float
    q3: float
    whislo: float
    whishi: float


def level_stats(label: str, v: np.ndarray) -> LevelStats:
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    iqr = q3 - q1
    inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
    return LevelStats(label, len(v), float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None,
                      float(med), float(q1), float(q3), float(inside.min()), float(inside.max()))


@dataclass
class ParamEffect:
    param: str
    kind: str
    levels: list[LevelStats]


@dataclass
class ParameterEffects:
    objective: str
    mode: str
    effects: list[ParamEffect]


def parameter_effects(sweep: Sweep, params: list[str] | None = None, max_bins: int = 8) -> ParameterEffects:
    """Distribution of the objective for each value (or bin) of each varied parameter."""
    order = _ordered(_need_varied(sweep, 1, "parameter effects"), params)
    y = _objective(sweep)
    effects = []
    for spec in order:
        b = bin_param(sweep.runs[spec.column], spec, max_bins=max_bins)
        levels = [level_stats(lab, y[b.codes == i]) for i, lab in enumerate(b.labels) if (b.codes == i).any()]
        effects.append(ParamEffect(spec.name, spec.kind, levels))
    return ParameterEffects(sweep.objective, sweep.mode, effects)


@dataclass
class CategoricalComparison:
    param: str
    metric: str
    mode: str
    levels: list[LevelStats]
    values: dict[str, list[float]]  # raw values per level, for violins


def categorical_comparisons(sweep: Sweep, metric: str | None = None, max_levels: int = 10) -> dict[str, CategoricalComparison]:
    """For each categorical or boolean parameter: per-value mean ± std, quartiles and raw values."""
    metric = metric or sweep.objective
    specs = [p for p in sweep.varied_params if p.kind in ("categorical", "bool")]
    if not specs:
        raise NotApplicable("no varied categorical or boolean parameter")
    y = sweep.runs[METRIC_PREFIX + metric].to_numpy(dtype=float)
    out = {}
    for spec in specs:
        b = bin_param(sweep.runs[spec.column], spec, max_levels=max_levels)
        levels, values = [], {}
        for i, lab in enumerate(b.labels):
            v = y[(b.codes == i) & np.isfinite(y)]
            if len(v):
                levels.append(level_stats(lab, v))
                values[lab] = [float(x) for x in v]
        key = f"{safe_name(spec.name)}_comparison_{safe_name(metric)}"
        out[key] = CategoricalComparison(spec.name, metric, sweep.mode, levels, values)
    return out


# --------------------------------------------------------------------------- runs and metrics


def main_metrics(sweep: Sweep, limit: int = 6) -> list[str]:
    """The objective first, then the metrics most runs logged that actually vary."""
    cols = {m: sweep.runs[METRIC_PREFIX + m] for m in sweep.metrics if m != sweep.objective}
    scored = sorted((-col.notna().sum(), m) for m, col in cols.items() if col.nunique(dropna=True) > 1)
    return [sweep.objective] + [m for _, m in scored[: limit - 1]]


@dataclass
class TopK:
    objective: str
    mode: str
    k: int
    metrics: list[str]
    params: list[str]
    table: pd.DataFrame  # rank, run_id, run_name, metrics..., params...


def top_k(sweep: Sweep, k: int = 10) -> TopK:
    """The k best runs, their main metrics and their parameters."""
    best = sweep.best(k).reset_index(drop=True)
    metrics = main_metrics(sweep)
    params = [p.name for p in sweep.varied_params]
    table = pd.DataFrame({"rank": np.arange(1, len(best) + 1), "run_id": best["run_id"], "run_name": best["run_name"]})
    for m in metrics:
        table[m] = best[METRIC_PREFIX + m].to_numpy()
    for p in params:
        table[p] = best[sweep.params[p].column].astype(object).to_numpy()
    return TopK(sweep.objective, sweep.mode, len(best), metrics, params, table)


@dataclass
class MetricHistogram:
    metric: str
    n: int
    mean: float
    median: float
    std: float | None
    counts: list[int]
    edges: list[float]


@dataclass
class MetricDistributions:
    histograms: list[MetricHistogram]
    metrics_left_out: list[str]


def metric_distributions(sweep: Sweep, max_metrics: int = 16, bins: int = 20) -> MetricDistributions:
    """Histogram, mean and median of every final metric (the objective first)."""
    names = [sweep.objective] + [m for m in sweep.metrics if m != sweep.objective]
    hists = []
    for m in names:
        v = sweep.runs[METRIC_PREFIX + m].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        counts, edges = np.histogram(v, bins=min(bins, max(len(np.unique(v)), 1)))
        hists.append(MetricHistogram(m, len(v), float(v.mean()), float(np.median(v)),
                                     float(v.std(ddof=1)) if len(v) > 1 else None,
                                     counts.tolist(), edges.tolist()))
    return MetricDistributions(hists[:max_metrics], [h.metric for h in hists[max_metrics:]])


@dataclass
class MetricCorrelations:
    metrics: list[str]
    pearson: list[list[float | None]]
    spearman: list[list[float | None]]
    n: list[list[int]]
    metrics_left_out: list[str]


def metric_correlations(sweep: Sweep, max_metrics: int = 20) -> MetricCorrelations:
    """Pearson and Spearman correlation between final metrics, with the pairwise n."""
    varying = main_metrics(sweep, limit=len(sweep.metrics) + 1)
    if len(varying) < 2:
        raise NotApplicable(f"correlations need two varying metrics, the sweep has {len(varying)}")
    chosen, left_out = varying[:max_metrics], varying[max_metrics:]
    frame = sweep.runs[[METRIC_PREFIX + m for m in chosen]]
    frame.columns = chosen
    present = frame.notna().astype(int)
    corr = [frame.corr(method=m, min_periods=3).to_numpy().tolist() for m in ("pearson", "spearman")]
    return MetricCorrelations(chosen, *corr, (present.T @ present).to_numpy().tolist(), left_out)


@dataclass
class OptimizationHistory:
    objective: str
    mode: str
    run_ids: list[str]
    values: list[float]
    best_so_far: list[float]
    best_run_id: str


def optimization_history(sweep: Sweep) -> OptimizationHistory:
    """Objective in run order (start time) with the best-so-far line."""
    y = _objective(sweep)
    best = np.minimum.accumulate(y) if sweep.mode == "min" else np.maximum.accumulate(y)
    best_idx = int(np.argmin(y) if sweep.mode == "min" else np.argmax(y))
    return OptimizationHistory(sweep.objective, sweep.mode, sweep.runs["run_id"].tolist(), y.tolist(),
                               best.tolist(), str(sweep.runs["run_id"].iloc[best_idx]))
