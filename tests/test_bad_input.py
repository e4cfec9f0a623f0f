"""Input a user can get wrong: one line `mlviz: error: ...`, exit code 2, no traceback, nothing created.
And degenerate sweeps (one run, nothing varied) that must still produce a report, with the skips explained.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import (
    STORES,
    assert_one_line_error,
    copy_store,
    describe_result,
    read_summary,
    run_cli,
    tree_digest,
)

pytestmark = pytest.mark.usefixtures("clean_env")


def visualize(uri, *extra):
    return run_cli("visualize", "--tracking-uri", uri, "--n-boot", "50", *extra)


# --------------------------------------------------------------------------- errors on the synthetic store


def test_unknown_experiment(synthetic_store):
    r = visualize(synthetic_store["uri"], "-e", "no-such-sweep")
    line = assert_one_line_error(r, "no experiment named or numbered 'no-such-sweep'")
    assert "'synthetic-sweep'" in line  # says what is there


def test_filter_that_matches_nothing(synthetic_store):
    r = visualize(synthetic_store["uri"], "-e", "synthetic-sweep", "--filter", "params.optimizer = 'nope'")
    assert_one_line_error(r, "has no runs matching filter", "params.optimizer = 'nope'")


def test_filter_that_matches_only_the_parent_run(synthetic_store):
    # without its children the `stage1` parent is an ordinary run, and it logged no metric
    r = visualize(synthetic_store["uri"], "-e", "synthetic-sweep", "--filter", "attributes.run_name = 'stage1'")
    assert_one_line_error(r, "none of the 1 selected runs logged a metric")


def test_statuses_that_leave_nothing(synthetic_store):
    r = visualize(synthetic_store["uri"], "-e", "synthetic-sweep", "--status", "FAILED")
    line = assert_one_line_error(r, "no run left to analyse", "1 parent run")
    assert "120 status" in line  # the 120 FINISHED runs, left out by --status (reason "status: status FINISHED")


def test_objective_metric_logged_by_no_run(synthetic_store):
    r = visualize(synthetic_store["uri"], "-e", "synthetic-sweep", "--metric", "val_auc")
    assert_one_line_error(r, "metric 'val_auc' was logged by no selected run", "val_accuracy")


@pytest.mark.parametrize("bad", ["params.x ==== 3", "params.optimizer = adam", "metrics.val_loss <"])
def test_malformed_filter(synthetic_store, bad):
    r = visualize(synthetic_store["uri"], "-e", "synthetic-sweep", "--filter", bad)
    assert_one_line_error(r)


def test_parent_run_that_is_not_there(synthetic_store):
    r = visualize(synthetic_store["uri"], "-e", "synthetic-sweep", "--parent-run", "no-such-parent")
    assert_one_line_error(r, "parent run 'no-such-parent'")


def test_unreachable_server_answers_quickly():
    start = time.monotonic()
    r = visualize("http://127.0.0.1:9", "-e", "x")
    assert time.monotonic() - start < 5
    assert_one_line_error(r, "cannot reach the tracking server at http://127.0.0.1:9")


# --------------------------------------------------------------------------- stores that are not there


def test_missing_sqlite_file_is_not_created(tmp_path):
    db = tmp_path / "absent" / "mlflow.db"
    db.parent.mkdir()
    r = visualize(f"sqlite:///{db}", "-e", "x")
    assert_one_line_error(r, "no MLflow store at", str(db), "does not exist")
    assert list(db.parent.iterdir()) == []


def test_missing_sqlite_file_at_the_default_uri_is_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli("visualize", "-e", "x")  # default: sqlite:///mlflow.db in the cwd
    assert_one_line_error(r, "no MLflow store at mlflow.db")
    assert list(tmp_path.iterdir()) == []


def test_default_uri_reads_mlflow_db_in_the_cwd(synthetic_store, tmp_path, monkeypatch):
    import shutil

    shutil.copy2(synthetic_store["db"], tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    r = run_cli("visualize", "-e", "synthetic-sweep", "--metric", "val_auc")  # fails after reading the runs
    assert_one_line_error(r, "metric 'val_auc' was logged by no selected run")


def test_plain_path_to_missing_db(tmp_path):
    r = visualize(str(tmp_path / "nope.db"), "-e", "x")
    assert_one_line_error(r, "no MLflow store", "nope.db")
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("form", ["path", "file-uri"])
def test_folder_that_does_not_exist(tmp_path, form):
    folder = tmp_path / "no" / "mlruns"
    uri = str(folder) if form == "path" else folder.as_uri()
    r = visualize(uri, "-e", "x")
    assert_one_line_error(r, "no MLflow store at", "the folder does not exist")
    assert not (tmp_path / "no").exists()


def test_file_that_is_not_sqlite(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_text("not a database\n")
    r = visualize(f"sqlite:///{db}", "-e", "x")
    assert_one_line_error(r, "is not an MLflow SQLite store")
    assert db.read_text() == "not a database\n"


def test_sqlite_file_that_is_not_an_mlflow_store(tmp_path):
    store = copy_store("bank-sqlite", tmp_path)
    before = tree_digest(store)
    r = visualize(f"sqlite:///{store / 'optuna.db'}", "-e", "1")
    assert_one_line_error(r, "is not an MLflow SQLite store")
    assert tree_digest(store) == before


def test_deleted_experiment(tmp_path):
    store = copy_store("bank-sqlite", tmp_path)
    before = tree_digest(store)
    r = visualize(f"sqlite:///{store / 'mlflow.db'}", "-e", "2", "--out", tmp_path / "out")
    assert_one_line_error(r, "is deleted")
    assert tree_digest(store) == before
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- refusing to write


def test_logging_into_the_old_schema_bank_store_is_refused(tmp_path):
    store = copy_store("bank-sqlite", tmp_path)
    before = tree_digest(store)
    assert before == tree_digest(STORES / "bank-sqlite")
    r = visualize(f"sqlite:///{store / 'mlflow.db'}", "-e", "1")
    line = assert_one_line_error(r, "will not log into", "older than this MLflow", "--out")
    assert "mlflow db upgrade" in line
    assert tree_digest(store) == before  # byte-identical, and no journal or other new file beside it


# --------------------------------------------------------------------------- degenerate sweeps still report


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """One SQLite store with a one-run sweep, a sweep where nothing varies, and two sweeps for the
    'which experiment?' question."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from mlviz.demo.synthetic import log_synthetic_sweep

    root = tmp_path_factory.mktemp("small-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        log_synthetic_sweep(uri, "one-run", n_runs=1, n_steps=0)
        log_synthetic_sweep(uri, "twelve-runs", n_runs=12, n_steps=0, seed=0)
        client = MlflowClient(tracking_uri=uri)
        exp = client.create_experiment("constant")
        for i in range(6):
            run = client.create_run(exp, run_name=f"c{i}", start_time=1_700_000_000_000 + i)
            client.log_batch(run.info.run_id,
                             params=[Param("lr", "0.01"), Param("optimizer", "adam"), Param("epochs", "10")],
                             metrics=[Metric("val_loss", 1.0 - 0.1 * i, 0, 0), Metric("val_accuracy", 0.5 + 0.03 * i ** 2, 0, 0)])
            client.set_terminated(run.info.run_id, "FINISHED")
    return {"uri": uri, "root": root}


def _skips(summary):
    return {s["figure"]: s["reason"] for s in summary["figures_skipped"] if s["section"] == "stage1"}


def test_sweep_of_one_run(small_store, tmp_path):
    out = tmp_path / "out"
    r = visualize(small_store["uri"], "-e", "one-run", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    s = read_summary(out)
    assert s["sweep"]["n_runs"] == 1 and s["sweep"]["excluded"]["by_reason"] == {"parent run": 1}
    skips = _skips(s)
    assert set(skips) == {"parameter_importance", "heatmaps", "parallel_coordinates", "parameter_effects",
                          "metric_correlations", "param_comparison"}
    assert "found 0" in skips["parameter_importance"] and "fixed:" in skips["parameter_importance"]
    assert "2 varied parameter" in skips["heatmaps"]
    assert "two varying metrics" in skips["metric_correlations"]
    assert sorted(s["figures_made"]) == sorted(f"mlviz/stage1/{f}.png" for f in (
        "top_k_comparison", "metric_distributions", "optimization_history", "stage1_summary_dashboard"))
    for f in s["figures_made"]:
        assert (out / f).is_file() and (out / f).with_suffix(".json").is_file()
    html = (out / "mlviz" / "index.html").read_text()
    assert "Skipped" in html and "stage1/parameter_importance" in html
    assert "skipped stage1/" in r.output


def test_sweep_where_nothing_varies(small_store, tmp_path):
    out = tmp_path / "out"
    r = visualize(small_store["uri"], "-e", "constant", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    s = read_summary(out)
    assert s["sweep"]["n_runs"] == 6 and s["sweep"]["fixed_params"] == {"epochs": 10, "lr": 0.01, "optimizer": "adam"}
    skips = _skips(s)
    assert set(skips) == {"parameter_importance", "heatmaps", "parallel_coordinates", "parameter_effects",
                          "param_comparison"}
    assert "found 0 (fixed: epochs, lr, optimizer)" in skips["parameter_importance"]
    made = {Path(f).stem for f in s["figures_made"]}
    assert made == {"top_k_comparison", "metric_distributions", "metric_correlations", "optimization_history",
                    "stage1_summary_dashboard"}


def test_several_experiments_and_none_chosen(small_store):
    r = visualize(small_store["uri"])
    assert_one_line_error(r, "pass --experiment", "'one-run'", "'constant'")


def test_small_sweep_with_a_negative_importance_interval(small_store, tmp_path):
    out = tmp_path / "out"
    r = visualize(small_store["uri"], "-e", "twelve-runs", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    s = read_summary(out)
    assert s["sweep"]["n_runs"] == 12 and "parameter_importance" in _made(s)


def _made(summary):
    return {Path(f).stem for f in summary["figures_made"]}
