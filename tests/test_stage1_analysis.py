"""The numbers behind the stage-1 figures, and which runs `build_sweep` keeps (and why it leaves others out).

Pure: records are built in memory (as `mlviz.store.read.Store.run_records` produces them), no MLflow.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from mlviz.analysis import NotApplicable
from mlviz.analysis.binning import OTHER, bin_param, fold_categories
from mlviz.analysis.stage1 import (
    categorical_comparisons,
    heatmaps,
    metric_correlations,
    optimization_history,
    parallel_coordinates,
    parameter_effects,
    parameter_importance,
    top_k,
)
from mlviz.demo.synthetic import synthetic_records
from mlviz.errors import MlvizError
from mlviz.sweep import build_sweep, default_direction


@pytest.fixture(scope="module")
def sweep():
    """300 synthetic runs, with a few missing `dropout` values so the heatmaps get a 'missing' level."""
    records = synthetic_records(300, seed=7)
    for r in records[::37]:
        r["params"]["dropout"] = "None"
    return build_sweep(records)


# --------------------------------------------------------------------------- (a) heatmaps


def test_heatmap_cells_equal_a_pandas_groupby(sweep):
    hm = heatmaps(sweep, n_boot=200, seed=1)
    y = sweep.runs[sweep.objective_column].to_numpy(dtype=float)
    specs = {p.name: p for p in sweep.varied_params}
    assert hm.metric == "val_accuracy" and hm.n_runs == 300 and hm.params_left_out == []
    names = {p.name for p in sweep.varied_params}
    assert names == {"learning_rate", "optimizer", "depth", "dropout", "augment", "noise_param"}
    assert {frozenset((p.x_param, p.y_param)) for p in hm.pairs} == {
        frozenset((a, b)) for a in names for b in names if a < b}
    for pair in hm.pairs:  # runs without a dropout value get their own level, they are not dropped
        if "dropout" in (pair.x_param, pair.y_param):
            labels = pair.x_labels if pair.x_param == "dropout" else pair.y_labels
            assert labels[-1] == "missing"
    checked_single = checked_multi = 0
    for pair in hm.pairs:
        bx = bin_param(sweep.runs[specs[pair.x_param].column], specs[pair.x_param], max_bins=6)
        by = bin_param(sweep.runs[specs[pair.y_param].column], specs[pair.y_param], max_bins=6)
        assert pair.x_labels == bx.labels and pair.y_labels == by.labels
        frame = pd.DataFrame({"x": bx.codes, "y": by.codes, "v": y})
        expected = frame.groupby(["x", "y"])["v"].agg(["mean", "count"])
        assert len(pair.mean) == by.n_levels and all(len(row) == bx.n_levels for row in pair.mean)
        total = 0
        for cy in range(by.n_levels):
            for cx in range(bx.n_levels):
                n, m = pair.n[cy][cx], pair.mean[cy][cx]
                lo, hi = pair.ci_low[cy][cx], pair.ci_high[cy][cx]
                total += n
                if (cx, cy) not in expected.index:
                    assert n == 0 and m is None and lo is None and hi is None
                    continue
                exp_mean, exp_n = expected.loc[(cx, cy)]
                assert n == exp_n
                assert m == pytest.approx(exp_mean, abs=1e-12, rel=0)
                if n == 1:
                    assert lo is None and hi is None
                    checked_single += 1
                else:
                    assert lo <= m + 1e-12 and m - 1e-12 <= hi, (pair.x_param, pair.y_param, cx, cy, lo, m, hi)
                    vals = y[(bx.codes == cx) & (by.codes == cy)]
                    assert vals.min() - 1e-12 <= lo and hi <= vals.max() + 1e-12
                    checked_multi += 1
        assert total == len(sweep.runs)
    assert checked_multi > 100 and checked_single > 0  # both branches were exercised


def test_heatmaps_need_two_varied_parameters():
    records = synthetic_records(30, seed=1)
    for r in records:
        r["params"] = {"learning_rate": r["params"]["learning_rate"], "batch_size": "64"}
    with pytest.raises(NotApplicable, match="2 varied parameter"):
        heatmaps(build_sweep(records), n_boot=20)


# --------------------------------------------------------------------------- (b) importance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_importance_recovers_the_known_structure(seed):
    sw = build_sweep(synthetic_records(1000, seed=seed))
    assert sw.objective == "val_accuracy" and sw.mode == "max"
    imp = parameter_importance(sw, n_boot=300, seed=seed, forest=(seed == 0))
    assert imp.n_runs == 1000 and imp.n_boot == 300
    assert imp.params[0] == "learning_rate", imp.params
    assert imp.params[1] == "optimizer", imp.params
    assert imp.importance[0] > 0.5 and imp.importance[1] > 0.1
    assert imp.importance == sorted(imp.importance, reverse=True)
    by = dict(zip(imp.params, zip(imp.importance, imp.ci_low, imp.ci_high, strict=True), strict=True))
    point, lo, hi = by["noise_param"]
    assert lo <= 0.0 <= hi, f"noise_param has no effect, yet its interval is [{lo}, {hi}]"
    assert abs(point) < 0.03
    for name, (_p, lo, hi) in by.items():
        assert lo <= hi, name
    # learning_rate and optimizer are clearly non-zero
    assert by["learning_rate"][1] > 0.4 and by["optimizer"][1] > 0.05
    # batch_size is the same in every run: reported as fixed, not ranked
    assert "batch_size" not in imp.params
    assert sw.params["batch_size"].fixed and sw.describe()["fixed_params"] == {"batch_size": 64}
    assert sum(imp.normalized) == pytest.approx(1.0)
    assert 0.0 <= imp.unexplained <= 1.0
    if imp.forest_r2 is not None:
        assert 0.5 < imp.forest_r2 <= 1.0


# --------------------------------------------------------------------------- (c) other analyses


def test_optimization_history(sweep):
    h = optimization_history(sweep)
    y = sweep.runs[sweep.objective_column].to_numpy()
    assert h.values == y.tolist() and h.run_ids == sweep.runs["run_id"].tolist()
    assert list(sweep.runs["start_time"]) == sorted(sweep.runs["start_time"])  # run order
    best = np.asarray(h.best_so_far)
    assert np.all(np.diff(best) >= 0)  # max mode: never decreases
    assert best[-1] == y.max()
    assert all(b >= v for b, v in zip(best, y, strict=True))
    assert h.best_run_id == sweep.runs.loc[int(np.argmax(y)), "run_id"]


def test_optimization_history_min_mode():
    sw = build_sweep(synthetic_records(80, seed=3), objective="val_loss")
    h = optimization_history(sw)
    best = np.asarray(h.best_so_far)
    y = sw.runs["metrics.val_loss"].to_numpy()
    assert sw.mode == "min" and np.all(np.diff(best) <= 0) and best[-1] == y.min()
    assert h.best_run_id == sw.runs.loc[int(np.argmin(y)), "run_id"]


@pytest.mark.parametrize("objective", ["val_accuracy", "val_loss"])
def test_top_k_first_row_is_the_best_run(objective):
    sw = build_sweep(synthetic_records(120, seed=5), objective=objective)
    t = top_k(sw, k=7)
    y = sw.runs[sw.objective_column]
    best_idx = y.idxmax() if sw.mode == "max" else y.idxmin()
    assert t.k == 7 and len(t.table) == 7 and list(t.table["rank"]) == list(range(1, 8))
    assert t.table.loc[0, "run_id"] == sw.runs.loc[best_idx, "run_id"]
    assert t.table.loc[0, objective] == y[best_idx]
    ordered = sorted(y, reverse=sw.mode == "max")[:7]
    assert list(t.table[objective]) == ordered
    assert t.metrics[0] == objective
    assert set(t.params) == {p.name for p in sw.varied_params}
    row = sw.runs.loc[best_idx]
    for p in t.params:
        assert t.table.loc[0, p] == row[sw.params[p].column]


def test_metric_correlations(sweep):
    mc = metric_correlations(sweep)
    k = len(mc.metrics)
    assert mc.metrics[0] == sweep.objective and set(mc.metrics) == set(sweep.metrics)
    for matrix in (mc.pearson, mc.spearman):
        a = np.asarray(matrix, dtype=float)
        assert a.shape == (k, k)
        np.testing.assert_allclose(np.diag(a), 1.0, atol=1e-12)
        np.testing.assert_allclose(a, a.T, atol=1e-12)
    frame = sweep.runs[[f"metrics.{m}" for m in mc.metrics]]
    np.testing.assert_allclose(np.asarray(mc.pearson), frame.corr().to_numpy(), atol=1e-12)
    assert np.diag(np.asarray(mc.n)).tolist() == [300] * k
    i, j = mc.metrics.index("val_accuracy"), mc.metrics.index("val_f1")
    assert mc.pearson[i][j] == pytest.approx(1.0, abs=1e-9)  # val_f1 = val_accuracy - 0.02


def test_parameter_effects_counts_and_means(sweep):
    pe = parameter_effects(sweep)
    y = sweep.runs[sweep.objective_column].to_numpy()
    assert {e.param for e in pe.effects} == {p.name for p in sweep.varied_params}
    for e in pe.effects:
        assert sum(level.n for level in e.levels) == len(sweep.runs), e.param
        spec = sweep.params[e.param]
        b = bin_param(sweep.runs[spec.column], spec, max_bins=8)
        for level in e.levels:
            vals = y[b.codes == b.labels.index(level.label)]
            assert level.n == len(vals)
            assert level.mean == pytest.approx(vals.mean(), abs=1e-12)
            assert level.median == pytest.approx(np.median(vals), abs=1e-12)
            assert level.q1 <= level.median <= level.q3
    dropout = next(e for e in pe.effects if e.param == "dropout")
    assert dropout.levels[-1].label == "missing" and dropout.levels[-1].n == len(range(0, 300, 37))
    opt = next(e for e in pe.effects if e.param == "optimizer")
    assert [lv.label for lv in opt.levels] == ["adam", "adamw", "rmsprop", "sgd"]


@pytest.fixture(scope="module")
def wide_categorical_sweep():
    """A categorical parameter with 30 values (arch00..arch29), one of them frequent."""
    records = synthetic_records(300, seed=11)
    rng = np.random.default_rng(0)
    for i, r in enumerate(records):
        r["params"]["arch"] = "arch00" if i % 3 == 0 else f"arch{rng.integers(1, 30):02d}"
    return build_sweep(records)


def test_fold_categories_keeps_the_most_frequent():
    values = pd.Series([f"v{i:02d}" for i in range(30) for _ in range(30 - i)])
    folded = fold_categories(values, max_levels=10)
    assert set(folded) == {f"v{i:02d}" for i in range(9)} | {OTHER}
    assert (folded == OTHER).sum() == sum(30 - i for i in range(9, 30))
    few = pd.Series(["a", "b", "a"])
    assert fold_categories(few, max_levels=10).tolist() == ["a", "b", "a"]  # no 'other' when not needed


def test_wide_categorical_folds_in_effects_and_parallel_coordinates(wide_categorical_sweep):
    sw = wide_categorical_sweep
    assert sw.params["arch"].kind == "categorical" and sw.params["arch"].n_unique == 30
    arch = next(e for e in parameter_effects(sw).effects if e.param == "arch")
    labels = [lv.label for lv in arch.levels]
    assert len(labels) <= 10 and labels[-1] == OTHER and "arch00" in labels
    assert sum(lv.n for lv in arch.levels) == 300
    pc = parallel_coordinates(sw)
    axis = next(a for a in pc.axes if a.name == "arch")
    assert len(axis.tick_labels) <= 12 and axis.tick_labels[-1] == OTHER
    assert pc.axes[-1].name == sw.objective and len(pc.coords) == 300
    assert pc.top_run_ids == sw.best(10)["run_id"].tolist()


def test_wide_categorical_folds_in_categorical_comparison(wide_categorical_sweep):
    cc = categorical_comparisons(wide_categorical_sweep, max_levels=10)
    comp = cc["arch_comparison_val_accuracy"]
    labels = [lv.label for lv in comp.levels]
    assert sum(lv.n for lv in comp.levels) == 300
    assert len(labels) <= 10 and labels[-1] == OTHER


def test_categorical_comparisons_numbers(sweep):
    cc = categorical_comparisons(sweep)
    assert set(cc) == {"optimizer_comparison_val_accuracy", "augment_comparison_val_accuracy"}
    comp = cc["optimizer_comparison_val_accuracy"]
    frame = pd.DataFrame({"o": sweep.runs["params.optimizer"], "v": sweep.runs["metrics.val_accuracy"]})
    g = frame.groupby("o")["v"]
    for level in comp.levels:
        assert level.n == g.size()[level.label]
        assert level.mean == pytest.approx(g.mean()[level.label], abs=1e-12)
        assert level.std == pytest.approx(g.std()[level.label], abs=1e-12)
        assert sorted(comp.values[level.label]) == sorted(frame.loc[frame.o == level.label, "v"])
    aug = cc["augment_comparison_val_accuracy"]
    assert [lv.label for lv in aug.levels] == ["False", "True"]
    assert sum(lv.n for lv in aug.levels) == 300


# --------------------------------------------------------------------------- (d) build_sweep: exclusions, stages


def rec(i, *, name=None, status="FINISHED", lifecycle="active", params=None, metrics=None, tags=None):
    rng = np.random.default_rng(i)
    return {
        "run_id": f"{i:032x}",
        "run_name": name or f"run-{i}",
        "experiment_id": "1",
        "status": status,
        "lifecycle_stage": lifecycle,
        "start_time": 1_700_000_000_000 + i * 1000,
        "end_time": 1_700_000_000_000 + i * 1000 + 500,
        "params": {"lr": repr(float(10 ** rng.uniform(-4, -1))), "opt": ["adam", "sgd"][i % 2]}
        if params is None else params,
        "metrics": {"val_loss": float(rng.uniform(0.1, 1.0)), "val_accuracy": float(rng.uniform(0.5, 0.9))}
        if metrics is None else metrics,
        "tags": dict(tags or {}),
    }


def child_of(parent_id):
    return {"mlflow.parentRunId": parent_id}


def test_every_left_out_run_is_recorded_with_its_reason():
    parent = rec(100, name="group", params={}, metrics={})
    records = [rec(i) for i in range(1, 7)] + [
        rec(10, lifecycle="deleted"),
        rec(11, status="FAILED"),
        rec(12, status="RUNNING"),
        rec(13, status="KILLED"),
        parent,
        rec(101, tags=child_of(parent["run_id"])),
        rec(102, tags=child_of(parent["run_id"])),
        rec(14, metrics={"val_accuracy": 0.7}),  # objective val_loss missing
        rec(15, metrics={"val_loss": float("nan"), "val_accuracy": 0.7}),
        rec(16, name="mlviz-visualize", params={}, metrics={"mlviz.n_runs": 8.0},
            tags={"mlviz.analysis": "visualize"}),
    ]
    sw = build_sweep(records, objective="val_loss")
    reasons = {e.run_id: e.reason for e in sw.excluded}
    expect = {
        10: "deleted",
        11: "failed: status FAILED",
        12: "unfinished: status RUNNING",
        13: "killed: status KILLED",
        100: "parent run: groups 2 child runs",
        14: "objective missing: val_loss",
        15: "objective non-finite",
        16: "mlviz analysis run",
    }
    for i, prefix in expect.items():
        assert reasons[f"{i:032x}"].startswith(prefix), (i, reasons.get(f"{i:032x}"))
    included = set(sw.runs["run_id"])
    assert included == {f"{i:032x}" for i in [1, 2, 3, 4, 5, 6, 101, 102]}
    assert not included & set(reasons)
    assert len(included) + len(sw.excluded) == len(records)  # none silently dropped
    assert included | set(reasons) == {r["run_id"] for r in records}
    assert sw.exclusion_counts() == {"deleted": 1, "failed": 1, "unfinished": 1, "killed": 1, "parent run": 1,
                                     "objective missing": 1, "objective non-finite (nan)": 1,
                                     "mlviz analysis run": 1}
    d = sw.describe()
    assert d["n_runs"] == 8 and d["excluded"]["count"] == 8
    assert {r["run_id"] for r in d["excluded"]["runs"]} == set(reasons)


def test_statuses_widen_the_selection():
    records = [rec(1), rec(2), rec(3, status="FAILED"), rec(4, status="RUNNING")]
    sw = build_sweep(records, objective="val_loss", statuses=("FINISHED", "FAILED"))
    assert set(sw.runs["run_id"]) == {f"{i:032x}" for i in (1, 2, 3)}
    assert [e.reason for e in sw.excluded] == ["unfinished: status RUNNING"]


def test_nothing_left_is_an_error_that_says_why():
    with pytest.raises(MlvizError, match=r"no run left to analyse \(1 deleted, 1 failed\)"):
        build_sweep([rec(1, lifecycle="deleted"), rec(2, status="FAILED")])
    with pytest.raises(MlvizError, match="logged by no selected run"):
        build_sweep([rec(1), rec(2)], objective="val_f1")
    with pytest.raises(MlvizError, match="logged a metric"):
        build_sweep([rec(1, metrics={}), rec(2, metrics={})])


def _stages(sw):
    return dict(zip(sw.runs["run_name"], sw.runs["stage"], strict=True))


def test_stage_assignment():
    s1 = rec(200, name="stage1", params={}, metrics={})
    s2 = rec(201, name="Stage-2 full training", params={}, metrics={})
    other = rec(202, name="finals", params={}, metrics={})
    mid = rec(203, name="seeds", params={}, metrics={}, tags=child_of(s2["run_id"]))
    records = [
        s1, s2, other, mid,
        rec(1, name="plain"),
        rec(2, name="tagged", tags={"mlviz.stage": "2"}),
        rec(3, name="in-stage1", tags=child_of(s1["run_id"])),
        rec(4, name="in-stage2", tags=child_of(s2["run_id"])),
        rec(5, name="grandchild-of-stage2", tags=child_of(mid["run_id"])),
        rec(6, name="in-finals", tags=child_of(other["run_id"])),
        rec(7, name="tagged-1-in-stage2", tags={**child_of(s2["run_id"]), "mlviz.stage": "1"}),
    ]
    stages = _stages(build_sweep(records))
    assert stages == {"plain": 1, "tagged": 2, "in-stage1": 1, "in-stage2": 2, "grandchild-of-stage2": 2,
                      "in-finals": 1, "tagged-1-in-stage2": 1}
    by_id = _stages(build_sweep(records, stage_parents={2: other["run_id"]}))
    assert by_id["in-finals"] == 2 and by_id["plain"] == 1
    by_name = _stages(build_sweep(records, stage_parents={2: "finals", 1: "Stage-2 full training"}))
    assert by_name["in-finals"] == 2 and by_name["in-stage2"] == 1 and by_name["grandchild-of-stage2"] == 1
    sw = build_sweep(records)
    assert sw.describe()["runs_per_stage"] == {"1": 4, "2": 3}
    assert set(sw.stage(2).runs["run_name"]) == {"tagged", "in-stage2", "grandchild-of-stage2"}


def test_parent_run_selects_descendants_at_any_depth():
    root = rec(300, name="sweep-root", params={}, metrics={})
    a = rec(301, name="A", params={}, metrics={}, tags=child_of(root["run_id"]))
    b = rec(302, name="B", params={}, metrics={}, tags=child_of(root["run_id"]))
    b1 = rec(303, name="B1", params={}, metrics={}, tags=child_of(b["run_id"]))
    leaves = [rec(1, tags=child_of(a["run_id"])), rec(2, tags=child_of(a["run_id"])),
              rec(3, tags=child_of(b1["run_id"])), rec(4, tags=child_of(b1["run_id"])),
              rec(5, tags=child_of(root["run_id"]))]
    outside = [rec(6), rec(7, tags=child_of(rec(399)["run_id"]))]
    records = [root, a, b, b1, *leaves, *outside]
    for selector in (root["run_id"], "sweep-root"):
        sw = build_sweep(records, parent_run=selector)
        assert set(sw.runs["run_id"]) == {r["run_id"] for r in leaves}
        assert {e.run_id: e.reason.split(":")[0] for e in sw.excluded} == {
            a["run_id"]: "parent run", b["run_id"]: "parent run", b1["run_id"]: "parent run"}
    sub = build_sweep(records, parent_run=b["run_id"])
    assert set(sub.runs["run_id"]) == {leaves[2]["run_id"], leaves[3]["run_id"]}
    with pytest.raises(MlvizError, match="parent run 'nope'"):
        build_sweep(records, parent_run="nope")


@pytest.mark.parametrize("metric, mode", [("val_loss", "min"), ("val_accuracy", "max"), ("train_error", "min"),
                                          ("val_mse", "min"), ("auc", "max"), ("f1", "max"), ("accuracy", "max")])
def test_default_direction(metric, mode):
    assert default_direction(metric) == mode


def test_objective_direction_from_the_metric_name():
    loss_only = [rec(i, metrics={"val_loss": 1.0 / i}) for i in range(1, 6)]
    sw = build_sweep(loss_only)
    assert sw.objective == "val_loss" and sw.mode == "min"
    assert sw.best(1)["run_id"].iloc[0] == f"{5:032x}"
    acc_only = [rec(i, metrics={"val_accuracy": 1.0 / i}) for i in range(1, 6)]
    sw = build_sweep(acc_only)
    assert sw.objective == "val_accuracy" and sw.mode == "max"
    assert sw.best(1)["run_id"].iloc[0] == f"{1:032x}"
    both = [rec(i) for i in range(1, 6)]
    assert build_sweep(both, objective="val_loss").mode == "min"
    assert build_sweep(both, objective="val_accuracy").mode == "max"
    assert build_sweep(both, objective="val_loss", mode="max").mode == "max"
    assert build_sweep(both).objective == "val_accuracy"  # a validation accuracy is preferred to a loss


def test_objective_tag_of_the_sweep_is_used():
    records = [rec(1), rec(2), rec(3, name="parent", params={}, metrics={},
                                    tags={"mlviz.objective": "val_loss", "mlviz.mode": "min"})]
    records[0]["tags"] = child_of(records[2]["run_id"])
    sw = build_sweep(records)
    assert sw.objective == "val_loss" and sw.mode == "min"


def test_an_earlier_analysis_run_does_not_choose_the_objective():
    records = [rec(i) for i in range(1, 6)]
    analysis = rec(50, name="mlviz-visualize", params={}, metrics={"mlviz.n_runs": 5.0},
                   tags={"mlviz.analysis": "visualize", "mlviz.objective": "val_loss", "mlviz.mode": "min"})
    plain = build_sweep(records)
    after = build_sweep(records + [analysis])
    assert plain.objective == "val_accuracy"
    assert (after.objective, after.mode) == (plain.objective, plain.mode)


def test_params_typed_in_the_table(sweep):
    runs = sweep.runs
    assert runs["params.depth"].dtype == np.int64
    assert runs["params.learning_rate"].dtype == np.float64
    assert str(runs["params.augment"].dtype) == "boolean"
    assert sweep.params["learning_rate"].log_scale and not sweep.params["dropout"].log_scale
    assert sweep.params["dropout"].n_missing == len(range(0, 300, 37))
    assert runs["params.dropout"].isna().sum() == len(range(0, 300, 37))
    assert math.isclose(runs["params.learning_rate"].min(), 1e-5, rel_tol=0.5)


def test_importance_figure_with_an_interval_below_zero():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlviz.render.stage1 import plot_importance

    imp = parameter_importance(build_sweep(synthetic_records(12, seed=0)), n_boot=50, forest=False)
    assert min(imp.ci_high) < 0  # 12 runs, up to 10 levels per parameter: ω² far below zero for some
    assert all(lo <= p <= hi for p, lo, hi in zip(imp.importance, imp.ci_low, imp.ci_high, strict=True))
    plt.close(plot_importance(imp))


def test_parallel_coordinates_at_10000_runs():
    """Log axis positions are log10-linear, the top 10 are the 10 best runs, categorical axes name their
    values, and the figure stays readable: every run in a density, the best 1,000 as light lines over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlviz.render.stage1 import plot_parallel_coordinates

    sweep = build_sweep(synthetic_records(10_000, seed=3))
    pc = parallel_coordinates(sweep, top_k=10)
    assert len(pc.coords) == 10_000
    axes = {a.name: a for a in pc.axes}
    lr = axes["learning_rate"]
    assert lr.log_scale
    x = sweep.runs["params.learning_rate"].to_numpy(dtype=float)
    expected = (np.log10(x) - np.log10(x.min())) / (np.log10(x.max()) - np.log10(x.min()))
    np.testing.assert_allclose(pc.coords["learning_rate"].to_numpy(dtype=float), expected, atol=1e-9)
    assert set(axes["optimizer"].tick_labels) == set(sweep.runs["params.optimizer"].astype(str))
    best10 = sweep.runs.sort_values(sweep.objective_column, ascending=sweep.mode == "min")["run_id"].head(10)
    assert set(pc.top_run_ids) == set(best10)
    fig = plot_parallel_coordinates(pc)
    try:
        from mlviz.render.stage1 import LINES_AT_SCALE, line_density

        ax = fig.axes[0]
        lines = [c for c in ax.collections if len(c.get_paths()) == LINES_AT_SCALE]
        assert len(lines) == 1 and lines[0].get_alpha() <= 0.5 and lines[0].get_rasterized()
        assert sorted(lines[0].get_array()) == sorted(  # the best 1,000 runs are the lines
            sweep.runs[sweep.objective_column].sort_values(ascending=sweep.mode == "min").head(LINES_AT_SCALE))
        (density,) = ax.images  # every run counted: each pixel column is crossed by all 10,000 lines
        counts = np.rint(np.expm1(np.asarray(density.get_array(), dtype=float)))
        assert counts.sum(axis=0).min() == counts.sum(axis=0).max() == 10_000
        assert line_density(np.array([[0.0, 1.0]]), cols_per_gap=4, rows=10).sum(axis=0).tolist() == [1] * 4
        assert "10,000 runs as a density" in ax.get_title()
        fig.savefig(io.BytesIO(), format="png")
    finally:
        plt.close(fig)
