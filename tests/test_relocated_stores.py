"""Stores moved with their artifacts (a `mlruns/` copied from a cluster, an SQLite file moved with its
`./mlruns`): the recorded artifact locations no longer exist, the artifacts sit in the store's own folder.

One small CNN is trained on the binary digits task; its run (predictions with label/score, validation
images, state dict) is logged into a file store and into an SQLite store with default ./mlruns artifacts.
Each store is then moved to another folder, the original gone, and `best-model --out` and `heatmaps --out`
must read the run's artifacts from the moved folder, say so once, and leave the store's bytes unchanged.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import describe_result, run_cli, tree_digest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

pytestmark = pytest.mark.usefixtures("clean_env")
NOTE = "the store was moved"


@pytest.fixture(scope="module")
def trained():
    """A real binary-task CNN (2 epochs) and its task, shared by both stores."""
    from mlviz.demo.data import load_task
    from mlviz.demo.train import train

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = load_task("binary")
        params = {"learning_rate": 3e-3, "weight_decay": 1e-4, "dropout": 0.0, "channels": 8, "depth": 2,
                  "optimizer": "adam", "activation": "relu", "augment": False, "batch_size": 64}
        yield task, train(params, task, 2, seed=0)
    finally:
        torch.set_num_threads(old)


def _log_model_run(uri: str, task, result) -> tuple[str, str]:
    """(experiment id, run id) of a demo-style stage-2 run logged into the store at `uri`."""
    from mlflow import MlflowClient

    from mlviz.demo.sweep import _log_predictions

    client = MlflowClient(uri)
    exp = client.create_experiment("moved")  # default location: ./mlruns of the cwd, or the file store
    rid = client.create_run(exp, run_name="cnn").info.run_id
    _log_predictions(client, rid, task, result)
    client.set_terminated(rid, "FINISHED")
    return exp, rid


def _move(src, dst):
    shutil.move(str(src), str(dst))
    assert not src.exists()


def _check_reads_from_moved_store(uri: str, store_root, artifacts, rid: str, recorded: str, tmp_path, task) -> None:
    from sklearn.metrics import roc_auc_score

    assert not os.path.exists(recorded.removeprefix("file://"))
    before = tree_digest(store_root)
    out = tmp_path / "best"
    r = run_cli("best-model", "--tracking-uri", uri, "--run", rid, "--out", out, "--n-boot", "20",
                "--no-heatmaps")
    assert r.exit_code == 0, describe_result(r)
    assert r.output.count(NOTE) == 1, r.output
    assert "no artifacts" not in r.output and "no predictions" not in r.output, r.output
    summary = json.loads((out / "mlviz" / "best_model_summary.json").read_text())
    preds = pd.read_csv(artifacts / "predictions/val_predictions.csv")
    assert len(preds) == len(task.y_val)
    expected_auc = roc_auc_score(preds["label"], preds["score"])
    assert summary["headline_metrics"]["mlviz.auc"] == pytest.approx(expected_auc, abs=1e-9)
    assert summary["run"]["images"] == "data/val_images.npz"
    assert len(list((out / "mlviz").rglob("*.png"))) >= 5

    cams = tmp_path / "cams"
    h = run_cli("heatmaps", "--tracking-uri", uri, "--run", rid, "--samples", "4", "--out", cams)
    assert h.exit_code == 0, describe_result(h)
    assert h.output.count(NOTE) == 1, h.output
    pngs = sorted(p.name for p in (cams / "mlviz").rglob("*.png"))
    assert pngs, h.output
    assert tree_digest(store_root) == before


def test_a_moved_file_store_reads_artifacts_from_its_own_folder(trained, tmp_path, monkeypatch):
    task, result = trained
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    origin = tmp_path / "cluster" / "NOBACKUP" / "mlruns"
    origin.mkdir(parents=True)
    exp, rid = _log_model_run(origin.as_uri(), task, result)
    recorded = f"{origin.as_uri()}/{exp}/{rid}/artifacts"
    moved = tmp_path / "laptop" / "mlruns"
    moved.parent.mkdir()
    _move(tmp_path / "cluster", tmp_path / "gone")  # the writer's location no longer exists here
    _move(tmp_path / "gone" / "NOBACKUP" / "mlruns", moved)
    shutil.rmtree(tmp_path / "gone")
    monkeypatch.chdir(tmp_path)
    _check_reads_from_moved_store(str(moved), moved, moved / exp / rid / "artifacts", rid, recorded, tmp_path, task)


def test_a_moved_sqlite_store_with_its_mlruns_reads_artifacts_from_there(trained, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    task, result = trained
    origin = tmp_path / "project"
    origin.mkdir()
    monkeypatch.chdir(origin)  # ./mlruns beside mlflow.db, as `mlflow ui` users have it
    exp, rid = _log_model_run(f"sqlite:///{origin / 'mlflow.db'}", task, result)
    recorded = MlflowClient(f"sqlite:///{origin / 'mlflow.db'}").get_run(rid).info.artifact_uri
    assert recorded.removeprefix("file://").startswith(f"{origin / 'mlruns'}/")
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "copied" / "project"
    moved.parent.mkdir()
    _move(origin, moved)
    _check_reads_from_moved_store(f"sqlite:///{moved / 'mlflow.db'}", moved, moved / "mlruns" / exp / rid / "artifacts",
                                  rid, recorded, tmp_path, task)


def test_an_unmoved_store_is_read_from_its_recorded_location(trained, tmp_path, monkeypatch):
    """No note and no relocation when the recorded location exists (the common case)."""
    from mlviz.store.read import Store

    task, result = trained
    monkeypatch.chdir(tmp_path)
    exp, rid = _log_model_run(f"sqlite:///{tmp_path / 'mlflow.db'}", task, result)
    with Store(f"sqlite:///{tmp_path / 'mlflow.db'}") as store:
        assert store.relocated(rid) is None
        paths = store.artifact_paths(rid)
    assert "predictions/val_predictions.csv" in paths
    assert np.isin(["data/val_images.npz", "checkpoints/model_state.pt"], paths).all()


def test_a_store_of_killed_runs_says_to_try_status_running(tmp_path, monkeypatch):
    """A sweep whose processes were killed: every run still RUNNING (some deleted). The one-line error says
    how to analyse them, and doing so works."""
    from conftest import assert_one_line_error
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("killed", artifact_location=str(tmp_path / "artifacts"))
    rng = np.random.default_rng(0)
    for i in range(24):
        rid = client.create_run(exp, run_name=f"trial-{i}").info.run_id
        lr = float(10 ** rng.uniform(-4, -1))
        client.log_batch(rid, metrics=[Metric("val_loss", 1.0 + abs(np.log10(lr) + 2.5) + 0.05 * s, 0, s)
                                       for s in range(3)],
                         params=[], tags=[])
        client.log_param(rid, "learning_rate", f"{lr:.6g}")
        if i >= 21:
            client.delete_run(rid)
    r = run_cli("visualize", "--tracking-uri", uri, "-e", "killed", "--out", tmp_path / "out")
    line = assert_one_line_error(r, "no run left to analyse", "21 unfinished", "3 deleted")
    assert line.endswith("its unfinished runs are analysed with --status RUNNING"), line
    ok = run_cli("visualize", "--tracking-uri", uri, "-e", "killed", "--status", "RUNNING", "--out",
                 tmp_path / "out", "--n-boot", "20", "--no-heatmaps")
    assert ok.exit_code == 0, describe_result(ok)
    summary = json.loads((tmp_path / "out" / "mlviz" / "summary.json").read_text())
    assert summary["sweep"]["n_runs"] == 21
