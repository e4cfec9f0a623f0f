"""mlviz against a real `mlflow server` process (tracking + proxied artifacts) over HTTP.

One server per module (sqlite backend, artifacts served through the server), filled with a synthetic
60-run sweep. Checks that bulk history reads over HTTP match MLflow's own per-run client, and that the
whole `mlviz visualize` flow logs its figures through the server and can be read back through it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

EXPERIMENT = "http-sweep"
N_RUNS = 60
N_STEPS = 10
KEYS = ["val_loss", "val_accuracy"]
STARTUP_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(uri + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server and its uvicorn workers (the whole process group it leads)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)  # uvicorn's graceful shutdown; nothing to flush that the tests need
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """URI of a fresh `mlflow server` on 127.0.0.1 holding the synthetic sweep `http-sweep`."""
    pytest.importorskip("requests")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--serve-artifacts",
        "--workers", "2",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(uri, proc, log, STARTUP_TIMEOUT_S)
        from mlviz.demo.synthetic import log_synthetic_sweep

        exp_id = log_synthetic_sweep(uri, EXPERIMENT, n_runs=N_RUNS, n_steps=N_STEPS)
        yield {"uri": uri, "experiment_id": exp_id, "root": root, "log": log}
    finally:
        _stop(proc)


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _all_runs(uri, exp_id):
    from mlflow.entities import ViewType

    return _client(uri).search_runs([exp_id], run_view_type=ViewType.ALL, max_results=10000)


def test_default_allowed_hosts_accept_loopback_and_reject_others(server):
    import requests

    url = server["uri"] + "/api/2.0/mlflow/experiments/get-by-name"
    ok = requests.get(url, params={"experiment_name": EXPERIMENT}, timeout=10)
    assert ok.status_code == 200, ok.text  # Host: 127.0.0.1:<port>
    bad = requests.get(url, params={"experiment_name": EXPERIMENT}, headers={"Host": "rebind.example.com"},
                       timeout=10)
    assert bad.status_code == 403


def test_histories_over_http_match_get_metric_history(server, monkeypatch):
    from mlviz.store.read import Store

    uri = server["uri"]

    def no_fallback(*a, **k):
        raise AssertionError("Store fell back to per-run get_metric_history instead of the bulk endpoint")

    monkeypatch.setattr(Store, "_histories_per_run", no_fallback, raising=False)
    with Store(uri) as store:
        assert store.kind == "http"
        records, unreadable = store.run_records([server["experiment_id"]])
        run_ids = [r["run_id"] for r in records]
        frame = store.histories(run_ids, KEYS)
    assert not unreadable
    assert len(records) == N_RUNS + 1  # the sweep and its `stage1` parent
    assert list(frame.columns) == ["run_id", "key", "step", "value", "timestamp"]
    assert len(frame) == N_RUNS * len(KEYS) * N_STEPS
    assert frame["run_id"].nunique() == N_RUNS

    client = _client(uri)
    grouped = {k: g for k, g in frame.groupby(["run_id", "key"])}
    compared = 0
    for run_id in run_ids:
        for key in KEYS:
            expected = sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))
            got = grouped.get((run_id, key))
            got = [] if got is None else sorted(
                zip(got["step"].astype(int), got["value"].astype(float), got["timestamp"].astype(int), strict=True)
            )
            assert got == expected, f"history of {key} differs for run {run_id}"
            compared += len(expected)
    assert compared == len(frame)


def test_visualize_over_http_logs_figures_through_the_server(server, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from PIL import Image

    from mlviz.cli import main

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)  # MLFLOW_RUN_ID would redirect the analysis into that run
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri, exp_id = server["uri"], server["experiment_id"]
    args = ["visualize", "--tracking-uri", uri, "-e", EXPERIMENT, "--metric", "val_accuracy", "--n-boot", "50"]
    before = {r.info.run_id for r in _all_runs(uri, exp_id)}

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)

    after = {r.info.run_id: r for r in _all_runs(uri, exp_id)}
    new = set(after) - before
    assert len(new) == 1, f"expected one new analysis run, got {len(new)}"
    run = after[new.pop()]
    assert run.data.tags.get("mlviz.analysis") == "visualize"
    assert run.data.tags.get("mlviz.fingerprint")
    assert run.info.status == "FINISHED"
    # Proxied artifacts: the run's artifacts live behind the server, not in a local path.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri

    dst = tmp_path / "download"
    dst.mkdir()
    local = Path(_client(uri).download_artifacts(run.info.run_id, "mlviz", str(dst)))
    assert local == dst / "mlviz"

    summary = json.loads((local / "summary.json").read_text())
    assert summary["sweep"]["n_runs"] == N_RUNS
    assert summary["fingerprint"] == run.data.tags["mlviz.fingerprint"]
    stage1 = [f for f in summary["figures_made"] if f.startswith("mlviz/stage1/")]
    assert len(stage1) >= 8, summary["figures_made"]
    for rel in stage1:
        png = dst / rel
        assert png.is_file(), f"{rel} is listed in summary.json but was not downloaded"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG"
            assert im.size[0] > 100 and im.size[1] > 100, (rel, im.size)
    assert "mlviz/stage1/parameter_importance.png" in stage1
    assert (local / "index.html").is_file()

    importance = json.loads((local / "stage1" / "parameter_importance.json").read_text())
    assert importance["params"][0] == "learning_rate", importance["params"]
    assert importance["n_runs"] == N_RUNS

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "up to date" in again.output
    assert {r.info.run_id for r in _all_runs(uri, exp_id)} == set(after)


def test_visualize_force_over_http_replaces_the_figures_in_the_same_run(server, tmp_path, monkeypatch):
    """Re-analysis (--force, or a changed sweep) deletes the previous figures through the server."""
    from click.testing import CliRunner

    from mlviz.cli import main

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri, exp_id = server["uri"], server["experiment_id"]
    args = ["visualize", "--tracking-uri", uri, "-e", EXPERIMENT, "--metric", "val_accuracy", "--n-boot", "50"]
    first = CliRunner().invoke(main, args)  # creates the analysis run, or finds it up to date
    assert first.exit_code == 0, first.output
    before = {r.info.run_id for r in _all_runs(uri, exp_id)}

    forced = CliRunner().invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output + repr(forced.exception)
    assert "up to date" not in forced.output
    assert {r.info.run_id for r in _all_runs(uri, exp_id)} == before  # same analysis run, replaced in place

    analysis = [r for r in _all_runs(uri, exp_id) if r.data.tags.get("mlviz.analysis") == "visualize"]
    assert len(analysis) == 1
    dst = tmp_path / "again"
    dst.mkdir()
    local = Path(_client(uri).download_artifacts(analysis[0].info.run_id, "mlviz", str(dst)))
    summary = json.loads((local / "summary.json").read_text())
    assert summary["sweep"]["n_runs"] == N_RUNS
    assert all((dst / f).is_file() for f in summary["figures_made"])
