"""Picking stage-2 candidates from a stage-1 sweep, recording why each was picked.

Three phases (as research groups do by hand): (1) for every value (or bin) of every hyperparameter,
its top k runs, so every value is tried in full training; (2) the overall top n; (3) the top runs by a
second metric. Configurations are de-duplicated (a configuration is picked once, by the first phase
that reaches it). With `diversity` > 0, a candidate closer than that to an already-picked one in a
normalised parameter space is passed over, and phase 2 picks by max-min distance (farthest point
first) among its best runs, so near-identical configurations do not crowd out the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlviz.analysis import NotApplicable
from mlviz.analysis.binning import bin_param
from mlviz.analysis.stage2 import config_keys
from mlviz.sweep import METRIC_PREFIX, Sweep


@dataclass
class CandidatePicks:
    objective: str
    mode: str
    picks: pd.DataFrame  # run_id, run_name, config, criterion, phase, score, params...
    per_phase: dict[str, int]
    skipped_near_duplicates: int
    options: dict = field(default_factory=dict)


def normalised_space(sweep: Sweep) -> np.ndarray:
    """Runs as points in [0, 1]^d: numeric parameters min-max scaled (in log10 where log-scaled),
    categorical ones one-hot scaled by 1/√2 so that two different values are at distance 1."""
    cols = []
    for spec in sweep.varied_params:
        col = sweep.runs[spec.column]
        if spec.numeric:
            x = col.to_numpy(dtype=float)
            if spec.log_scale:
                x = np.log10(x)
            lo, hi = np.nanmin(x), np.nanmax(x)
            cols.append(((x - lo) / ((hi - lo) or 1.0))[:, None])
        else:
            dummies = pd.get_dummies(col.astype(object).astype(str)).to_numpy(dtype=float)
            cols.append(dummies / np.sqrt(2.0))
    if not cols:
        return np.zeros((len(sweep.runs), 0))
    return np.nan_to_num(np.hstack(cols), nan=0.5) / np.sqrt(max(len(sweep.varied_params), 1))


def select_candidates(sweep: Sweep, per_value_k: int = 5, top_n: int = 10, second_metric: str | None = None,
                      second_k: int = 5, second_mode: str | None = None, diversity: float = 0.0,
                      max_bins: int = 5, per_value_params: list[str] | None = None) -> CandidatePicks:
    """Candidates in pick order; `per_value_params` limits phase 1 to some parameters (default all)."""
    runs = sweep.runs.reset_index(drop=True)
    if runs.empty:
        raise NotApplicable("no stage-1 runs to select from")
    configs = config_keys(sweep, runs).to_numpy()
    space = normalised_space(sweep)
    score = runs[sweep.objective_column].to_numpy(dtype=float)
    sign = -1.0 if sweep.mode == "min" else 1.0
    # Best first; ties keep run order (start time), so the same table always gives the same picks.
    order = np.argsort(-sign * score, kind="mergesort")
    picked: list[int] = []
    picked_configs: set[str] = set()
    rows: list[dict] = []
    skipped = 0

    def distance(i: int) -> float:  # to the nearest pick so far
        return float(np.min(np.linalg.norm(space[picked] - space[i], axis=1)))

    def take(i: int, criterion: str, phase: str) -> bool:
        nonlocal skipped
        if configs[i] in picked_configs:
            return False
        if diversity > 0 and picked and distance(i) < diversity:
            skipped += 1
            return False
        picked.append(i)
        picked_configs.add(configs[i])
        rows.append({"index": i, "criterion": criterion, "phase": phase})
        return True

    def take_first(indices, k: int, criterion: str, phase: str) -> None:
        """Take from `indices` in order until k were taken (those passed over do not count)."""
        got = 0
        for i in indices:
            if got >= k:
                break
            got += take(i, criterion, phase)

    # Phase 1: per value (or bin) of each hyperparameter, its best k runs.
    for spec in sweep.varied_params:
        if per_value_params is not None and spec.name not in per_value_params:
            continue
        binned = bin_param(runs[spec.column], spec, max_bins=max_bins)
        for level, label in enumerate(binned.labels):
            take_first([i for i in order if binned.codes[i] == level], per_value_k, f"{spec.name}={label}",
                       "per_value")
    # Phase 2: overall top n (max-min distance among the best 3n when diversity is on).
    pool = [i for i in order if configs[i] not in picked_configs]
    if diversity > 0:
        pool = pool[: 3 * top_n]
        got = 0
        while pool and got < top_n:
            if picked:
                dist = [distance(i) for i in pool]
                choice = pool[int(np.argmax(dist))]  # argmax keeps the better-scored on ties
            else:
                choice = pool[0]
            pool.remove(choice)
            got += take(choice, f"overall_{sweep.objective}", "overall")
    else:  # replicates of one configuration count once: go on until n distinct ones
        take_first(pool, top_n, f"overall_{sweep.objective}", "overall")
    # Phase 3: top by a second metric.
    if second_metric:
        col = METRIC_PREFIX + second_metric
        if col not in runs:
            raise NotApplicable(f"second metric '{second_metric}' was logged by no stage-1 run")
        from mlviz.sweep import default_direction

        s2sign = -1.0 if (second_mode or default_direction(second_metric)) == "min" else 1.0
        values = runs[col].to_numpy(dtype=float)
        order2 = [i for i in np.argsort(-s2sign * np.nan_to_num(values, nan=-np.inf * s2sign), kind="mergesort")
                  if np.isfinite(values[i])]
        take_first(order2, second_k, f"top_{second_metric}", "second_metric")

    table = pd.DataFrame(rows, columns=["index", "criterion", "phase"])
    idx = table["index"].to_numpy(dtype=int)
    out = pd.DataFrame({"run_id": runs["run_id"].to_numpy()[idx],
                        "run_name": runs["run_name"].to_numpy()[idx], "config": configs[idx],
                        "criterion": table["criterion"].to_numpy(),
                        "phase": table["phase"].to_numpy(), "score": score[idx]})
    for spec in sweep.varied_params:
        out[spec.name] = runs[spec.column].astype(object).to_numpy()[idx]
    options = {"per_value_k": per_value_k, "per_value_params": per_value_params, "top_n": top_n,
               "second_metric": second_metric, "second_k": second_k, "diversity": diversity,
               "max_bins": max_bins}
    return CandidatePicks(sweep.objective, sweep.mode, out, out["phase"].value_counts().to_dict(), skipped,
                          options)
