"""Re-analysis against real SQLite stores: the analysis run of a selection is one run that follows the
sweep (a new run changes the fingerprint and updates it in place; a figure that no longer applies leaves
it), an interrupted upload is visible as "incomplete" and repaired by the next analysis, an unknown
MLFLOW_RUN_ID is one line, and an interrupted import is finished by the next import, never skipped.

Interruptions are real: a `python -m mlviz.cli` process killed (SIGKILL, no chance to clean up) as soon
as its first write is in the database, or an artifact folder MLflow cannot create. No MLflow mocks.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    assert_one_line_error,
    clone_store,
    describe_result,
    fresh_sqlite_store,
    run_cli,
    sqlite_dump,
)

pytestmark = pytest.mark.usefixtures("clean_env")

EXPERIMENT = "sweep"
N_RUNS = 30
INCOMPLETE = "incomplete"


def visualize(uri: str, *extra: str):
    return run_cli("visualize", "--tracking-uri", uri, "-e", EXPERIMENT, "--metric", "val_accuracy",
                   "--n-boot", "10", "--no-heatmaps", *extra)


def analysis_runs(uri: str) -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string="tags.`mlviz.analysis` = 'visualize'",
                              run_view_type=ViewType.ALL)


def artifacts(uri: str, run_id: str, folder: str | None = None) -> set[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    out: set[str] = set()
    for f in client.list_artifacts(run_id, folder):
        out |= artifacts(uri, run_id, f.path) if f.is_dir else {f.path}
    return out


def summary_of(uri: str, run_id: str, dst: Path) -> dict:
    from mlflow import MlflowClient

    path = MlflowClient(tracking_uri=uri).download_artifacts(run_id, "mlviz/summary.json", str(dst))
    return json.loads(Path(path).read_text())


def add_run(uri: str, params: dict, accuracy: float) -> str:
    """A new finished child of the sweep's `stage1` parent, as a user's next trial would be logged."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    parent = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'stage1'")[0]
    run = client.create_run(exp.experiment_id, run_name="late-trial",
                            tags={"mlflow.parentRunId": parent.info.run_id})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                     metrics=[Metric("val_accuracy", accuracy, 0, 0), Metric("val_loss", 1 - accuracy, 0, 0)])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory):
    """A 30-run synthetic sweep (3-step histories) in a fresh store; each test clones it."""
    from mlviz.demo.synthetic import log_synthetic_sweep

    root = tmp_path_factory.mktemp("reanalysis-template")
    store = fresh_sqlite_store(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the experiment's artifacts go to root/mlruns
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        log_synthetic_sweep(store["uri"], EXPERIMENT, n_runs=N_RUNS, n_steps=3)
    return store


@pytest.fixture
def sweep(sweep_template, tmp_path):
    return clone_store(sweep_template, tmp_path / "store")


# --------------------------------------------------------------------------- the run follows the sweep


def test_a_new_run_updates_the_same_analysis_run(sweep, tmp_path):
    uri = sweep["uri"]
    first = visualize(uri)
    assert first.exit_code == 0, describe_result(first)
    (run,) = analysis_runs(uri)
    fp1 = run.data.tags["mlviz.fingerprint"]
    assert run.info.status == "FINISHED" and fp1 != INCOMPLETE and run.data.metrics["mlviz.n_runs"] == N_RUNS

    again = visualize(uri)
    assert again.exit_code == 0 and "up to date" in again.output, describe_result(again)
    (same,) = analysis_runs(uri)
    assert same.info.run_id == run.info.run_id and same.data.tags["mlviz.fingerprint"] == fp1

    new_id = add_run(uri, {"learning_rate": "0.003", "optimizer": "adam", "depth": "4", "dropout": "0.2",
                           "augment": "True", "noise_param": "0.5"}, accuracy=0.999)
    third = visualize(uri)
    assert third.exit_code == 0 and "up to date" not in third.output, describe_result(third)
    runs = analysis_runs(uri)
    assert [r.info.run_id for r in runs] == [run.info.run_id], "a second analysis run was made"
    updated = runs[0]
    assert updated.info.status == "FINISHED"
    assert updated.data.tags["mlviz.fingerprint"] not in (fp1, INCOMPLETE)
    assert updated.data.metrics["mlviz.n_runs"] == N_RUNS + 1
    assert updated.data.tags["mlviz.best_run_id"] == new_id  # the new run is the best one
    assert updated.data.metrics["mlviz.best.val_accuracy"] == pytest.approx(0.999)
    summary = summary_of(uri, run.info.run_id, tmp_path / "dl")
    assert summary["sweep"]["n_runs"] == N_RUNS + 1 and summary["fingerprint"] == updated.data.tags["mlviz.fingerprint"]


def test_a_figure_that_no_longer_applies_leaves_the_run(sweep, tmp_path):
    """Deleting every run but the adam ones leaves optimizer fixed: its comparison figure must go."""
    from mlflow import MlflowClient

    uri = sweep["uri"]
    first = visualize(uri)
    assert first.exit_code == 0, describe_result(first)
    (run,) = analysis_runs(uri)
    rid = run.info.run_id
    comparison = {"mlviz/stage1/optimizer_comparison_val_accuracy.png",
                  "mlviz/stage1/optimizer_comparison_val_accuracy.json"}
    before = artifacts(uri, rid)
    assert comparison <= before, sorted(before)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    kids = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("mlflow.parentRunId") and "optimizer" in r.data.params]
    others = [r for r in kids if r.data.params["optimizer"] != "adam"]
    assert others and len(others) < len(kids)
    for r in others:
        client.delete_run(r.info.run_id)

    second = visualize(uri)
    assert second.exit_code == 0, describe_result(second)
    assert [r.info.run_id for r in analysis_runs(uri)] == [rid]
    after = artifacts(uri, rid)
    assert not comparison & after, "the optimizer comparison is still in the run"
    summary = summary_of(uri, rid, tmp_path / "dl")
    made = set(summary["figures_made"])
    assert "mlviz/stage1/optimizer_comparison_val_accuracy.png" not in made
    assert {p for p in after if p.startswith("mlviz/") and p.endswith(".png")} == made  # nothing stale
    assert summary["sweep"]["n_runs"] == len(kids) - len(others)
    assert summary["sweep"]["fixed_params"].get("optimizer") == "adam"


