"""Stage-2 analyses: how the candidates picked from the screening sweep did when fully trained.

A candidate is a configuration (the values of every hyperparameter, seeds excluded); it may have run
with several seeds. Its stage-1 score comes, in order of preference, from the stage-1 run named in its
`mlviz.stage1_run_id` tag, from a metric `stage1_<objective>` / `quick_<objective>` it logged, or from
the stage-1 runs with the same configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mlviz.analysis import NotApplicable
from mlviz.analysis.stats import percentile_interval
from mlviz.sweep import METRIC_PREFIX, Sweep


def _stage2(sweep: Sweep) -> Sweep:
    s2 = sweep.stage(2)
    if len(s2.runs) == 0:
        raise NotApplicable("no stage-2 runs (tag mlviz.stage=2, a parent named 'stage2', or --stage2-parent)")
    return s2


def config_keys(sweep: Sweep, table: pd.DataFrame) -> pd.Series:
    """One string per run naming its configuration: hyperparameters that vary anywhere in the
    sweep, without replicate seeds."""
    names = [p.name for p in sweep.params.values() if not p.seed and not p.fixed and not getattr(p, "left_out", None)]
    if not names:
        return pd.Series(["(single configuration)"] * len(table), index=table.index)
    cols = table[[sweep.params[n].column for n in names]].astype(object).astype(str)
    return cols.apply(lambda row: ", ".join(f"{n}={v}" for n, v in zip(names, row, strict=True)), axis=1)


def _stage1_scores(sweep: Sweep, s2: pd.DataFrame) -> tuple[pd.Series, str]:
    objective = sweep.objective
    s1 = sweep.runs[sweep.runs["stage"] == 1]
    by_id = s1.set_index("run_id")[sweep.objective_column]
    linked = s2["stage1_run_id"].map(by_id)
    if linked.notna().any():
        return linked, "stage-1 run named by the mlviz.stage1_run_id tag"
    for prefix in ("stage1_", "quick_"):
        col = METRIC_PREFIX + prefix + objective
        if col in s2 and s2[col].notna().any():
            return s2[col], f"metric {prefix}{objective} logged by the stage-2 run"
    means = s1.groupby(config_keys(sweep, s1))[sweep.objective_column].mean()
    return config_keys(sweep, s2).map(means), "mean of stage-1 runs with the same configuration"


@dataclass
class Candidates:
    objective: str
    mode: str
    stage1_source: str
    table: pd.DataFrame  # config, criterion, stage1, stage2_mean, stage2_std, n_seeds, best_run_id, params...


def candidates(sweep: Sweep) -> Candidates:
    """Stage-2 runs grouped by configuration, with their stage-1 score."""
    s2 = _stage2(sweep).runs.copy()
    s2["_config"] = config_keys(sweep, s2).to_numpy()
    s1_score, source = _stage1_scores(sweep, s2)
    s2["_stage1"] = np.asarray(s1_score, dtype=float)
    col = sweep.objective_column
    asc = sweep.mode == "min"
    rows = []
    for config, g in s2.groupby("_config", sort=False):
        best = g.sort_values(col, ascending=asc).iloc[0]
        row = {
            "config": config,
            "criterion": next((c for c in g["selection_criterion"] if isinstance(c, str) and c), None),
            "stage1": float(g["_stage1"].mean()) if g["_stage1"].notna().any() else np.nan,
            "stage2_mean": float(g[col].mean()),
            "stage2_std": float(g[col].std(ddof=1)) if len(g) > 1 else np.nan,
            "n_seeds": len(g),
            "best_run_id": best["run_id"],
            "run_ids": ",".join(g["run_id"]),
        }
        for p in sweep.varied_params:
            row[p.name] = best[p.column]
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("stage2_mean", ascending=asc, kind="mergesort").reset_index(drop=True)
    return Candidates(sweep.objective, sweep.mode, source, table)


# --------------------------------------------------------------------------- quick vs full
@dataclass
class StageAgreement:
    objective: str
    mode: str
    stage1_source: str
    n_candidates: int
    spearman: float | None
    spearman_ci: list[float | None]
    kendall: float | None
    kendall_ci: list[float | None]
    top_k: int
    top_k_overlap: float | None  # share of the stage-1 top k that is also in the stage-2 top k
    regret: float | None  # best stage-2 score minus that of the candidate ranked first in stage 1 (≥ 0)
    picked_by_stage1: str | None
    best_in_stage2: str | None
    points: pd.DataFrame  # config, criterion, stage1, stage2_mean, stage2_std, n_seeds, improvement
    n_boot: int
    config_names: dict = field(default_factory=dict)  # {config: "#rank run name"}, set by the figure layer


def stage_agreement(sweep: Sweep, n_boot: int = 1000, seed: int = 0) -> StageAgreement:
    """Does the cheap stage-1 score rank the candidates as full training does?"""
    cand = candidates(sweep)
    t = cand.table.dropna(subset=["stage1"]).reset_index(drop=True)
    if len(t) < 2:
        raise NotApplicable(f"needs two candidates with a stage-1 score, found {len(t)}")
    x, y = t["stage1"].to_numpy(), t["stage2_mean"].to_numpy()
    sign = -1.0 if sweep.mode == "min" else 1.0
    rho = tau = None
    rho_ci = tau_ci = [None, None]
    if len(t) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho = float(stats.spearmanr(x, y).statistic)
        tau = float(stats.kendalltau(x, y).statistic)
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(n_boot):
            i = rng.integers(0, len(t), len(t))
            if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
                draws.append((stats.spearmanr(x[i], y[i]).statistic, stats.kendalltau(x[i], y[i]).statistic))
        if draws:
            lo, hi = percentile_interval(np.array(draws, dtype=float))
            rho_ci, tau_ci = [float(lo[0]), float(hi[0])], [float(lo[1]), float(hi[1])]
    k = max(1, min(5, len(t) // 3 or 1))
    top1 = set(np.argsort(-sign * x, kind="mergesort")[:k])
    top2 = set(np.argsort(-sign * y, kind="mergesort")[:k])
    picked = int(np.argmax(sign * x))
    best = int(np.argmax(sign * y))
    points = t[["config", "criterion", "stage1", "stage2_mean", "stage2_std", "n_seeds"]].copy()
    points["improvement"] = sign * (points["stage2_mean"] - points["stage1"])
    return StageAgreement(sweep.objective, sweep.mode, cand.stage1_source, len(t), rho, rho_ci, tau, tau_ci,
                          k, len(top1 & top2) / k, float(sign * (y[best] - y[picked])), t["config"][picked],
                          t["config"][best], points, n_boot)


# --------------------------------------------------------------------------- criteria, seeds
@dataclass
class CriterionGroup:
    criterion: str
    n: int
    mean: float
    best: float
    values: list[float]
    configs: list[str]


@dataclass
class SelectionCriteria:
    objective: str
    mode: str
    groups: list[CriterionGroup]
    config_names: dict = field(default_factory=dict)  # {config: "#rank run name"}, set by the figure layer


def selection_criteria(sweep: Sweep) -> SelectionCriteria:
    """Stage-2 scores grouped by why each candidate was selected."""
    t = candidates(sweep).table
    if t["criterion"].isna().all():
        raise NotApplicable("no selection criterion recorded (tag mlviz.selection_criterion on stage-2 runs)")
    t = t.assign(criterion=t["criterion"].fillna("(not recorded)"))
    pick = min if sweep.mode == "min" else max
    groups = [
        CriterionGroup(c, len(g), float(g["stage2_mean"].mean()), float(pick(g["stage2_mean"])),
                       g["stage2_mean"].tolist(), g["config"].tolist())
        for c, g in t.groupby("criterion", sort=True)
    ]
    order = sorted(groups, key=lambda g: g.mean, reverse=sweep.mode == "max")
    return SelectionCriteria(sweep.objective, sweep.mode, order)


@dataclass
class SeedVariance:
    """Spread over seeds per configuration, and a one-way random-effects split of the variance."""

    objective: str
    mode: str
    configs: pd.DataFrame  # config, n_seeds, mean, std, min, max
    values: dict[str, list[float]]
    var_hyperparameters: float
    var_seeds: float
    share_hyperparameters: float
    share_seeds: float
    n_configs: int
    n_runs: int
    config_names: dict = field(default_factory=dict)  # {config: "#rank run name"}, set by the figure layer


def seed_variance(sweep: Sweep) -> SeedVariance:
    s2 = _stage2(sweep).runs
    keys = config_keys(sweep, s2)
    y = s2[sweep.objective_column]
    groups = {k: y[keys == k].to_numpy(dtype=float) for k in pd.unique(keys)}
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        raise NotApplicable("no configuration ran with more than one seed")
    sizes = np.array([len(v) for v in groups.values()])
    n, k = sizes.sum(), len(groups)
    grand = np.concatenate(list(groups.values())).mean()
    ss_within = sum(((v - v.mean()) ** 2).sum() for v in groups.values())
    ms_within = ss_within / max(n - k, 1)
    if k >= 2:
        ss_between = sum(len(v) * (v.mean() - grand) ** 2 for v in groups.values())
        ms_between = ss_between / (k - 1)
        n0 = (n - (sizes**2).sum() / n) / (k - 1)
        var_between = max(0.0, (ms_between - ms_within) / n0)
    else:
        var_between = 0.0
    total = var_between + ms_within
    table = pd.DataFrame([{"config": c, "n_seeds": len(v), "mean": v.mean(), "std": v.std(ddof=1),
                           "min": v.min(), "max": v.max()} for c, v in groups.items()])
    table = table.sort_values("mean", ascending=sweep.mode == "min", kind="mergesort").reset_index(drop=True)
    return SeedVariance(sweep.objective, sweep.mode, table, {c: v.tolist() for c, v in groups.items()},
                        float(var_between), float(ms_within),
                        float(var_between / total) if total > 0 else 0.0,
                        float(ms_within / total) if total > 0 else 0.0, k, int(n))


# --------------------------------------------------------------------------- learning curves
@dataclass
class Curve:
    config: str
    key: str
    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    n_seeds: int


@dataclass
class LearningCurves:
    objective: str
    mode: str
    keys: list[str]
    curves: list[Curve]
    band: str = "min–max over seeds"
    config_names: dict = field(default_factory=dict)  # {config: "#rank run name"}, set by the figure layer


def learning_curves(sweep: Sweep, histories: pd.DataFrame | None, top: int = 6) -> LearningCurves:
    """Per-epoch curves of the top candidates (mean over seeds with a min–max band)."""
    s2 = _stage2(sweep).runs
    if histories is None or histories.empty:
        raise NotApplicable("no metric histories were logged by the stage-2 runs")
    cand = candidates(sweep).table.head(top)
    steps_per_key = histories.groupby("key")["step"].nunique()
    keys = [k for k in steps_per_key.index if steps_per_key[k] > 1]
    losses = sorted(k for k in keys if "loss" in k.lower())
    chosen = list(dict.fromkeys(losses[:4] + ([sweep.objective] if sweep.objective in keys else [])))
    if not chosen:
        raise NotApplicable("no metric was logged at more than one step")
    config_of = dict(zip(s2["run_id"], config_keys(sweep, s2), strict=True))
    hist = histories[histories["run_id"].isin(config_of) & histories["key"].isin(chosen)].copy()
    hist["config"] = hist["run_id"].map(config_of)
    curves = []
    for config in cand["config"]:
        for key in chosen:
            h = hist[(hist["config"] == config) & (hist["key"] == key)]
            if h.empty:
                continue
            agg = h.groupby("step")["value"].agg(["mean", "min", "max"])
            curves.append(Curve(config, key, agg.index.astype(int).tolist(), agg["mean"].tolist(),
                                agg["min"].tolist(), agg["max"].tolist(), int(h["run_id"].nunique())))
    return LearningCurves(sweep.objective, sweep.mode, chosen, curves)


# --------------------------------------------------------------------------- best configuration
@dataclass
class BestConfig:
    objective: str
    mode: str
    config: str
    params: dict
    fixed_params: dict
    stage2_mean: float
    stage2_std: float | None
    n_seeds: int
    stage1: float | None
    stage1_rank: int | None
    n_candidates: int
    criterion: str | None
    run_ids: list[str]
    other_metrics: dict
    config_names: dict = field(default_factory=dict)  # {config: "#rank run name"}, set by the figure layer


def best_config(sweep: Sweep) -> BestConfig:
    cand = candidates(sweep).table
    best = cand.iloc[0]
    sign = -1.0 if sweep.mode == "min" else 1.0
    rank = None
    if pd.notna(best["stage1"]):
        rank = int((sign * cand["stage1"] > sign * best["stage1"]).sum() + 1)
    s2 = _stage2(sweep).runs
    runs = s2[s2["run_id"].isin(best["run_ids"].split(","))]
    others = {m: float(runs[METRIC_PREFIX + m].mean()) for m in sweep.metrics
              if m != sweep.objective and runs[METRIC_PREFIX + m].notna().any()}
    return BestConfig(
        sweep.objective, sweep.mode, best["config"], {p.name: best[p.name] for p in sweep.varied_params},
        {p.name: (p.values[0] if p.values else None) for p in sweep.fixed_params},
        float(best["stage2_mean"]), None if pd.isna(best["stage2_std"]) else float(best["stage2_std"]),
        int(best["n_seeds"]), None if pd.isna(best["stage1"]) else float(best["stage1"]), rank, len(cand),
        best["criterion"], best["run_ids"].split(","), dict(list(others.items())[:12]))
