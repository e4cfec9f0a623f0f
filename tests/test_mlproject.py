"""The MLproject entry points through the real `mlflow run . -e ... --env-manager local`.

`mlflow run` creates the run and hands it to the entry point as MLFLOW_RUN_ID: the visualize analysis must
land in that run (not in a second one), and the entry points' typed parameters must reach the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SYNTHETIC_EXPERIMENT, SYNTHETIC_RUNS
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("clean_env")


def mlflow_run(uri: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    mlflow = [sys.executable, "-m", "mlflow"]
    return subprocess.run([*mlflow, "run", str(REPO), "--env-manager", "local", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def store(synthetic_store, tmp_path):
    db = tmp_path / "mlflow.db"
    shutil.copy2(synthetic_store["db"], db)
    return {"uri": f"sqlite:///{db}", "experiment_id": synthetic_store["experiment_id"]}


def test_visualize_entry_point_analyses_into_the_run_mlflow_created(store, tmp_path):
    client = MlflowClient(store["uri"])
    before = {r.info.run_id for r in client.search_runs([store["experiment_id"]], max_results=1000)}
    p = mlflow_run(store["uri"], tmp_path, "-e", "visualize", "--experiment-name", SYNTHETIC_EXPERIMENT,
                   "-P", f"experiment={SYNTHETIC_EXPERIMENT}", "-P", "metric=val_accuracy", "-P", "n_boot=20",
                   "-P", "top_k=5")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    new = [r for r in client.search_runs([store["experiment_id"]], max_results=1000) if r.info.run_id not in before]
    assert len(new) == 1, [r.info.run_name for r in new]  # the analysis went into mlflow run's own run
    run = new[0]
    assert run.data.tags["mlflow.project.entryPoint"] == "visualize"
    assert run.data.tags["mlviz.analysis"] == "visualize" and run.info.status == "FINISHED"
    assert run.data.params["n_boot"] == "20" and run.data.params["top_k"] == "5"
    folder = Path(client.download_artifacts(run.info.run_id, "mlviz", str(tmp_path)))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["sweep"]["n_runs"] == SYNTHETIC_RUNS and summary["options"]["n_boot"] == 20
    assert "mlviz/stage1/parameter_importance.png" in summary["figures_made"]
    top = json.loads((folder / "stage1" / "top_k_comparison.json").read_text())
    assert len(top["runs"] if "runs" in top else top["table"]) == 5


def test_bad_parameter_fails_with_one_line(store, tmp_path):
    p = mlflow_run(store["uri"], tmp_path, "-e", "visualize", "--experiment-name", SYNTHETIC_EXPERIMENT,
                   "-P", "experiment=no-such-experiment")
    assert p.returncode != 0
    assert "mlviz: error: " in p.stderr and "no-such-experiment" in p.stderr
    assert "Traceback (most recent call last)" not in p.stderr.split("mlviz: error:")[0][-2000:]


@pytest.fixture(scope="module")
def demo_by_entry_point(tmp_path_factory):
    """The `demo` entry point (quick preset) into a fresh SQLite store; returns the store and its best run."""
    root = tmp_path_factory.mktemp("mlproject-demo")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            mp.delenv(name, raising=False)
        p = mlflow_run(uri, root, "-e", "demo", "--experiment-name", "mlproject-demo", "-P", "quick=true",
                       "-P", "task=binary")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mlviz-demo-binary")
    best = client.search_runs([exp.experiment_id], filter_string="tags.`mlviz.best_model` = '1'")
    assert len(best) == 1
    return {"uri": uri, "root": root, "client": client, "experiment_id": exp.experiment_id,
            "best": best[0].info.run_id, "n_runs": len(client.search_runs([exp.experiment_id], max_results=1000))}


def test_demo_entry_point_logs_the_quick_sweep(demo_by_entry_point):
    runs = demo_by_entry_point["client"].search_runs([demo_by_entry_point["experiment_id"]], max_results=1000)
    stages = [r.data.tags.get("mlviz.stage") for r in runs]
    assert stages.count("1") >= 2 and stages.count("2") >= 2  # the parents and their trials / candidates


def test_best_model_and_heatmaps_entry_points_log_into_the_model_run(demo_by_entry_point, tmp_path):
    d = demo_by_entry_point
    p = mlflow_run(d["uri"], tmp_path, "-e", "best_model", "--experiment-name", "mlproject-demo",
                   "-P", f"run={d['best']}", "-P", "n_boot=50")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    run = d["client"].get_run(d["best"])
    assert 0.5 < run.data.metrics["mlviz.auc"] <= 1.0 and run.data.tags["mlviz.diagnostics"] == "best_model"
    p = mlflow_run(d["uri"], tmp_path, "-e", "heatmaps", "--experiment-name", "mlproject-demo",
                   "-P", f"run={d['best']}", "-P", "samples=3", "-P", "method=gradcam++")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    summary = json.loads(Path(d["client"].download_artifacts(d["best"], "mlviz/heatmaps_summary.json",
                                                             str(tmp_path))).read_text())
    assert summary["attribution"]["method"] == "gradcam++" and summary["samples"]["n"] == 3


def test_synthetic_sweep_entry_point(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p = mlflow_run(uri, tmp_path, "-e", "synthetic_sweep", "--experiment-name", "entry", "-P", "runs=7",
                   "-P", "steps=3", "-P", "experiment=generated")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("generated")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 8  # 7 runs and their stage1 parent
    child = next(r for r in runs if r.info.run_name != "stage1")
    assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 3


def test_integer_parameters_are_checked_by_mlviz(store, tmp_path):
    p = mlflow_run(store["uri"], tmp_path, "-e", "visualize", "--experiment-name", SYNTHETIC_EXPERIMENT,
                   "-P", f"experiment={SYNTHETIC_EXPERIMENT}", "-P", "n_boot=lots")
    assert p.returncode != 0
    assert "mlviz: error: " in p.stderr and "n-boot" in p.stderr


def test_compare_entry_point_logs_into_the_run_mlflow_created(demo_by_entry_point, tmp_path):
    d = demo_by_entry_point
    client = d["client"]
    stage2 = client.search_runs([d["experiment_id"]], filter_string="tags.`mlviz.stage` = '2'", max_results=100)
    candidates = [r.info.run_id for r in stage2 if r.info.run_name != "stage2"][:2]
    before = {r.info.run_id for r in client.search_runs([d["experiment_id"]], max_results=1000)}
    p = mlflow_run(d["uri"], tmp_path, "-e", "compare", "--experiment-name", "mlviz-demo-binary",
                   "-P", f"runs={','.join(candidates)}", "-P", "n_boot=50")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    new = [r for r in client.search_runs([d["experiment_id"]], max_results=1000) if r.info.run_id not in before]
    assert len(new) == 1 and new[0].data.tags["mlviz.analysis"] == "compare"
    assert set(new[0].data.tags["mlviz.compared_runs"].split(",")) == set(candidates)
    assert new[0].data.metrics["mlviz.compare.n_runs"] == 2


def test_embed_entry_point_logs_the_map_into_the_model_run(demo_by_entry_point, tmp_path):
    d = demo_by_entry_point
    p = mlflow_run(d["uri"], tmp_path, "-e", "embed", "--experiment-name", "mlviz-demo-binary",
                   "-P", f"run={d['best']}", "-P", "method=pca")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    run = d["client"].get_run(d["best"])
    assert 0.5 < run.data.metrics["mlviz.embedding.trustworthiness"] <= 1.0
    files = {f.path for f in d["client"].list_artifacts(d["best"], "mlviz/embedding")}
    assert {"mlviz/embedding/embedding.png", "mlviz/embedding/embedding_coords.npy",
            "mlviz/embedding/embedding_metadata.csv", "mlviz/embedding/embedding.html"} <= files
