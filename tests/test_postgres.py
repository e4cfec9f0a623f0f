"""mlviz against a PostgreSQL-backed `mlflow server` with proxied artifacts, as a research group runs one.

The module starts a real PostgreSQL 15 (Debian's `postgresql` package: `initdb`/`pg_ctl` of
`pg_config --bindir`, run as the `postgres` user in a temporary folder, on a free port of 127.0.0.1) and a
real `mlflow server --backend-store-uri postgresql+psycopg://... --serve-artifacts` in front of it, then runs
`visualize` and `best-model` over HTTP and 4 simultaneous `visualize` processes (one analysis run results).
Needs psycopg 3 (`pip install "psycopg[binary]"`) and the PostgreSQL server binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import describe_result, run_cli

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("clean_env")]
EXPERIMENT = "synthetic-sweep"


def _pg_bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out and (Path(out) / "pg_ctl").is_file() else None


def _as_postgres(*args, **kw):
    """Run a PostgreSQL program as the postgres user (the server refuses to run as root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *map(str, args)], check=True, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def postgres():
    """`postgresql+psycopg://` URI of a fresh database `mlflow` on a PostgreSQL started for this module."""
    pytest.importorskip("psycopg")
    bindir = _pg_bindir()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries (pg_config --bindir) are not installed")
    from test_http_server import _free_port

    root = Path(tempfile.mkdtemp(prefix="mlviz-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    _as_postgres(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    _as_postgres(bindir / "pg_ctl", "-D", data, "-l", data / "server.log", "-w", "-t", "60", "-o",
                 f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as con:
            con.execute("CREATE DATABASE mlflow")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"] if os.geteuid() == 0 else [str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                                                  "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """An `mlflow server` on 127.0.0.1 backed by the PostgreSQL database, artifacts proxied, holding a
    30-run synthetic sweep."""
    pytest.importorskip("requests")
    from test_http_server import STARTUP_TIMEOUT_S, _free_port, _stop, _wait_healthy

    from mlviz.demo.synthetic import log_synthetic_sweep

    root = tmp_path_factory.mktemp("pg-server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", postgres, "--artifacts-destination", str(root / "artifacts"),
           "--serve-artifacts", "--workers", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(uri, proc, log, STARTUP_TIMEOUT_S * 2)  # the first start migrates the schema
        exp_id = log_synthetic_sweep(uri, EXPERIMENT, n_runs=30, n_steps=3)
        yield {"uri": uri, "experiment_id": exp_id, "root": root}
    finally:
        _stop(proc)


def test_the_server_really_is_backed_by_postgres(server, postgres):
    import psycopg

    with psycopg.connect(postgres.replace("+psycopg", "")) as con:
        n_runs = con.execute("SELECT count(*) FROM runs WHERE experiment_id = %s",
                             (int(server["experiment_id"]),)).fetchone()[0]
    assert n_runs == 31  # 30 trials and their stage1 parent


def test_four_simultaneous_visualize_leave_one_complete_analysis_run(server, tmp_path):
    from test_concurrency import N_PROCESSES, _check_one_complete_analysis, _visualize_at_once

    results = _visualize_at_once(server["uri"], tmp_path)
    for code, output in results:
        assert code == 0, output
    found = _check_one_complete_analysis(server["uri"], tmp_path)
    assert found["run"].info.artifact_uri.startswith("mlflow-artifacts:")
    print(f"postgres: {N_PROCESSES} processes, {found['n_deleted']} losing runs deleted")

    again = run_cli("visualize", "--tracking-uri", server["uri"], "-e", EXPERIMENT, "--metric", "val_accuracy",
                    "--n-boot", "20", "--no-heatmaps", "-q")
    assert again.exit_code == 0, describe_result(again)
    assert f"up to date: analysis run {found['run'].info.run_id}" in again.output


def test_best_model_over_http_reads_predictions_through_the_proxy(server, tmp_path):
    from mlflow import MlflowClient
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x, y = load_digits(return_X_y=True)
    x, y = x[:400] / 16.0, (y[:400] == 3).astype(int)
    score = LogisticRegression(C=0.05, max_iter=300).fit(x[::2], y[::2]).predict_proba(x[1::2])[:, 1]
    client = MlflowClient(server["uri"])
    rid = client.create_run(server["experiment_id"], run_name="model").info.run_id
    src = tmp_path / "predictions"
    src.mkdir()
    pd.DataFrame({"labels": y[1::2], "probabilities": score, "Patient ID": np.arange(200)}).to_csv(
        src / "val_predictions.csv", index=False)
    client.log_artifact(rid, str(src / "val_predictions.csv"), "predictions")
    client.set_terminated(rid, "FINISHED")

    r = run_cli("best-model", "--tracking-uri", server["uri"], "--run", rid, "--n-boot", "20", "--no-heatmaps")
    assert r.exit_code == 0, describe_result(r)
    dst = tmp_path / "down"
    dst.mkdir()
    local = Path(client.download_artifacts(rid, "mlviz", str(dst)))
    summary = json.loads((local / "best_model_summary.json").read_text())
    assert summary["headline_metrics"]["mlviz.auc"] == pytest.approx(roc_auc_score(y[1::2], score), abs=1e-12)
    assert client.get_run(rid).data.metrics["mlviz.auc"] == pytest.approx(roc_auc_score(y[1::2], score))
