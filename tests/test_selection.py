"""`select_candidates` on hand-made sweeps whose right picks are worked out by hand, and `mlviz select`
on a real SQLite store.

Every table is built as the store layer would hand it over (plain run records → `build_sweep`). Run ids
run backwards (`id99`, `id98`, ...) while start times run forwards, so "run order" below always means
start order, never id order.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlviz.analysis import NotApplicable
from mlviz.analysis.selection import normalised_space, select_candidates
from mlviz.sweep import build_sweep

METRICS = ("acc", "loss", "f1")


def make_sweep(rows: list[dict], **kw):
    """A Sweep from rows of {param: value, metric: value}; run i starts at t = 1000 + i."""
    records = []
    for i, row in enumerate(rows):
        records.append({
            "run_id": f"id{99 - i:02d}",
            "run_name": f"run-{i}",
            "experiment_id": "0",
            "status": "FINISHED",
            "lifecycle_stage": "active",
            "start_time": 1000 + i,
            "end_time": 1000 + i,
            "params": {k: str(v) for k, v in row.items() if k not in METRICS},
            "metrics": {k: float(v) for k, v in row.items() if k in METRICS and v is not None},
            "tags": {},
        })
    kw.setdefault("objective", "acc")
    return build_sweep(records, **kw)


def rid(i: int) -> str:
    return f"id{99 - i:02d}"


def picked(sel) -> list[tuple[str, str]]:
    return list(zip(sel.picks["run_id"], sel.picks["criterion"], strict=True))


# --------------------------------------------------------------------------- phase 1
def test_per_value_top_k_ties_broken_by_run_order_and_small_values_taken_whole():
    rows = [
        dict(opt="a", width=1, acc=0.5),  # 0
        dict(opt="a", width=2, acc=0.9),  # 1  three-way tie at 0.9 …
        dict(opt="a", width=3, acc=0.9),  # 2
        dict(opt="a", width=4, acc=0.9),  # 3  … the latest of the three loses it
        dict(opt="b", width=1, acc=0.3),  # 4
        dict(opt="b", width=2, acc=0.7),  # 5
        dict(opt="c", width=5, acc=0.1),  # 6  opt=c has one run, k = 2
    ]
    sel = select_candidates(make_sweep(rows), per_value_k=2, top_n=0)
    # Parameters in name order (opt, width), values in sorted order; a value's best k new configurations.
    assert picked(sel) == [
        (rid(1), "opt=a"), (rid(2), "opt=a"),
        (rid(5), "opt=b"), (rid(4), "opt=b"),
        (rid(6), "opt=c"),
        (rid(0), "width=1"),  # run 4 (width=1) was picked for opt=b, so run 0 fills the slot
        (rid(3), "width=4"),  # width=2, 3, 5 hold only runs already picked
    ]
    assert set(sel.picks["phase"]) == {"per_value"}
    assert sel.per_phase == {"per_value": 7}
    assert sel.skipped_near_duplicates == 0
    assert sel.picks["score"].tolist() == [0.9, 0.9, 0.7, 0.3, 0.1, 0.5, 0.9]
    assert sel.picks["run_name"].tolist() == ["run-1", "run-2", "run-5", "run-4", "run-6", "run-0", "run-3"]
    assert sel.picks["config"].iloc[0] == "opt=a, width=2"
    assert sel.picks["opt"].tolist() == ["a", "a", "b", "b", "c", "a", "a"]


def test_tie_order_follows_start_time_not_table_order():
    """The same two tied runs listed in the other order: the earlier start still wins."""
    rows = [dict(opt="a", width=1, acc=0.9), dict(opt="a", width=2, acc=0.9), dict(opt="b", width=3, acc=0.1)]
    records_sweep = make_sweep(rows)
    # Reverse the start times: run 1 now starts first.
    records = []
    for i, row in enumerate(rows):
        records.append({"run_id": rid(i), "run_name": f"run-{i}", "status": "FINISHED", "lifecycle_stage": "active",
                        "start_time": 2000 - i, "params": {"opt": row["opt"], "width": str(row["width"])},
                        "metrics": {"acc": row["acc"]}, "tags": {}})
    swapped = build_sweep(records, objective="acc")
    one = select_candidates(records_sweep, per_value_k=1, top_n=0, per_value_params=["opt"])
    two = select_candidates(swapped, per_value_k=1, top_n=0, per_value_params=["opt"])
    assert picked(one) == [(rid(0), "opt=a"), (rid(2), "opt=b")]
    assert picked(two) == [(rid(1), "opt=a"), (rid(2), "opt=b")]


def test_value_with_fewer_runs_than_k_takes_all_its_runs():
    rows = [dict(opt="a", width=w, acc=0.5 + w / 100) for w in range(1, 5)] + [dict(opt="b", width=9, acc=0.2)]
    sel = select_candidates(make_sweep(rows), per_value_k=10, top_n=3, per_value_params=["opt"])
    assert picked(sel) == [(rid(3), "opt=a"), (rid(2), "opt=a"), (rid(1), "opt=a"), (rid(0), "opt=a"),
                           (rid(4), "opt=b")]
    assert sel.per_phase == {"per_value": 5}  # nothing left for phase 2, no error


def test_bool_and_binned_numeric_criteria_labels():
    # x takes 8 values > max_bins=2 → two equal-width bins [1, 4.5) and [4.5, 8]; flag is a boolean.
    rows = [dict(flag=bool(i % 2), x=float(i + 1), acc=0.1 * (i + 1)) for i in range(8)]
    sel = select_candidates(make_sweep(rows), per_value_k=1, top_n=0, max_bins=2)
    assert picked(sel) == [
        (rid(6), "flag=False"),  # booleans: False before True
        (rid(7), "flag=True"),
        (rid(3), "x=1–4.5"),  # best of x in 1..4
        # x=4.5–8: runs 7, 6 are picked, 5 and 4 are new: the best of them (run 5)
        (rid(5), "x=4.5–8"),
    ]


# --------------------------------------------------------------------------- de-duplication
def test_duplicate_configurations_are_picked_once_and_first_phase_wins():
    rows = [
        dict(opt="a", lr=0.1, seed=0, acc=0.95, f1=0.10),  # 0
        dict(opt="a", lr=0.2, seed=0, acc=0.90, f1=0.99),  # 1
        dict(opt="a", lr=0.2, seed=1, acc=0.89, f1=0.98),  # 2  same configuration as 1 (seeds are not hyperparameters)
        dict(opt="b", lr=0.3, seed=0, acc=0.50, f1=0.20),  # 3
        dict(opt="a", lr=0.4, seed=0, acc=0.80, f1=0.30),  # 4
        dict(opt="b", lr=0.5, seed=0, acc=0.40, f1=0.97),  # 5
    ]
    sweep = make_sweep(rows)
    assert [p.name for p in sweep.varied_params] == ["lr", "opt"]
    sel = select_candidates(sweep, per_value_k=2, top_n=1, second_metric="f1", second_k=1,
                            per_value_params=["opt"])
    assert picked(sel) == [
        (rid(0), "opt=a"), (rid(1), "opt=a"),  # run 2 would repeat run 1's configuration
        (rid(3), "opt=b"), (rid(5), "opt=b"),
        (rid(4), "overall_acc"),  # run 2's configuration is taken already
        # f1: runs 1, 2, 5 are the best but their configurations are picked; run 4 too; then run 3, picked;
        # then run 0 — picked. Nothing new: phase 3 picks no one.
    ]
    assert sel.picks["config"].is_unique
    assert sel.per_phase == {"per_value": 4, "overall": 1}
    # The configuration of runs 1 and 2 keeps the criterion of the phase that reached it first.
    assert sel.picks.set_index("run_id").loc[rid(1), "criterion"] == "opt=a"


def test_overall_top_n_yields_n_distinct_configurations_when_replicates_share_one():
    rows = [
        dict(opt="a", lr=0.1, seed=0, acc=0.95),  # 0
        dict(opt="a", lr=0.2, seed=0, acc=0.90),  # 1
        dict(opt="a", lr=0.2, seed=1, acc=0.89),  # 2  replicate of run 1
        dict(opt="b", lr=0.3, seed=0, acc=0.50),  # 3
        dict(opt="a", lr=0.4, seed=0, acc=0.80),  # 4
    ]
    sel = select_candidates(make_sweep(rows), per_value_k=1, top_n=2, per_value_params=["opt"])
    assert picked(sel) == [(rid(0), "opt=a"), (rid(3), "opt=b"), (rid(1), "overall_acc"), (rid(4), "overall_acc")]


# --------------------------------------------------------------------------- phases 2 and 3
def test_overall_top_n_excludes_earlier_picks():
    rows = [
        dict(opt="a", width=1, acc=0.99),  # 0
        dict(opt="a", width=2, acc=0.98),  # 1
        dict(opt="a", width=3, acc=0.97),  # 2
        dict(opt="b", width=4, acc=0.10),  # 3
        dict(opt="b", width=5, acc=0.96),  # 4
        dict(opt="b", width=6, acc=0.20),  # 5
    ]
    sel = select_candidates(make_sweep(rows), per_value_k=1, top_n=3, per_value_params=["opt"])
    assert picked(sel) == [(rid(0), "opt=a"), (rid(4), "opt=b"),
                           (rid(1), "overall_acc"), (rid(2), "overall_acc"), (rid(5), "overall_acc")]
    assert sel.picks["phase"].tolist() == ["per_value"] * 2 + ["overall"] * 3


def test_second_metric_phase_by_its_own_direction_skips_earlier_picks_and_missing_values():
    rows = [
        dict(opt="a", width=1, acc=0.90, loss=0.9),  # 0
        dict(opt="a", width=2, acc=0.80, loss=0.1),  # 1
        dict(opt="a", width=3, acc=0.70, loss=0.3),  # 2
        dict(opt="b", width=4, acc=0.60, loss=0.2),  # 3
        dict(opt="b", width=5, acc=0.50, loss=None),  # 4  never logged loss
        dict(opt="b", width=6, acc=0.40, loss=0.05),  # 5
        dict(opt="b", width=7, acc=0.30, loss=0.4),  # 6
    ]
    sel = select_candidates(make_sweep(rows), per_value_k=1, top_n=1, second_metric="loss", second_k=2,
                            per_value_params=["opt"])
    # loss is minimised (a loss-like name): 5 (0.05), 1 (0.1; picked), 3 (picked), 2 (0.3) …
    assert picked(sel) == [(rid(0), "opt=a"), (rid(3), "opt=b"), (rid(1), "overall_acc"),
                           (rid(5), "top_loss"), (rid(2), "top_loss")]
    assert sel.picks["phase"].tolist()[-2:] == ["second_metric", "second_metric"]
    assert sel.picks["score"].tolist()[-2:] == [0.40, 0.70]  # scores are the objective's
    # Forced the other way, the worst losses come first (run 4 without loss is never picked).
    rev = select_candidates(make_sweep(rows), per_value_k=1, top_n=1, second_metric="loss", second_k=2,
                            second_mode="max", per_value_params=["opt"])
    assert picked(rev)[-2:] == [(rid(6), "top_loss"), (rid(2), "top_loss")]


def test_second_metric_that_no_run_logged_is_not_applicable():
    sweep = make_sweep([dict(opt="a", acc=0.1), dict(opt="b", acc=0.2)])
    with pytest.raises(NotApplicable, match="second metric 'nope'"):
        select_candidates(sweep, second_metric="nope")


def test_min_mode_objective():
    rows = [
        dict(opt="a", width=1, loss=0.30),  # 0
        dict(opt="a", width=2, loss=0.10),  # 1
        dict(opt="b", width=3, loss=0.50),  # 2
        dict(opt="b", width=4, loss=0.20),  # 3
        dict(opt="a", width=5, loss=0.15),  # 4
        dict(opt="b", width=6, loss=0.10),  # 5  ties run 1, starts later
    ]
    sweep = make_sweep(rows, objective="loss")
    assert sweep.mode == "min"
    sel = select_candidates(sweep, per_value_k=1, top_n=2, per_value_params=["opt"])
    assert sel.mode == "min"
    assert picked(sel) == [(rid(1), "opt=a"), (rid(5), "opt=b"), (rid(4), "overall_loss"), (rid(3), "overall_loss")]
    # An explicit mode wins over the name: maximising the loss picks the worst.
    worst = select_candidates(make_sweep(rows, objective="loss", mode="max"), per_value_k=1, top_n=1,
                              per_value_params=["opt"])
    assert picked(worst) == [(rid(0), "opt=a"), (rid(2), "opt=b"), (rid(3), "overall_loss")]


# --------------------------------------------------------------------------- diversity, per_value_params
def test_diversity_skips_a_near_duplicate_configuration_in_phase_1():
    rows = [
        dict(opt="a", lr=0.100, acc=0.90),  # 0
        dict(opt="a", lr=0.101, acc=0.89),  # 1  0.0018 away from run 0 in the normalised space
        dict(opt="a", lr=0.500, acc=0.70),  # 2
        dict(opt="b", lr=0.300, acc=0.60),  # 3
    ]
    sweep = make_sweep(rows)
    space = normalised_space(sweep)
    assert np.linalg.norm(space[0] - space[1]) == pytest.approx(0.001 / 0.4 / math.sqrt(2))
    plain = select_candidates(sweep, per_value_k=2, top_n=0, per_value_params=["opt"])
    assert picked(plain) == [(rid(0), "opt=a"), (rid(1), "opt=a"), (rid(3), "opt=b")]
    diverse = select_candidates(sweep, per_value_k=2, top_n=0, per_value_params=["opt"], diversity=0.05)
    assert picked(diverse) == [(rid(0), "opt=a"), (rid(2), "opt=a"), (rid(3), "opt=b")]
    assert diverse.skipped_near_duplicates == 1
    assert diverse.options["diversity"] == 0.05


def test_diversity_makes_phase_2_pick_the_farthest_of_the_best():
    rows = [
        dict(opt="a", lr=0.100, acc=0.90),  # 0
        dict(opt="a", lr=0.101, acc=0.89),  # 1  near-duplicate of 0
        dict(opt="a", lr=0.300, acc=0.88),  # 2  0.35 from run 0
        dict(opt="b", lr=0.500, acc=0.87),  # 3  0.87 from run 0
    ]
    sweep = make_sweep(rows)
    assert picked(select_candidates(sweep, top_n=2, per_value_params=[])) == [
        (rid(0), "overall_acc"), (rid(1), "overall_acc")]
    sel = select_candidates(sweep, top_n=2, per_value_params=[], diversity=0.01)
    assert picked(sel) == [(rid(0), "overall_acc"), (rid(3), "overall_acc")]
    assert sel.per_phase == {"overall": 2}


def test_per_value_params_limits_phase_1():
    rows = [
        dict(flag=True, opt="a", width=1, acc=0.9),  # 0
        dict(flag=False, opt="b", width=2, acc=0.8),  # 1
        dict(flag=True, opt="c", width=3, acc=0.7),  # 2
        dict(flag=False, opt="c", width=4, acc=0.6),  # 3
    ]
    sweep = make_sweep(rows)
    every = select_candidates(sweep, per_value_k=1, top_n=0)
    # opt=a and opt=b hold only runs already picked; width=4 is run 3's alone.
    assert picked(every) == [(rid(1), "flag=False"), (rid(0), "flag=True"), (rid(2), "opt=c"), (rid(3), "width=4")]
    only_flag = select_candidates(sweep, per_value_k=1, top_n=1, per_value_params=["flag"])
    assert picked(only_flag) == [(rid(1), "flag=False"), (rid(0), "flag=True"), (rid(2), "overall_acc")]
    assert only_flag.options["per_value_params"] == ["flag"]
    none = select_candidates(sweep, per_value_k=1, top_n=2, per_value_params=[])
    assert picked(none) == [(rid(0), "overall_acc"), (rid(1), "overall_acc")]


def test_selection_is_deterministic():
    rows = [dict(opt="abc"[i % 3], width=i % 4, flag=i % 2 == 0, acc=round(0.5 + 0.01 * (i * 7 % 13), 3))
            for i in range(30)]
    sweep = make_sweep(rows)
    a = select_candidates(sweep, per_value_k=2, top_n=3, diversity=0.1)
    b = select_candidates(make_sweep(rows), per_value_k=2, top_n=3, diversity=0.1)
    pd.testing.assert_frame_equal(a.picks, b.picks)
    assert a.picks["config"].is_unique


# --------------------------------------------------------------------------- mlviz select on a real store
@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    from mlviz.demo.synthetic import log_synthetic_sweep

    root = tmp_path_factory.mktemp("select-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    log_synthetic_sweep(uri, "synthetic-sweep", n_runs=40, n_steps=0, seed=3)
    return uri, root


def test_cli_select_out_and_tag(synthetic_store, tmp_path):
    from mlflow import MlflowClient

    from mlviz.cli import main
    from mlviz.sections.sweep import load_sweep

    uri, _ = synthetic_store
    out = tmp_path / "picks.csv"
    args = ["select", "--tracking-uri", uri, "--experiment", "synthetic-sweep", "--per-value-k", "1",
            "--top-n", "4", "--second-metric", "val_loss", "--second-k", "2", "--out", str(out), "--tag"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output

    sweep = load_sweep(uri, experiment="synthetic-sweep").stage(1)
    assert len(sweep.runs) == 40
    expected = select_candidates(sweep, per_value_k=1, top_n=4, second_metric="val_loss", second_k=2).picks
    buf = io.StringIO()
    expected.to_csv(buf, index=False)
    assert out.read_text() == buf.getvalue()
    assert set(expected["phase"]) == {"per_value", "overall", "second_metric"}
    assert f"{len(expected)} candidates from 40 runs" in res.output

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("synthetic-sweep")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    tagged = {r.info.run_id: r.data.tags["mlviz.selection_criterion"] for r in runs
              if "mlviz.selection_criterion" in r.data.tags}
    assert tagged == dict(zip(expected["run_id"], expected["criterion"], strict=True))


def test_cli_select_bad_metric_is_one_line_error(synthetic_store):
    from mlviz.cli import main

    uri, _ = synthetic_store
    res = CliRunner().invoke(main, ["select", "--tracking-uri", uri, "--experiment", "synthetic-sweep",
                                    "--second-metric", "nope"])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines[-1].startswith("mlviz: error: ") and "nope" in lines[-1]
