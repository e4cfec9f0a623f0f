"""Sweeps written by the tools people use, not by mlviz: MLflow's scikit-learn autolog of a grid search
(a parent run with one child per candidate) and Optuna's MLflowCallback (one run per trial). Each is
written for real into a SQLite store, then analysed by `mlviz visualize`, and the numbers are checked
against what the writer itself reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import describe_result, read_summary, run_cli

pytestmark = pytest.mark.usefixtures("clean_env")


def test_sklearn_autolog_grid_search(tmp_path, monkeypatch):
    import mlflow
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("svc-grid")
    x, y = load_digits(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": [1e-4, 1e-3, 1e-2], "kernel": ["rbf"]}
    mlflow.sklearn.autolog(max_tuning_runs=None, log_models=False, log_datasets=False, silent=True)
    try:
        with mlflow.start_run(run_name="grid") as parent:
            search = GridSearchCV(SVC(), grid, cv=3).fit(x[:600], y[:600])
    finally:
        mlflow.sklearn.autolog(disable=True)
        mlflow.set_tracking_uri(None)
    out = tmp_path / "out"
    r = run_cli("visualize", "--tracking-uri", uri, "-e", "svc-grid", "--parent-run", parent.info.run_id,
                "--metric", "mean_test_score", "--n-boot", "50", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    s = read_summary(out)
    sweep = s["sweep"]
    assert sweep["n_runs"] == 9  # one child per candidate; the parent only groups them
    params = sweep["params"]
    assert params["C"]["kind"] == "float" and params["C"]["log_scale"]
    assert params["gamma"]["log_scale"] and sweep["fixed_params"]["kernel"] == "rbf"
    cells = json.loads((out / "mlviz" / "stage1" / "heatmaps_mean_test_score.json").read_text())
    expected = {(p["C"], p["gamma"]): v for p, v in zip(search.cv_results_["params"],
                                                          search.cv_results_["mean_test_score"], strict=True)}
    best = json.loads((out / "mlviz" / "stage1" / "stage1_summary_dashboard.json").read_text())["_summary"]
    assert best["best_value"] == pytest.approx(search.best_score_, abs=1e-12)
    assert best["best_value"] == pytest.approx(max(expected.values()), abs=1e-12)
    pair = next(p for p in cells["pairs"] if {p["x_param"], p["y_param"]} == {"C", "gamma"})
    assert pair["x_param"] == "gamma" and pair["y_param"] == "C"
    for i, c in enumerate(pair["y_labels"]):
        for j, g in enumerate(pair["x_labels"]):  # each cell is the one candidate's cross-validated score
            assert pair["n"][i][j] == 1
            assert pair["mean"][i][j] == pytest.approx(expected[(float(c), float(g))], abs=1e-12)


def test_optuna_mlflow_callback(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    callback_module = pytest.importorskip("optuna_integration.mlflow")

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    callback = callback_module.MLflowCallback(tracking_uri=uri, metric_name="val_loss",
                                              mlflow_kwargs={"experiment_id": None})

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        layers = trial.suggest_int("layers", 1, 4)
        act = trial.suggest_categorical("act", ["relu", "tanh"])
        return (np.log10(lr) + 3) ** 2 + 0.1 * layers + (0.5 if act == "tanh" else 0.0)

    import mlflow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="toy", sampler=optuna.samplers.RandomSampler(seed=0))
    try:
        study.optimize(objective, n_trials=40, callbacks=[callback])
    finally:
        mlflow.set_tracking_uri(None)  # the callback set the process-wide URI to this test's store
    out = tmp_path / "out"
    r = run_cli("visualize", "--tracking-uri", uri, "-e", "toy", "--n-boot", "100", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    s = read_summary(out)
    sweep = s["sweep"]
    assert sweep["n_runs"] == 40 and sweep["objective"] == "val_loss" and sweep["mode"] == "min"
    params = sweep["params"]
    assert params["lr"]["kind"] == "float" and params["lr"]["log_scale"]
    assert params["layers"]["kind"] == "int" and params["act"]["kind"] == "categorical"
    best = json.loads((out / "mlviz" / "stage1" / "stage1_summary_dashboard.json").read_text())["_summary"]
    assert best["best_value"] == pytest.approx(study.best_value, abs=1e-9)
    imp = json.loads((out / "mlviz" / "stage1" / "parameter_importance.json").read_text())
    assert imp["params"][0] == "lr"  # the objective is a parabola in log10(lr): it dominates
    history = json.loads((out / "mlviz" / "stage1" / "optimization_history.json").read_text())
    values = [t.value for t in sorted(study.trials, key=lambda t: t.datetime_start)]
    np.testing.assert_allclose(history["values"], values, rtol=0, atol=1e-9)  # in trial order
    np.testing.assert_allclose(history["best_so_far"], np.minimum.accumulate(values), rtol=0, atol=1e-9)
