"""Shared helpers for the benchmarks: a local `mlflow server`, timing, markdown tables, RESULTS.md.

Not a benchmark itself. Every benchmark writes its scratch files under bench/_work/ (git-ignored).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "_work"
RESULTS = BENCH / "RESULTS.md"


# --------------------------------------------------------------------------- machine
def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores{(' (' + cpu + ')') if cpu else ''}{mem}, {platform.system()} {platform.release()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python {platform.python_version()}"]
    for pkg in ("mlviz", "mlflow", "optuna", "numpy", "pandas", "scikit-learn"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def today() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- timing
class Timer:
    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t


def fmt_s(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


# --------------------------------------------------------------------------- markdown
def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def update_results(name: str, title: str, body: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, between its markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# Benchmark results\n\nWritten by the scripts in this folder (see README.md); each run of a script "
        "replaces its own section. Ratios compare mlviz with the named baseline measured in the same run.\n"
    )
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def load_note(start: tuple[float, float, float] | None = None) -> str:
    """The 1-minute load average (at the start and the end), to judge how busy the machine was."""
    end = os.getloadavg()[0]
    return (f"load average {start[0]:.1f} at the start, {end:.1f} at the end" if start
            else f"load average {end:.1f} at the end")


def header_lines(extra: str = "", load_start: tuple[float, float, float] | None = None) -> str:
    return (f"Measured {today()} on {machine()}; {load_note(load_start)}.  \n{versions()}."
            + (f"  \n{extra}" if extra else ""))


# --------------------------------------------------------------------------- mlflow server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log: Path, workers: int | None = None, timeout: float = 120):
    """`mlflow server` on 127.0.0.1:<free port> in its own process group; yields its URI."""
    import requests

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", backend_uri, "--artifacts-destination", str(artifacts), "--serve-artifacts"]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({proc.returncode}); see {log}")
            try:
                if requests.get(uri + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s; see {log}")
            time.sleep(0.3)
        yield uri
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass


def quiet_mlflow() -> None:
    """Silence MLflow's per-run 'View run at ...' lines and info logging while logging a big sweep."""
    import logging

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def synthetic_store(db: Path, experiment: str, n_runs: int, n_steps: int, fresh: bool = False) -> tuple[str, float]:
    """An SQLite store holding `log_synthetic_sweep(n_runs, n_steps)`; reused when already complete.

    Returns the experiment id and the seconds spent logging (0 when reused)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from mlviz.demo.synthetic import log_synthetic_sweep

    quiet_mlflow()
    uri = f"sqlite:///{db}"
    marker = db.with_suffix(f".{experiment}.{n_runs}x{n_steps}.done")
    if not fresh and db.exists() and marker.exists():
        exp = MlflowClient(uri).get_experiment_by_name(experiment)
        runs = MlflowClient(uri).search_runs(
            [exp.experiment_id], filter_string="tags.`mlviz.synthetic` = '1'", run_view_type=ViewType.ALL,
            max_results=50000,
        ) if exp else []
        if len(runs) == n_runs:
            return exp.experiment_id, 0.0
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    for p in db.parent.glob(db.stem + ".*.done"):
        p.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(db.parent)  # MLflow resolves the experiment's default artifact root (./mlruns) against the cwd
    try:
        with Timer() as t:
            exp_id = log_synthetic_sweep(uri, experiment, n_runs=n_runs, n_steps=n_steps)
    finally:
        os.chdir(cwd)
    marker.write_text(exp_id)
    return exp_id, t.seconds
