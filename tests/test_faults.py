"""Faults outside mlviz, each real: a tracking server killed in the middle of an upload, a server that
never answers, a run deleted while it is analysed, a temporary folder that is full. Each ends with one
`mlviz: error:` line, a non-zero exit and no traceback; the store is checked after the failure (nothing
half-logged reads as complete) and after the next run, which repairs it. No MLflow mocks.

MLflow's client retries every HTTP request itself (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7, with
backoff): the tests set one retry, no backoff and short timeouts so they run in seconds.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import describe_result, fresh_sqlite_store, run_cli, sqlite_dump

pytestmark = pytest.mark.usefixtures("clean_env")

EXPERIMENT = "sweep"
N_RUNS = 12
INCOMPLETE = "incomplete"
FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
             "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
VISUALIZE = ["--metric", "val_accuracy", "--n-boot", "10", "--no-heatmaps", "--no-embedding"]


# --------------------------------------------------------------------------- helpers
def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MPLBACKEND": "Agg", **extra})
    return env


def _mlviz(args: list[str], cwd: Path, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlviz.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_one_error_line(rc: int, output: str, *fragments: str) -> str:
    """Non-zero exit, exactly one `mlviz: error:` line, no traceback, no raw MLflow/urllib3 log line;
    at most one warning line (MLflow's retries, said once)."""
    lines = _lines(output)
    assert rc == 2, f"exit {rc}\n{output}"
    assert "Traceback" not in output, output
    assert not any(ln.startswith(("WARNING", "Retrying", "  File ")) or "Retrying (" in ln for ln in lines), output
    errors = [ln for ln in lines if ln.startswith("mlviz: error: ")]
    assert len(errors) == 1, output
    assert len([ln for ln in lines if ln.startswith("mlviz: warning: ")]) <= 1, output
    assert all(ln.startswith(("mlviz: error: ", "mlviz: warning: ")) for ln in lines), output
    for frag in fragments:
        assert frag.lower() in errors[0].lower(), f"{frag!r} not in {errors[0]!r}"
    return errors[0]


def analysis_runs(uri: str, exp_id: str) -> list:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    return MlflowClient(tracking_uri=uri).search_runs(
        [exp_id], filter_string="tags.`mlviz.analysis` = 'visualize'", run_view_type=ViewType.ALL)


def artifact_files(uri: str, run_id: str, folder: str | None = None) -> set[str]:
    from mlflow import MlflowClient

    out: set[str] = set()
    for f in MlflowClient(tracking_uri=uri).list_artifacts(run_id, folder):
        out |= artifact_files(uri, run_id, f.path) if f.is_dir else {f.path}
    return out


def summary_of(uri: str, run_id: str, dst: Path) -> dict:
    from mlflow import MlflowClient

    return json.loads(Path(MlflowClient(tracking_uri=uri).download_artifacts(run_id, "mlviz/summary.json",
                                                                             str(dst))).read_text())


def assert_complete(uri: str, exp_id: str, tmp: Path, n_runs: int = N_RUNS):
    """Exactly one analysis run, FINISHED, with its fingerprint and every figure its summary lists."""
    runs = analysis_runs(uri, exp_id)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["mlviz.fingerprint"] not in ("", INCOMPLETE)
    summary = summary_of(uri, run.info.run_id, tmp)
    assert summary["fingerprint"] == run.data.tags["mlviz.fingerprint"]
    assert summary["sweep"]["n_runs"] == n_runs and run.data.metrics["mlviz.n_runs"] == n_runs
    made = set(summary["figures_made"])
    assert len(made) >= 8 and made <= artifact_files(uri, run.info.run_id), sorted(made)
    return run, summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `mlflow server` (SQLite backend, proxied artifacts) on 127.0.0.1, in its own process group."""

    def __init__(self, db: Path, artifacts: Path, log: Path):
        import requests

        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts),
               "--serve-artifacts", "--workers", "1"]
        # no job-runner processes: they are not needed here and double the start-up time
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=db.parent, env=_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(self.uri + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"mlflow server not healthy after 120 s:\n{log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the server's whole process group: it stops at once, mid-request."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- the server stops mid-upload
def _kill_on_first_upload(args: list[str], cwd: Path, artifacts: Path, server: Server) -> tuple[int, str]:
    """Run `mlviz <args>` and SIGKILL the server as soon as a new file lands in its artifact folder."""
    seen = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()} if artifacts.is_dir() else {}
    proc = _mlviz(args, cwd, _env(**FAST_HTTP))
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if artifacts.is_dir() and any(p.is_file() and seen.get(p) != p.stat().st_mtime_ns
                                      for p in artifacts.rglob("*")):
            server.kill()  # a figure has landed: the server goes away mid-upload
            break
        time.sleep(0.005)
    output, _ = proc.communicate(timeout=240)
    return proc.returncode, output


@pytest.mark.server
def test_server_killed_mid_upload_then_the_next_run_repairs(tmp_path):
    from mlviz.demo.synthetic import log_synthetic_sweep

    store = fresh_sqlite_store(tmp_path / "backend")
    artifacts, log = tmp_path / "artifacts", tmp_path / "server.log"
    server = Server(store["db"], artifacts, log)
    try:
        exp_id = log_synthetic_sweep(server.uri, EXPERIMENT, n_runs=N_RUNS, n_steps=2)
        args = ["visualize", "--tracking-uri", server.uri, "-e", EXPERIMENT, *VISUALIZE, "--quiet"]
        rc, output = _kill_on_first_upload(args, tmp_path, artifacts, server)
        if server.proc.poll() is None:  # the whole upload beat the kill: redo it (--force) and kill sooner
            assert rc == 0, output
            rc, output = _kill_on_first_upload([*args, "--force"], tmp_path, artifacts, server)
        assert server.proc.poll() is not None, f"the upload finished before the server could be killed:\n{output}"
    finally:
        server.kill()
    line = assert_one_error_line(rc, output, f"lost the tracking server at {server.uri}",
                                 "while uploading figures", "marked incomplete", "`mlviz visualize` repairs it")
    assert "ConnectionError" in line, line
    landed = [p for p in artifacts.rglob("*") if p.is_file()]
    assert landed, "nothing was uploaded before the server went away"

    again = Server(store["db"], artifacts, log)  # the same store, served again
    try:
        runs = analysis_runs(again.uri, exp_id)
        assert len(runs) == 1
        half = runs[0]
        assert half.data.tags["mlviz.fingerprint"] == INCOMPLETE  # not taken as complete
        assert half.info.status != "FINISHED"
        # (its summary.json may have landed before the kill: the incomplete tag is what says it is not done)

        up = run_cli("visualize", "--tracking-uri", again.uri, "-e", EXPERIMENT, *VISUALIZE,
                     env=FAST_HTTP)
        assert up.exit_code == 0 and "up to date" not in up.output, describe_result(up)
        run, summary = assert_complete(again.uri, exp_id, tmp_path / "dl")
        assert run.info.run_id == half.info.run_id  # repaired in place, not a second analysis run
        on_disk = {p.relative_to(artifacts).as_posix().split(f"{run.info.run_id}/artifacts/")[-1]
                   for p in artifacts.rglob("*") if p.is_file()}
        assert set(summary["figures_made"]) <= on_disk
    finally:
        again.kill()


# --------------------------------------------------------------------------- a server that never answers
class Silent:
    """A real TCP listener that accepts connections and never answers (or answers only /health)."""

    def __init__(self, health: bool):
        self.health, self.stop = health, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.uri = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        held = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                head = conn.recv(65536).decode("latin-1")
            except OSError:
                head = ""
            self.requests.append(head.split("\r\n", 1)[0])
            if self.health and head.startswith("GET /health "):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                conn.close()
            else:
                held.append(conn)  # never answered
        for conn in held:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.parametrize("health", [False, True], ids=["nothing-answers", "only-health-answers"])
def test_a_server_that_never_answers_is_one_line_and_quick(health):
    silent = Silent(health)
    try:
        started = time.monotonic()
        r = run_cli("visualize", "--tracking-uri", silent.uri, "-e", EXPERIMENT, *VISUALIZE,
                    env={**FAST_HTTP, "MLFLOW_HTTP_REQUEST_TIMEOUT": "1"})
        took = time.monotonic() - started
    finally:
        silent.close()
    output = r.output
    if health:  # MLflow's own client times out (each try 1 s, one retry), said in one line
        line = assert_one_error_line(r.exit_code, output, f"the tracking server at {silent.uri} did not answer",
                                     "MLFLOW_HTTP_REQUEST_TIMEOUT")
        assert "Timeout" in line, line
        assert any("/api/2.0/mlflow/" in q for q in silent.requests), silent.requests
        warned = [ln for ln in _lines(output) if ln.startswith("mlviz: warning: ")]
        assert len(warned) == 1 and "retrying" in warned[0], output  # MLflow's retry, said once
    else:  # mlviz's own health check when the store is opened
        assert_one_error_line(r.exit_code, output, f"cannot reach the tracking server at {silent.uri}", "Timeout")
    assert took < 30, f"took {took:.1f} s"


# --------------------------------------------------------------------------- a run deleted while analysed
@pytest.fixture
def sweep(tmp_path):
    """A 12-run synthetic sweep in a fresh SQLite store; its best run logged validation predictions."""
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from mlviz.demo.synthetic import log_synthetic_sweep

    store = fresh_sqlite_store(tmp_path / "store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(store["root"])  # the experiment's artifacts go under the store's folder
        exp_id = log_synthetic_sweep(store["uri"], EXPERIMENT, n_runs=N_RUNS, n_steps=2)
    client = MlflowClient(tracking_uri=store["uri"])
    runs = [r for r in client.search_runs([exp_id], order_by=["metrics.val_accuracy DESC"])
            if "val_accuracy" in r.data.metrics]
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 80)
    csv = tmp_path / "val_predictions.csv"
    pd.DataFrame({"label": label, "prob_1": np.clip(label * 0.6 + rng.uniform(0, 0.4, 80), 0, 1)}).to_csv(
        csv, index=False)
    client.log_artifact(runs[0].info.run_id, str(csv), "predictions")
    return {**store, "experiment_id": exp_id, "best": runs[0].info.run_id, "second": runs[1].info.run_id,
            "runs": [r.info.run_id for r in runs]}


def test_a_run_deleted_between_reading_and_logging(sweep, tmp_path):
    """Decision: an analysis is of the runs as they were read. A sweep run deleted after the read leaves a
    complete, consistent analysis of what was read (nothing half-logged); the deletion changes the sweep,
    so the next `mlviz visualize` is not "up to date" and re-analyses what is left, in the same run.
    The best run deleted before its own report is logged into it: nothing is logged into the deleted
    run, one line says so, and the sweep's analysis stands."""
    from mlflow import MlflowClient

    from mlviz.sections.sweep import RunSelection, visualize_sweep

    uri, exp_id, best = sweep["uri"], sweep["experiment_id"], sweep["best"]
    client = MlflowClient(tracking_uri=uri)
    said: list[str] = []

    def echo(text: str) -> None:  # the callback visualize_sweep reports through
        said.append(text)
        if text.startswith("analysed "):  # the sweep's analysis has been logged; the best model's is next
            client.delete_run(best)

    selection = RunSelection(tracking_uri=uri, experiment=EXPERIMENT, metric="val_accuracy")
    outcome = visualize_sweep(selection, options={"n_boot": 10, "heatmaps": False, "embedding": False}, echo=echo)
    assert client.get_run(best).info.lifecycle_stage == "deleted"
    text = "\n".join(said)
    assert f"best model: run {best}: run {best} was deleted while it was being analysed" in text, text
    assert not [p for p in artifact_files(uri, best) if p.startswith("mlviz/")]  # nothing in the deleted run
    run, summary = assert_complete(uri, exp_id, tmp_path / "dl1")  # the analysis of what was read
    assert run.info.run_id == outcome.run_id and run.data.tags["mlviz.best_run_id"] == best

    again = run_cli("visualize", "--tracking-uri", uri, "-e", EXPERIMENT, *VISUALIZE)
    assert again.exit_code == 0 and "up to date" not in again.output, describe_result(again)
    fixed, summary = assert_complete(uri, exp_id, tmp_path / "dl2", n_runs=N_RUNS - 1)
    assert fixed.info.run_id == run.info.run_id
    assert fixed.data.tags["mlviz.best_run_id"] == sweep["second"]
    assert summary["sweep"]["n_runs"] == N_RUNS - 1


def test_the_analysis_run_deleted_mid_upload_is_one_line_and_the_next_run_makes_a_new_one(sweep, tmp_path):
    """Someone deletes the analysis run while its figures are uploaded (here: between the figures and the
    tables, through the Writer's own steps): one line, and the next run makes a new, complete one."""
    from mlflow import MlflowClient

    from mlviz.errors import MlvizError
    from mlviz.sections.sweep import RunSelection, visualize_sweep
    from mlviz.store import write

    uri, exp_id = sweep["uri"], sweep["experiment_id"]
    client = MlflowClient(tracking_uri=uri)

    class DeletingWriter(write.Writer):  # a subclass, not a mock: the real MLflow calls run underneath
        def log_tables(self, run_id, tables):
            client.delete_run(run_id)  # another user, in the MLflow UI, between two steps of the upload
            super().log_tables(run_id, tables)

    selection = RunSelection(tracking_uri=uri, experiment=EXPERIMENT, metric="val_accuracy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(write, "Writer", DeletingWriter)
        with pytest.raises(MlvizError) as info:
            visualize_sweep(selection, options={"n_boot": 10, "heatmaps": False, "embedding": False},
                            echo=lambda s: None)
    message = str(info.value)
    assert "was deleted while" in message and "makes a new analysis run" in message, message
    assert "\n" not in message
    assert analysis_runs(uri, exp_id) == [] or all(
        r.info.lifecycle_stage == "deleted" for r in analysis_runs(uri, exp_id))

    again = run_cli("visualize", "--tracking-uri", uri, "-e", EXPERIMENT, *VISUALIZE)
    assert again.exit_code == 0, describe_result(again)
    live = [r for r in analysis_runs(uri, exp_id) if r.info.lifecycle_stage == "active"]
    assert len(live) == 1 and live[0].info.status == "FINISHED"
    assert live[0].data.tags["mlviz.fingerprint"] != INCOMPLETE


# --------------------------------------------------------------------------- a full temporary folder
def _limit_file_size(limit: int):
    def apply():  # in the child, before exec: every file it writes stops at `limit` bytes (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_temp_folder_is_one_line_and_leaves_the_store_as_it_was(sweep, tmp_path):
    uri, db = sweep["uri"], sweep["db"]
    before = sqlite_dump(db)
    files_before = sorted(p.relative_to(sweep["root"]) for p in Path(sweep["root"]).rglob("*") if p.is_file())
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = _mlviz(["visualize", "--tracking-uri", uri, "-e", EXPERIMENT, *VISUALIZE, "--quiet"], tmp_path,
                  _env(TMPDIR=str(temp)), preexec_fn=_limit_file_size(8 * 1024))
    output, _ = proc.communicate(timeout=300)
    line = assert_one_error_line(proc.returncode, output, "cannot write while drawing the figures", str(temp),
                                 "EFBIG", "nothing was logged")
    assert "File too large" in line, line
    assert sqlite_dump(db) == before  # not one row: no analysis run, half-logged or otherwise
    assert sorted(p.relative_to(sweep["root"]) for p in Path(sweep["root"]).rglob("*") if p.is_file()) == files_before
    assert not list(temp.iterdir()), "the temporary folder was not cleaned up"

    repaired = run_cli("visualize", "--tracking-uri", uri, "-e", EXPERIMENT, *VISUALIZE, env={"TMPDIR": str(temp)})
    assert repaired.exit_code == 0, describe_result(repaired)
    assert_complete(uri, sweep["experiment_id"], tmp_path / "dl")
    shutil.rmtree(temp, ignore_errors=True)
