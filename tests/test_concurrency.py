"""Several `mlviz visualize` of one selection started at the same moment end with one analysis run.

Each test starts 4 real processes (`python -m mlviz.cli visualize ... --force`) at once against a real
store — an SQLite file, and an `mlflow server` on 127.0.0.1 — then checks the store: exactly one live
analysis run of the selection, FINISHED, its fingerprint tag equal to the fingerprint in its summary.json,
and every figure its summary lists present. Runs the losers made are deleted, never left live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXPERIMENT = "synthetic-sweep"
N_RUNS = 30
N_STEPS = 3
N_PROCESSES = 4


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", MPLBACKEND="Agg", MLVIZ_RENDER_WORKERS="1")
    return env


def _visualize_at_once(uri: str, cwd: Path) -> list[tuple[int, str]]:
    """Start N_PROCESSES `mlviz visualize --force` of the same selection together; (exit code, output) each."""
    args = [sys.executable, "-m", "mlviz.cli", "visualize", "--tracking-uri", uri, "-e", EXPERIMENT,
            "--metric", "val_accuracy", "--n-boot", "20", "--no-heatmaps", "--force", "-q"]
    procs = [subprocess.Popen(args, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(N_PROCESSES)]
    return [(p.wait(timeout=600), p.stdout.read()) for p in procs]


def _check_one_complete_analysis(uri: str, tmp_path: Path) -> dict:
    """Assert the store holds one complete live analysis run of the sweep; returns what was found."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    analysis = client.search_runs([exp_id], "tags.`mlviz.analysis` = 'visualize'", run_view_type=ViewType.ALL)
    live = [r for r in analysis if r.info.lifecycle_stage == "active"]
    assert len(live) == 1, [(r.info.run_id, r.info.status, r.info.lifecycle_stage) for r in analysis]
    run = live[0]
    assert run.info.status == "FINISHED"
    dst = tmp_path / "download"
    dst.mkdir()
    local = Path(client.download_artifacts(run.info.run_id, "mlviz", str(dst)))
    summary = json.loads((local / "summary.json").read_text())
    assert run.data.tags["mlviz.fingerprint"] == summary["fingerprint"]
    assert summary["sweep"]["n_runs"] == N_RUNS
    assert len(summary["figures_made"]) >= 8, summary["figures_made"]
    missing = [f for f in summary["figures_made"] if not (dst / f).is_file()]
    assert not missing, missing
    assert run.data.metrics["mlviz.n_runs"] == N_RUNS
    deleted = [r for r in analysis if r.info.lifecycle_stage == "deleted"]
    assert all(r.data.tags.get("mlviz.selection_key") == run.data.tags["mlviz.selection_key"] for r in deleted)
    return {"run": run, "n_deleted": len(deleted)}


def test_four_simultaneous_visualize_on_sqlite_leave_one_complete_analysis_run(tmp_path, monkeypatch):
    from mlviz.demo.synthetic import log_synthetic_sweep

    monkeypatch.chdir(tmp_path)  # the experiment's artifacts go to ./mlruns here
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_synthetic_sweep(uri, EXPERIMENT, n_runs=N_RUNS, n_steps=N_STEPS)

    started = time.perf_counter()
    results = _visualize_at_once(uri, tmp_path)
    elapsed = time.perf_counter() - started
    for code, output in results:
        assert code == 0, output
        assert "Traceback" not in output, output
    found = _check_one_complete_analysis(uri, tmp_path)
    print(f"sqlite: {N_PROCESSES} processes in {elapsed:.0f} s, {found['n_deleted']} losing runs deleted")

    # The next analysis of the same selection finds the one run and says it is up to date.
    again = subprocess.run([sys.executable, "-m", "mlviz.cli", "visualize", "--tracking-uri", uri, "-e",
                            EXPERIMENT, "--metric", "val_accuracy", "--n-boot", "20", "--no-heatmaps", "-q"],
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"up to date: analysis run {found['run'].info.run_id}" in again.stdout


@pytest.mark.server
def test_four_simultaneous_visualize_over_http_leave_one_complete_analysis_run(tmp_path):
    pytest.importorskip("requests")
    from test_http_server import STARTUP_TIMEOUT_S, _free_port, _stop, _wait_healthy

    from mlviz.demo.synthetic import log_synthetic_sweep

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts", "--workers", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(uri, proc, log, STARTUP_TIMEOUT_S)
        log_synthetic_sweep(uri, EXPERIMENT, n_runs=N_RUNS, n_steps=N_STEPS)
        started = time.perf_counter()
        results = _visualize_at_once(uri, tmp_path)
        elapsed = time.perf_counter() - started
        for code, output in results:
            assert code == 0, output
            assert "Traceback" not in output, output
        found = _check_one_complete_analysis(uri, tmp_path)
        print(f"http: {N_PROCESSES} processes in {elapsed:.0f} s, {found['n_deleted']} losing runs deleted")
    finally:
        _stop(proc)
