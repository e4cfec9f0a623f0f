"""MLflow's own warnings while mlviz reads a store reach the user as one line per problem
(`mlviz: warning: ...`), never as MLflow's log lines with their tracebacks.

The real case: a file store (written by MLflow, MLFLOW_ALLOW_FILE_STORE=true) with one experiment folder
that lost its meta.yaml. MLflow logs "Malformed experiment ..." with a 20-line traceback on every search;
mlviz says it once and analyses the rest correctly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("clean_env")

EXPERIMENT = "sweep"
N_RUNS = 12


@pytest.fixture(scope="module")
def file_store(tmp_path_factory):
    """A file store written by MLflow: the 12-run sweep and a second experiment `other` (2 runs)."""
    from mlviz.demo.synthetic import log_synthetic_sweep

    root = tmp_path_factory.mktemp("file-store") / "mlruns"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            mp.delenv(name, raising=False)
        sweep_id = log_synthetic_sweep(root.as_uri(), EXPERIMENT, n_runs=N_RUNS, n_steps=2)
        other_id = log_synthetic_sweep(root.as_uri(), "other", n_runs=2, n_steps=0)
    return {"root": root, "sweep_id": sweep_id, "other_id": other_id}


@pytest.fixture
def broken_copy(file_store, tmp_path):
    """A copy of the file store whose `other` experiment folder has no meta.yaml."""
    root = tmp_path / "mlruns"
    shutil.copytree(file_store["root"], root)
    (root / file_store["other_id"] / "meta.yaml").unlink()
    return {**file_store, "root": root}


def _expected_best(root: Path, exp_id: str) -> tuple[str, float]:
    """The sweep's best run by val_accuracy, read straight from the run folders' metric files."""
    best = ("", -1.0)
    for run in (root / exp_id).iterdir():
        metric = run / "metrics" / "val_accuracy"
        if metric.is_file():
            value = float(metric.read_text().strip().splitlines()[-1].split()[1])  # "timestamp value step"
            if value > best[1]:
                best = (run.name, value)
    return best


def test_an_experiment_folder_without_meta_yaml_is_one_warning_line(broken_copy, tmp_path):
    root, out = broken_copy["root"], tmp_path / "figures"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_ALLOW_FILE_STORE": "true", "MPLBACKEND": "Agg"})
    proc = subprocess.run(
        [sys.executable, "-m", "mlviz.cli", "visualize", "--tracking-uri", str(root), "-e", EXPERIMENT,
         "--metric", "val_accuracy", "--out", str(out), "--n-boot", "10", "--no-heatmaps", "--no-embedding",
         "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "Malformed" not in text and "WARNING" not in text, text
    warned = [ln for ln in text.splitlines() if ln.startswith("mlviz: warning: ")]
    assert len(warned) == 1, text
    assert broken_copy["other_id"] in warned[0] and "meta.yaml" in warned[0], warned[0]
    assert "mlviz: error" not in text

    summary = json.loads((out / "mlviz" / "summary.json").read_text())
    assert summary["sweep"]["n_runs"] == N_RUNS
    best_id, best_value = _expected_best(root, broken_copy["sweep_id"])
    assert summary["headline_metrics"]["mlviz.best.val_accuracy"] == pytest.approx(best_value)
    importance = json.loads((out / "mlviz" / "stage1" / "parameter_importance.json").read_text())
    assert importance["n_runs"] == N_RUNS
    assert best_id  # the sweep's runs were found in the store's folders
    assert not (root / ".trash").exists()  # reading left the store as it was


def test_the_warning_is_said_once_per_store_however_often_mlflow_logs_it(broken_copy, capsys):
    from mlviz.store.read import Store

    root_logger = logging.getLogger()
    handlers_before = list(root_logger.handlers)
    with Store(str(broken_copy["root"])) as store:
        names = {e.name for e in store.experiments()}
        exp = store.experiment(EXPERIMENT)
        records, unreadable = store.run_records([exp.experiment_id])
        store.experiments()
    err = capsys.readouterr().err
    assert "other" not in names and EXPERIMENT in names
    assert len([r for r in records if r["lifecycle_stage"] == "active"]) == N_RUNS + 1 and not unreadable
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlviz: warning: experiment folder "), err
    assert "Traceback" not in err
    assert root_logger.handlers == handlers_before  # MLflow's root-logger warning installed no handler


def test_capture_summarises_and_puts_everything_back(capsys, monkeypatch):
    from mlviz.store.quiet import capture

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # MLflow's default: 7

    mlflow_logger, urllib3_logger = logging.getLogger("mlflow"), logging.getLogger("urllib3")
    before = (list(mlflow_logger.handlers), mlflow_logger.propagate, list(urllib3_logger.handlers),
              urllib3_logger.propagate, warnings.showwarning, list(logging.getLogger().filters))

    class Owner:
        pass

    owner = Owner()
    with capture(owner) as problems, warnings.catch_warnings():
        warnings.simplefilter("always")
        for _ in range(3):
            warnings.warn("this store is deprecated", FutureWarning, stacklevel=1)
            logging.getLogger("mlflow.store.tracking").warning("Run metadata is in invalid state.")
            logging.getLogger("urllib3.connectionpool").warning(
                "Retrying (%r) after connection broken by '%r': %s", "Retry(total=0)",
                "NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new "
                "connection: [Errno 111] Connection refused\")", "/api/2.0/mlflow/runs/search")
        with capture(owner):  # nested: the same problems, still said once
            logging.getLogger("mlflow").warning("Run metadata is in invalid state.")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [
        "mlviz: warning: FutureWarning: this store is deprecated",
        "mlviz: warning: MLflow: Run metadata is in invalid state.",
        "mlviz: warning: no answer from 127.0.0.1:9; MLflow's client is retrying "
        "(MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, with backoff)",
    ], err
    assert sorted(problems.counts.values()) == [3, 3, 4]
    after = (list(mlflow_logger.handlers), mlflow_logger.propagate, list(urllib3_logger.handlers),
             urllib3_logger.propagate, warnings.showwarning, list(logging.getLogger().filters))
    assert after == before
