"""Importers round-trip into a real SQLite MLflow store: two-stage CSV layout (seed 002), Optuna studies,
per-epoch run folders (seed 000); bad input is one line, exit code 2 and nothing half-imported.

Everything is read back with `MlflowClient`, never through mlviz, so the importers are checked against
MLflow itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import STORES
from mlflow import MlflowClient

from mlviz.cli import main

BANK_OPTUNA = STORES / "bank-sqlite" / "optuna.db"
PARAMS = ["masking_ratio", "masking_strategy", "num_patches", "margin_type", "force_mask_anomaly",
          "patch_level_loss", "patchify_mode"]
QUICK_METRICS = ["roc_auc", "f1_score", "precision", "recall", "disturbing_roc_auc"]
HISTORY_KEYS = ["train_loss", "val_loss", "val_roc_auc"]


# --------------------------------------------------------------------------- helpers
def cli(*args: str) -> subprocess.CompletedProcess:
    """`mlviz ARGS` as a user runs it: a fresh process, real exit code, stdout and stderr apart."""
    return subprocess.run([sys.executable, "-m", "mlviz.cli", *args], capture_output=True, text=True, timeout=300)


def invoke(*args: str):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def all_runs(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=50000)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mlviz: error: "), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def _in_tmp_dir(tmp_path_factory):
    """A store created here puts its artifacts under ./mlruns: keep them out of the checkout."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(scope="module")
def empty_store_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite store; copying it is much faster than creating a new one."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def new_store(empty_store_template, tmp_path) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copy2(empty_store_template, db)
    return f"sqlite:///{db}"


