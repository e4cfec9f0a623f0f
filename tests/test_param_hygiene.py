"""Parameter hygiene on sweeps logged through MLflow: object reprs read as their class, identifier-like
parameters left out with the reason, aliases (identical on every run) drawn once; each decision in
`sweep.notes` and `sweep.describe()`."""

from __future__ import annotations

import numpy as np
import pytest

N_RUNS = 12


@pytest.fixture
def keras_like_store(tmp_path, monkeypatch):
    """A real SQLite store with a Keras-style sweep: optimizer objects, lr == learning_rate, a per-run path."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("keras-sweep", artifact_location=str(tmp_path / "artifacts"))
    rng = np.random.default_rng(0)
    for i in range(N_RUNS):
        cls = ("SGD", "Adam", "RMSprop")[i % 3]
        lr = float(10 ** rng.uniform(-4, -1))
        run = client.create_run(exp, run_name=f"trial-{i}")
        params = {"optimizer": f"<keras.optimizers.{cls} object at 0x7f82{rng.integers(0, 16**8):08x}>",
                  "lr": repr(lr), "learning_rate": repr(lr), "dropout": f"{0.1 * (i % 4):.1f}",
                  "checkpoint_dir": f"/scratch/run_{i:03d}_{rng.integers(0, 16**6):06x}"}
        for k, v in params.items():
            client.log_param(run.info.run_id, k, v)
        client.log_metric(run.info.run_id, "val_accuracy", 0.8 + 0.01 * (i % 3) + 0.05 * lr)
        client.set_terminated(run.info.run_id)
    return uri


def test_object_reprs_identifiers_and_aliases(keras_like_store):
    from mlviz.sections.sweep import load_sweep

    sweep = load_sweep(keras_like_store, "keras-sweep")
    opt = sweep.params["optimizer"]
    assert opt.kind == "categorical" and opt.values == ["keras.optimizers.Adam", "keras.optimizers.RMSprop",
                                                        "keras.optimizers.SGD"]
    assert set(sweep.runs["params.optimizer"]) == set(opt.values)
    assert sweep.params["checkpoint_dir"].left_out.startswith("identifier-like")
    assert sweep.params["lr"].alias_of == "learning_rate" and sweep.params["learning_rate"].alias_of is None
    assert [p.name for p in sweep.varied_params] == ["dropout", "learning_rate", "optimizer"]
    notes = " | ".join(sweep.notes)
    assert f"{N_RUNS} object reprs" in notes and "'optimizer'" in notes
    assert "'checkpoint_dir' left out" in notes
    assert "'lr' and 'learning_rate' have identical values on every run: drawn once as 'learning_rate'" in notes
    desc = sweep.describe()
    assert desc["aliases"] == {"lr": "learning_rate"}
    assert list(desc["left_out_params"]) == ["checkpoint_dir", "lr"]
    assert desc["notes"] == sweep.notes


def test_figures_draw_each_parameter_once(keras_like_store):
    from mlviz.figures.sweep import SweepOptions
    from mlviz.sections.sweep import analyse, load_sweep

    report = analyse(load_sweep(keras_like_store, "keras-sweep"), SweepOptions(n_boot=20))
    parallel = report.figure("stage1", "parallel_coordinates").data
    assert [a.name for a in parallel.axes][:3] and {a.name for a in parallel.axes} <= {
        "dropout", "learning_rate", "optimizer", "val_accuracy"}
    importance = report.figure("stage1", "parameter_importance").data
    assert sorted(importance.params) == ["dropout", "learning_rate", "optimizer"]
    assert report.summary["sweep"]["aliases"] == {"lr": "learning_rate"}


def test_distinct_numbers_are_not_identifiers():
    """A float sampled per run (distinct on every run) is a hyperparameter, not an identifier."""
    from mlviz.demo.synthetic import synthetic_records
    from mlviz.sweep import build_sweep

    sweep = build_sweep(synthetic_records(30))
    assert sweep.params["learning_rate"].left_out is None
    assert not any("left out" in n or "identical" in n for n in sweep.notes)