# --------------------------------------------------------------------------- interrupted uploads


def test_an_upload_that_fails_reads_incomplete_and_failed_and_is_repaired(sweep):
    """The experiment's artifact folder cannot be created (a file is in its way): the analysis run is made,
    its upload fails; it must say so, and the next analysis, once the way is clear, repairs that run."""
    from mlflow import MlflowClient

    uri = sweep["uri"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    location = Path(exp.artifact_location.removeprefix("file://"))
    assert not location.exists()  # the synthetic runs logged no artifacts
    location.parent.mkdir(parents=True, exist_ok=True)
    location.write_text("a file where the artifact folder should be\n")

    failed = visualize(uri)
    assert failed.exit_code != 0, describe_result(failed)
    assert "Traceback" not in failed.output
    (run,) = analysis_runs(uri)
    assert run.data.tags["mlviz.fingerprint"] == INCOMPLETE
    assert run.info.status == "FAILED"

    location.unlink()
    repaired = visualize(uri)
    assert repaired.exit_code == 0 and "up to date" not in repaired.output, describe_result(repaired)
    (again,) = analysis_runs(uri)
    assert again.info.run_id == run.info.run_id
    assert again.info.status == "FINISHED" and again.data.tags["mlviz.fingerprint"] not in ("", INCOMPLETE)
    assert "mlviz/summary.json" in artifacts(uri, run.info.run_id)


def _mlviz_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return subprocess.Popen([sys.executable, "-m", "mlviz.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_when(proc: subprocess.Popen, db: Path, query: str, timeout: float = 300) -> bool:
    """SIGKILL the process as soon as `query` (a count) is positive in the database; False when the process
    ended first."""
    deadline = time.monotonic() + timeout
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=0.05)
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if con.execute(query).fetchone()[0] > 0:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return True
            except sqlite3.OperationalError:
                pass  # locked by the writer for a moment, or the table is not there yet
            time.sleep(0.01)
    finally:
        con.close()
    proc.kill()
    proc.wait()
    return False


def test_a_killed_analysis_reads_incomplete_and_the_next_one_repairs_it(sweep_template, tmp_path):
    """`mlviz visualize` killed right after it created the analysis run: the run says "incomplete" (a
    killed process cannot mark it FAILED), is not taken as up to date, and the next analysis finishes it."""
    query = "select count(*) from tags where key = 'mlviz.analysis'"
    for attempt in range(3):
        store = clone_store(sweep_template, tmp_path / f"store-{attempt}")
        proc = _mlviz_process(["visualize", "--tracking-uri", store["uri"], "-e", EXPERIMENT, "--metric",
                               "val_accuracy", "--n-boot", "10", "--no-heatmaps", "--quiet"], tmp_path)
        assert _kill_when(proc, store["db"], query), proc.stdout.read().decode()[-3000:]
        (run,) = analysis_runs(store["uri"])
        if run.data.tags.get("mlviz.fingerprint") == INCOMPLETE:
            break  # killed mid-upload, as intended; otherwise the upload beat the kill: try again
    else:
        pytest.fail("three analyses finished before they could be killed")
    assert run.info.status in ("RUNNING", "FAILED")

    repaired = visualize(store["uri"])
    assert repaired.exit_code == 0 and "up to date" not in repaired.output, describe_result(repaired)
    (again,) = analysis_runs(store["uri"])
    assert again.info.run_id == run.info.run_id
    assert again.info.status == "FINISHED" and again.data.tags["mlviz.fingerprint"] != INCOMPLETE
    made = set(summary_of(store["uri"], run.info.run_id, tmp_path / "dl")["figures_made"])
    assert made and made <= artifacts(store["uri"], run.info.run_id)
    assert visualize(store["uri"]).output.startswith("up to date")


def test_mlflow_run_id_not_in_the_store(sweep):
    before = sqlite_dump(sweep["db"])
    r = run_cli("visualize", "--tracking-uri", sweep["uri"], "-e", EXPERIMENT, "--n-boot", "10", "--no-heatmaps",
                env={"MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef"})
    assert_one_line_error(r, "MLFLOW_RUN_ID", "0123456789abcdef0123456789abcdef")
    assert sqlite_dump(sweep["db"]) == before
    assert analysis_runs(sweep["uri"]) == []


# --------------------------------------------------------------------------- interrupted imports


def _two_stage_folder(folder: Path, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    folder.mkdir(parents=True)
    quick = pd.DataFrame({"combination_id": np.arange(n) * 2 + 1, "lr": rng.choice([1e-3, 1e-2, 1e-1], n),
                          "margin_type": rng.choice(["hinge", "softplus"], n),
                          "roc_auc": np.round(rng.uniform(0.5, 1.0, n), 6), "f1_score": np.round(rng.uniform(0, 1, n), 6)})
    quick.to_csv(folder / "quick_search_results.csv", index=False)
    return quick


def _imported(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=10000)


def _check_complete_import(uri: str, experiment: str, quick: pd.DataFrame) -> None:
    runs = _imported(uri, experiment)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    parents = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert [p.info.run_name for p in parents] == ["stage1"]
    assert len(children) == len(quick), (len(children), len(quick))
    names = sorted(r.info.run_name for r in children)
    assert names == sorted(f"combination-{c}" for c in quick["combination_id"]), "a run is missing or doubled"
    by_cid = quick.set_index("combination_id")
    for r in [*children, *parents]:
        assert r.info.status == "FINISHED", (r.info.run_name, r.info.status)
    for r in children:
        row = by_cid.loc[int(r.info.run_name.split("-")[1])]
        assert r.data.metrics["roc_auc"] == pytest.approx(row["roc_auc"], abs=0, rel=1e-12)
        assert r.data.metrics["f1_score"] == pytest.approx(row["f1_score"], abs=0, rel=1e-12)
        assert r.data.params["margin_type"] == row["margin_type"]
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id


def test_a_killed_import_is_finished_by_the_next_import(tmp_path):
    folder = tmp_path / "big-sweep"
    quick = _two_stage_folder(folder, 60)
    for attempt in range(3):
        store = fresh_sqlite_store(tmp_path / f"store-{attempt}")
        args = ["import", "two-stage", str(folder), "--tracking-uri", store["uri"], "-e", "imported"]
        proc = _mlviz_process(args, tmp_path)
        killed = _kill_when(proc, store["db"], "select count(*) from runs where name like 'combination-%'")
        runs = _imported(store["uri"], "imported")
        done = [r for r in runs if r.info.status == "FINISHED" and r.info.run_name.startswith("combination-")]
        if killed and len(done) < len(quick):
            break  # interrupted part-way, as intended
    else:
        pytest.fail("three imports finished before they could be killed")
    r = run_cli(*args)
    assert r.exit_code == 0, describe_result(r)
    _check_complete_import(store["uri"], "imported", quick)
    again = run_cli(*args)  # and a third import changes nothing
    assert again.exit_code == 0 and "imported 0 runs" in again.output, describe_result(again)
    _check_complete_import(store["uri"], "imported", quick)


def test_a_run_left_with_its_import_key_but_unfinished_is_redone(tmp_path):
    """What an import interrupted by an earlier mlviz leaves (the key tag set when the run was created, the
    run still RUNNING, no metrics): the next import must not count it as done."""
    from mlflow import MlflowClient

    from mlviz.store.importers import IMPORT_TAG, two_stage

    folder = tmp_path / "sweep-folder"
    quick = _two_stage_folder(folder, 6)
    store = fresh_sqlite_store(tmp_path / "store")
    first = run_cli("import", "two-stage", str(folder), "--tracking-uri", store["uri"], "-e", "imported")
    assert first.exit_code == 0, describe_result(first)
    client = MlflowClient(tracking_uri=store["uri"])
    victim = next(r for r in _imported(store["uri"], "imported") if r.info.run_name == "combination-3")
    key = victim.data.tags[IMPORT_TAG]
    assert key in {s.key for s in two_stage(folder)}
    client.delete_run(victim.info.run_id)  # the complete run goes; a half-written one takes its place
    exp_id = victim.info.experiment_id
    half = client.create_run(exp_id, run_name="combination-3",
                             tags={IMPORT_TAG: key, "mlflow.parentRunId": victim.data.tags["mlflow.parentRunId"]})
    assert client.get_run(half.info.run_id).info.status == "RUNNING"

    second = run_cli("import", "two-stage", str(folder), "--tracking-uri", store["uri"], "-e", "imported")
    assert second.exit_code == 0, describe_result(second)
    assert "imported 0 runs" not in second.output, second.output
    _check_complete_import(store["uri"], "imported", quick)