# --------------------------------------------------------------------------- (a) seed-002 two-stage layout
def make_two_stage_folder(folder: Path, n_quick: int = 24, seed: int = 0) -> dict:
    """The seed-002 layout with known numbers: 7 parameters (floats, ints, strings, booleans), five
    stage-1 metrics, a stage-2 table (rank, criterion, quick_* copies, improvement) and histories."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    quick = pd.DataFrame({
        "combination_id": np.arange(n_quick) * 3 + 7,  # ids that are not row numbers
        "masking_ratio": rng.choice([0.4, 0.7], n_quick),
        "masking_strategy": rng.choice(["patch", "feature_wise"], n_quick),
        "num_patches": rng.choice([10, 25, 50], n_quick),
        "margin_type": rng.choice(["hinge", "softplus", "dynamic"], n_quick),
        "force_mask_anomaly": rng.random(n_quick) < 0.5,
        "patch_level_loss": rng.random(n_quick) < 0.5,
        "patchify_mode": rng.choice(["cnn_first", "patch_cnn", "linear"], n_quick),
    })
    for m in QUICK_METRICS:
        quick[m] = rng.uniform(0.5, 1.0, n_quick)
    quick.to_csv(folder / "quick_search_results.csv", index=False, float_format="%.17g")

    chosen = quick.sort_values("roc_auc", ascending=False).head(6).reset_index(drop=True)
    criteria = ["overall_roc_auc", "overall_roc_auc", "disturbing_roc_auc", "margin_type=hinge",
                "patchify_mode=linear", "force_mask_anomaly=True"]
    full = chosen[["combination_id", *PARAMS]].copy()
    full.insert(0, "stage2_rank", np.arange(1, len(full) + 1))
    full["selection_criterion"] = criteria[: len(full)]
    full["roc_auc"] = rng.uniform(0.6, 1.0, len(full))
    full["f1_score"] = rng.uniform(0.3, 0.9, len(full))
    full["disturbing_roc_auc"] = rng.uniform(0.4, 1.0, len(full))
    full["quick_roc_auc"] = chosen["roc_auc"]
    full["quick_f1"] = chosen["f1_score"]
    full["roc_auc_improvement"] = full["roc_auc"] - full["quick_roc_auc"]
    full.to_csv(folder / "full_search_results.csv", index=False, float_format="%.17g")

    histories = {}
    for cid in full["combination_id"]:
        n_epochs = int(rng.integers(3, 7))
        histories[str(cid)] = {k: rng.uniform(0, 1, n_epochs).tolist() for k in HISTORY_KEYS}
        histories[str(cid)]["note"] = "not a series"  # ignored: not a list of numbers
    (folder / "training_histories.json").write_text(json.dumps(histories))
    return {"quick": quick, "full": full, "histories": histories}


def expected_param(v) -> str:
    return str(v.item() if hasattr(v, "item") else v)


@pytest.fixture(scope="module")
def two_stage_store(tmp_path_factory, empty_store_template):
    root = tmp_path_factory.mktemp("two-stage")
    source = make_two_stage_folder(root / "experiment_20260122")
    shutil.copy2(empty_store_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    res = invoke("import", "two-stage", str(root / "experiment_20260122"), "--tracking-uri", uri,
                 "--experiment", "seed002")
    assert "imported 32 runs" in res.output  # 2 parents + 24 + 6
    return uri, root, source


def test_two_stage_round_trip(two_stage_store):
    uri, root, source = two_stage_store
    client = MlflowClient(uri)
    runs = all_runs(client, "seed002")
    assert len(runs) == 2 + len(source["quick"]) + len(source["full"])
    by_name = {r.info.run_name: r for r in runs}
    parents = {name: by_name[name] for name in ("stage1", "stage2")}
    assert parents["stage1"].data.tags["mlviz.stage"] == "1"
    assert parents["stage2"].data.tags["mlviz.stage"] == "2"
    assert parents["stage1"].data.tags["mlviz.objective"] == "roc_auc"  # the metric repeated as quick_roc_auc

    stage1 = {}
    for _, row in source["quick"].iterrows():
        cid = str(row["combination_id"])
        run = by_name[f"combination-{cid}"]
        stage1[cid] = run
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlviz.stage"] == "1"
        assert run.data.tags["mlviz.combination_id"] == cid
        assert run.data.tags["mlflow.parentRunId"] == parents["stage1"].info.run_id
        assert run.data.params == {p: expected_param(row[p]) for p in PARAMS}
        assert set(run.data.metrics) == set(QUICK_METRICS)
        for m in QUICK_METRICS:
            assert run.data.metrics[m] == pytest.approx(row[m], abs=1e-12, rel=0)
    # Types survive as MLflow strings a reader can type again.
    some = next(iter(stage1.values())).data.params
    assert some["force_mask_anomaly"] in ("True", "False") and some["num_patches"] in ("10", "25", "50")
    assert some["masking_ratio"] in ("0.4", "0.7")

    for _, row in source["full"].iterrows():
        cid = str(row["combination_id"])
        run = by_name[f"full-{cid}"]
        tags = run.data.tags
        assert tags["mlviz.stage"] == "2"
        assert tags["mlflow.parentRunId"] == parents["stage2"].info.run_id
        assert tags["mlviz.selection_criterion"] == row["selection_criterion"]
        assert tags["mlviz.stage2_rank"] == str(row["stage2_rank"])
        assert tags["mlviz.stage1_run_id"] == stage1[cid].info.run_id
        assert run.data.params == {p: expected_param(row[p]) for p in PARAMS}
        expected_metrics = {"roc_auc": row["roc_auc"], "f1_score": row["f1_score"],
                            "disturbing_roc_auc": row["disturbing_roc_auc"],
                            "stage1_roc_auc": row["quick_roc_auc"], "stage1_f1": row["quick_f1"],
                            "roc_auc_improvement": row["roc_auc_improvement"]}
        final = {k: v for k, v in run.data.metrics.items() if k not in HISTORY_KEYS}
        assert set(final) == set(expected_metrics)
        for k, v in expected_metrics.items():
            assert final[k] == pytest.approx(v, abs=1e-12, rel=0), k
        # The stage-1 score it repeats is the linked stage-1 run's own.
        assert final["stage1_roc_auc"] == pytest.approx(stage1[cid].data.metrics["roc_auc"], abs=1e-12, rel=0)
        hist = source["histories"][cid]
        for key in HISTORY_KEYS:
            got = history(client, run.info.run_id, key)
            assert [s for s, _ in got] == list(range(1, len(hist[key]) + 1))
            np.testing.assert_allclose([v for _, v in got], hist[key], rtol=0, atol=1e-12)
            assert run.data.metrics[key] == pytest.approx(hist[key][-1], abs=1e-12, rel=0)
        assert "note" not in run.data.metrics


def test_two_stage_is_analysable_as_a_two_stage_sweep(two_stage_store):
    from mlviz.analysis.stage2 import candidates
    from mlviz.sections.sweep import load_sweep

    uri, _, source = two_stage_store
    sweep = load_sweep(uri, experiment="seed002")
    assert sweep.objective == "roc_auc" and sweep.mode == "max"
    assert (sweep.runs["stage"] == 1).sum() == len(source["quick"])
    assert (sweep.runs["stage"] == 2).sum() == len(source["full"])
    cand = candidates(sweep)
    assert cand.stage1_source.startswith("stage-1 run named by")
    merged = cand.table.set_index("criterion")
    for _, row in source["full"].iterrows():
        if row["selection_criterion"] != "overall_roc_auc":
            assert merged.loc[row["selection_criterion"], "stage1"] == pytest.approx(row["quick_roc_auc"], abs=1e-12)


def test_two_stage_second_import_creates_nothing(two_stage_store):
    uri, root, _ = two_stage_store
    client = MlflowClient(uri)
    before = {r.info.run_id for r in all_runs(client, "seed002")}
    res = invoke("import", "two-stage", str(root / "experiment_20260122"), "--tracking-uri", uri,
                 "--experiment", "seed002")
    assert "imported 0 runs" in res.output and "32 already there" in res.output
    assert {r.info.run_id for r in all_runs(client, "seed002")} == before


def test_two_stage_experiment_name_defaults_to_the_folder(tmp_path, new_store):
    make_two_stage_folder(tmp_path / "results_x", n_quick=5)
    uri = new_store
    invoke("import", "two-stage", str(tmp_path / "results_x"), "--tracking-uri", uri)
    assert len(all_runs(MlflowClient(uri), "results_x")) == 2 + 5 + 5


# --------------------------------------------------------------------------- (b) Optuna
def make_study(storage: str, name: str = "toy"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial):
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        n = trial.suggest_int("n", 1, 5)
        c = trial.suggest_categorical("c", ["red", "green"])
        flag = trial.suggest_categorical("flag", [True, False])
        value = 0.0
        for step in range(3):
            value = x * (step + 1) + n / 10 + (0.5 if flag else 0.0) + (0.1 if c == "red" else 0.0)
            trial.report(value, step)
        trial.set_user_attr("train_seconds", 1.5 * (trial.number + 1))
        if trial.number == 2:
            raise optuna.TrialPruned()
        if trial.number == 4:
            raise ValueError("diverged")
        return value

    study.optimize(objective, n_trials=7, catch=(ValueError,))
    return study


@pytest.fixture(scope="module")
def optuna_store(tmp_path_factory, empty_store_template):
    root = tmp_path_factory.mktemp("optuna")
    db = root / "study.db"
    study = make_study(f"sqlite:///{db}")
    digest = sha256(db)
    shutil.copy2(empty_store_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    res = invoke("import", "optuna", f"sqlite:///{db}", "--study", "toy", "--tracking-uri", uri,
                 "--metric", "score")
    assert "imported 8 runs" in res.output
    return uri, db, digest, study


def test_optuna_round_trip(optuna_store):
    uri, db, digest, study = optuna_store
    client = MlflowClient(uri)
    runs = all_runs(client, "toy")  # experiment named after the study
    trials = study.get_trials(deepcopy=False)
    assert len(runs) == len(trials) + 1
    by_name = {r.info.run_name: r for r in runs}
    parent = by_name["toy"]
    assert parent.data.tags["mlviz.objective"] == "score" and parent.data.tags["mlviz.mode"] == "max"
    states = {}
    for t in trials:
        run = by_name[f"trial-{t.number:04d}"]
        states[t.state.name] = states.get(t.state.name, 0) + 1
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial"] == str(t.number)
        assert run.data.tags["optuna.state"] == t.state.name
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[t.state.name]
        assert run.data.params == {k: str(v) for k, v in t.params.items()}
        got = history(client, run.info.run_id, "score")
        assert got == sorted((int(s), pytest.approx(v, abs=1e-12)) for s, v in t.intermediate_values.items())
        if t.values is not None:
            assert run.data.metrics["score"] == pytest.approx(t.value, abs=1e-12, rel=0)
        else:  # pruned or failed: the last intermediate value
            assert run.data.metrics["score"] == pytest.approx(t.intermediate_values[2], abs=1e-12, rel=0)
        assert run.data.metrics["train_seconds"] == pytest.approx(t.user_attrs["train_seconds"])
    assert states == {"COMPLETE": 5, "PRUNED": 1, "FAIL": 1}
    assert sha256(db) == digest  # the Optuna storage was only read


def test_optuna_second_import_creates_nothing(optuna_store):
    uri, db, _, _ = optuna_store
    client = MlflowClient(uri)
    before = {r.info.run_id for r in all_runs(client, "toy")}
    res = invoke("import", "optuna", f"sqlite:///{db}", "--study", "toy", "--tracking-uri", uri,
                 "--metric", "score")
    assert "imported 0 runs" in res.output
    assert {r.info.run_id for r in all_runs(client, "toy")} == before


def test_optuna_real_bank_store_copy(tmp_path, new_store):
    if not BANK_OPTUNA.is_file():
        pytest.skip("the shared bank-sqlite store is not here")
    import sqlite3

    copy = tmp_path / "optuna.db"
    shutil.copy2(BANK_OPTUNA, copy)
    digest = sha256(copy)
    con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    n_trials = con.execute("select count(*) from trials t join studies s on t.study_id = s.study_id "
                           "where s.study_name = 'xgboost_optimization'").fetchone()[0]
    con.close()
    assert n_trials > 300
    uri = new_store
    invoke("import", "optuna", f"sqlite:///{copy}", "--study", "xgboost_optimization", "--tracking-uri", uri)
    runs = all_runs(MlflowClient(uri), "xgboost_optimization")
    assert len(runs) == n_trials + 1
    statuses = pd.Series([r.info.status for r in runs]).value_counts().to_dict()
    assert statuses == {"FINISHED": n_trials - 3 + 1, "FAILED": 3}
    assert sha256(copy) == digest


# --------------------------------------------------------------------------- (c) seed-000 per-epoch run
@pytest.fixture()
def epoch_folder(tmp_path):
    folder = tmp_path / "csn_16frames_test"
    folder.mkdir()
    rng = np.random.default_rng(5)
    epochs = pd.DataFrame({"epoch": np.arange(1, 9), "train_loss": rng.uniform(0, 1, 8),
                           "val_loss": rng.uniform(0, 1, 8), "val_f1": rng.uniform(0, 1, 8)})
    epochs.to_csv(folder / "metrics_epoch.csv", index=False, float_format="%.17g")
    preds = pd.DataFrame({"label": rng.integers(0, 2, 50), "prob_header": rng.uniform(0, 1, 50)})
    preds.to_csv(folder / "val_predictions.csv", index=False)
    return folder, epochs


def test_epochs_round_trip(epoch_folder, tmp_path, new_store):
    folder, epochs = epoch_folder
    uri = new_store
    invoke("import", "epochs", str(folder), "--tracking-uri", uri, "--experiment", "header-classifier")
    client = MlflowClient(uri)
    runs = all_runs(client, "header-classifier")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "csn_16frames_test" and run.info.status == "FINISHED"
    for key in ("train_loss", "val_loss", "val_f1"):
        got = history(client, run.info.run_id, key)
        assert [s for s, _ in got] == epochs["epoch"].tolist()
        np.testing.assert_allclose([v for _, v in got], epochs[key], rtol=0, atol=1e-12)
        assert run.data.metrics[key] == pytest.approx(epochs[key].iloc[-1], abs=1e-12, rel=0)
    dst = tmp_path / "download"
    dst.mkdir()
    local = Path(client.download_artifacts(run.info.run_id, "predictions/val_predictions.csv", str(dst)))
    assert local.read_bytes() == (folder / "val_predictions.csv").read_bytes()
    # Twice: nothing new.
    invoke("import", "epochs", str(folder), "--tracking-uri", uri, "--experiment", "header-classifier")
    assert len(all_runs(client, "header-classifier")) == 1


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def populated_template(tmp_path_factory, empty_store_template) -> Path:
    root = tmp_path_factory.mktemp("populated")
    make_two_stage_folder(root / "good", n_quick=4)
    db = root / "mlflow.db"
    shutil.copy2(empty_store_template, db)
    invoke("import", "two-stage", str(root / "good"), "--tracking-uri", f"sqlite:///{db}", "--experiment", "existing")
    return db


@pytest.fixture()
def populated_store(populated_template, tmp_path):
    """A store that already holds an imported experiment, so 'nothing half-imported' can be checked
    both for an existing experiment (no new run) and a new one (not created)."""
    db = tmp_path / "populated.db"
    shutil.copy2(populated_template, db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    n_before = len(all_runs(client, "existing"))
    assert n_before == 2 + 4 + 4

    def unchanged():
        assert len(all_runs(client, "existing")) == n_before
        assert client.get_experiment_by_name("fresh") is None

    return uri, unchanged


@pytest.mark.parametrize("experiment", ["existing", "fresh"])
def test_csv_without_combination_id(populated_store, tmp_path, experiment):
    uri, unchanged = populated_store
    bad = tmp_path / "bad"
    make_two_stage_folder(bad, n_quick=4)
    quick = pd.read_csv(bad / "quick_search_results.csv").rename(columns={"combination_id": "combo"})
    quick.to_csv(bad / "quick_search_results.csv", index=False)
    line = assert_one_line_error(cli("import", "two-stage", str(bad), "--tracking-uri", uri, "-e", experiment),
                                 "combination_id")
    assert "quick_search_results.csv" in line
    unchanged()


def test_full_csv_without_combination_id(populated_store, tmp_path):
    uri, unchanged = populated_store
    bad = tmp_path / "bad"
    make_two_stage_folder(bad, n_quick=4)
    full = pd.read_csv(bad / "full_search_results.csv").drop(columns=["combination_id"])
    full.to_csv(bad / "full_search_results.csv", index=False)
    assert_one_line_error(cli("import", "two-stage", str(bad), "--tracking-uri", uri, "-e", "existing"),
                          "full_search_results.csv", "combination_id")
    unchanged()


def test_malformed_histories_json(populated_store, tmp_path):
    uri, unchanged = populated_store
    bad = tmp_path / "bad"
    make_two_stage_folder(bad, n_quick=4)
    (bad / "training_histories.json").write_text('{"7": {"train_loss": [0.1, 0.2,')
    assert_one_line_error(cli("import", "two-stage", str(bad), "--tracking-uri", uri, "-e", "existing"),
                          "training_histories.json", "JSON")
    unchanged()
    assert_one_line_error(cli("import", "two-stage", str(bad), "--tracking-uri", uri, "-e", "fresh"))
    unchanged()


@pytest.mark.parametrize("command", ["two-stage", "epochs"])
def test_folder_that_does_not_exist(populated_store, tmp_path, command):
    uri, unchanged = populated_store
    missing = tmp_path / "no" / "such" / "folder"
    assert_one_line_error(cli("import", command, str(missing), "--tracking-uri", uri, "-e", "fresh"), str(missing))
    assert not missing.exists()
    unchanged()


def test_optuna_storage_file_that_does_not_exist(populated_store, tmp_path):
    uri, unchanged = populated_store
    missing = tmp_path / "nowhere" / "optuna.db"
    assert_one_line_error(cli("import", "optuna", f"sqlite:///{missing}", "--study", "s", "--tracking-uri", uri,
                              "-e", "fresh"), str(missing))
    assert not missing.exists() and not missing.parent.exists()
    unchanged()


def test_optuna_study_that_is_not_there(populated_store, tmp_path):
    uri, unchanged = populated_store
    db = tmp_path / "study.db"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="present", storage=f"sqlite:///{db}")
    digest = sha256(db)
    line = assert_one_line_error(cli("import", "optuna", f"sqlite:///{db}", "--study", "absent",
                                     "--tracking-uri", uri, "-e", "fresh"), "absent")
    assert "present" in line  # says which studies there are
    assert sha256(db) == digest
    unchanged()


def test_file_that_is_not_an_optuna_storage(populated_store, tmp_path):
    uri, unchanged = populated_store
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert_one_line_error(cli("import", "optuna", f"sqlite:///{junk}", "--study", "s", "--tracking-uri", uri,
                              "-e", "fresh"))
    assert junk.read_text() == "not a database"
    unchanged()


def test_epochs_without_epoch_column(populated_store, tmp_path):
    uri, unchanged = populated_store
    folder = tmp_path / "run"
    folder.mkdir()
    pd.DataFrame({"step": [1, 2], "loss": [0.5, 0.4]}).to_csv(folder / "metrics_epoch.csv", index=False)
    assert_one_line_error(cli("import", "epochs", str(folder), "--tracking-uri", uri, "-e", "fresh"), "epoch")
    unchanged()


def test_bad_input_into_a_store_that_does_not_exist_creates_no_store(tmp_path):
    db = tmp_path / "never.db"
    assert_one_line_error(cli("import", "two-stage", str(tmp_path / "missing"), "--tracking-uri", f"sqlite:///{db}"))
    assert not db.exists()


def test_candidate_without_history_does_not_borrow_another_candidates(tmp_path):
    from mlviz.store.importers import two_stage

    folder = tmp_path / "exp"
    folder.mkdir()
    pd.DataFrame({"combination_id": [2, 9], "opt": ["adam", "sgd"], "roc_auc": [0.7, 0.8]}).to_csv(
        folder / "quick_search_results.csv", index=False)
    pd.DataFrame({"stage2_rank": [1, 2], "combination_id": [2, 9], "opt": ["adam", "sgd"], "roc_auc": [0.75, 0.85],
                  "quick_roc_auc": [0.7, 0.8]}).to_csv(folder / "full_search_results.csv", index=False)
    # Combination 9 crashed before its history was saved; combination 2's is there.
    (folder / "training_histories.json").write_text(json.dumps({"2": {"train_loss": [0.9, 0.5, 0.3]}}))
    specs = {s.name: s for s in two_stage(folder)}
    assert specs["full-2"].histories["train_loss"] == [(1, 0.9), (2, 0.5), (3, 0.3)]
    assert specs["full-9"].histories == {}  # rank 2 is combination 2's id: its curves are not combination 9's


def test_all_numeric_layout_keeps_ids_ints_and_histories(tmp_path):
    from mlviz.store.importers import two_stage

    folder = tmp_path / "exp"
    folder.mkdir()
    pd.DataFrame({"combination_id": [2, 9], "lr": [0.1, 0.2], "batch_size": [32, 64],
                  "roc_auc": [0.7, 0.8]}).to_csv(folder / "quick_search_results.csv", index=False)
    pd.DataFrame({"stage2_rank": [1, 2], "combination_id": [2, 9], "lr": [0.1, 0.2], "batch_size": [32, 64],
                  "roc_auc": [0.75, 0.85], "quick_roc_auc": [0.7, 0.8]}).to_csv(
        folder / "full_search_results.csv", index=False)
    (folder / "training_histories.json").write_text(json.dumps({"2": {"train_loss": [0.9, 0.5]},
                                                                "9": {"train_loss": [0.8, 0.4]}}))
    specs = {s.name: s for s in two_stage(folder)}
    assert {"combination-2", "combination-9", "full-2", "full-9"} <= set(specs)
    assert specs["combination-9"].params == {"lr": "0.2", "batch_size": "64"}
    assert specs["full-9"].tags["mlviz.stage2_rank"] == "2"
    assert specs["full-9"].histories == {"train_loss": [(1, 0.8), (2, 0.4)]}
