"""Shared fixtures and helpers for the mlviz test-suite.

- `synthetic_store` (session): a real SQLite MLflow store holding `log_synthetic_sweep(..., n_runs=120,
  n_steps=5)` under experiment `synthetic-sweep` (120 finished runs nested under a `stage1` parent).
- `copy_store(name, tmp_path)`: a writable copy of a folder of ../shared/stores (the originals are never
  opened); `tree_digest(path)` fingerprints a folder so a test can prove a store was not modified.
- `run_cli(*args)`: `mlviz` through click's CliRunner (result.exit_code, .output, .stdout, .stderr).
- `clean_env`: no MLFLOW_TRACKING_URI / MLFLOW_RUN_ID leaking in from the shell running the tests.

Import the plain helpers with `from conftest import copy_store, run_cli, ...` (tests/ is on sys.path).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

# shared/ lies beside the checkout (here and in CI's fresh clone); MLVIZ_SHARED overrides.
STORES = Path(os.environ.get("MLVIZ_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "stores"
SYNTHETIC_EXPERIMENT = "synthetic-sweep"
SYNTHETIC_RUNS = 120
SYNTHETIC_STEPS = 5

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


# --------------------------------------------------------------------------- helpers


def copy_store(name: str, tmp_path: Path) -> Path:
    """Copy ../shared/stores/<name> into tmp_path/<name> and return the copy.

    The originals are read-only files; the copy is made writable (as a user's own store would be), so a
    reader that writes into it is caught by comparing digests rather than hidden by a permission error."""
    src = STORES / name
    if not src.is_dir():
        pytest.skip(f"{src} is not available")
    dst = Path(tmp_path) / name
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR | (stat.S_IXUSR if p.is_dir() else 0))
    return dst


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256 of the file, or 'dir'} for everything under root (hidden entries too)."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@functools.cache
def _original_digest(name: str) -> tuple:
    return tuple(tree_digest(STORES / name).items())


def original_digest(name: str) -> dict[str, str]:
    """Digest of the original shared store folder (reading bytes only; MLflow never opens it)."""
    return dict(_original_digest(name))


def run_cli(*args, env: dict | None = None):
    """Invoke `mlviz <args>` in-process; returns click's Result (exit_code, output, stdout, stderr)."""
    from click.testing import CliRunner

    from mlviz.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)


def describe_result(result) -> str:
    exc = "" if result.exception is None or isinstance(result.exception, SystemExit) else repr(result.exception)
    return f"exit {result.exit_code}\n--- output ---\n{result.output}\n{exc}"


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 2, exactly one line on the terminal, `mlviz: error: ...`, no traceback."""
    text = result.output
    assert result.exit_code == 2, describe_result(result)
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a single line, got {len(lines)}:\n{text}"
    assert lines[0].startswith("mlviz: error: "), lines[0]
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), f"{frag!r} not in {lines[0]!r}"
    return lines[0]


def read_summary(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "mlviz" / "summary.json").read_text())


def sqlite_dump(db: Path, skip_run_ids: set[str] = frozenset()) -> dict[str, list]:
    """Every row of every table of an SQLite store (read-only connection), without the rows that belong
    to the runs in `skip_run_ids` (the analysis runs mlviz is allowed to create)."""
    con = sqlite3.connect(f"file:{Path(db).as_posix()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table' order by name")]
        out = {}
        for t in tables:
            cols = [r[1] for r in con.execute(f'pragma table_info("{t}")')]
            rows = con.execute(f'select * from "{t}"').fetchall()
            key = next((c for c in ("run_uuid", "run_id") if c in cols), None)
            if key is not None and skip_run_ids:
                i = cols.index(key)
                rows = [r for r in rows if r[i] not in skip_run_ids]
            out[t] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


def store_snapshot(uri: str) -> dict:
    """Experiments and every run that is not an mlviz analysis run, as MlflowClient reports them."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=uri)
    exps = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL, max_results=50000)
    return {
        "experiments": sorted(
            (e.experiment_id, e.name, e.lifecycle_stage, e.artifact_location, tuple(sorted(e.tags.items())))
            for e in exps
        ),
        "runs": {
            r.info.run_id: {
                "status": r.info.status,
                "lifecycle_stage": r.info.lifecycle_stage,
                "run_name": r.info.run_name,
                "start_time": r.info.start_time,
                "end_time": r.info.end_time,
                "params": dict(r.data.params),
                "metrics": dict(r.data.metrics),
                "tags": dict(r.data.tags),
            }
            for r in runs
            if not r.data.tags.get("mlviz.analysis")
        },
    }


def analysis_runs(uri: str, experiment_id: str):
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    return MlflowClient(tracking_uri=uri).search_runs(
        [experiment_id], filter_string="tags.`mlviz.analysis` = 'visualize'", run_view_type=ViewType.ALL
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one intra-op thread for a module's tests (tiny models: faster and repeatable), restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def clean_env(monkeypatch):
    """The CLI reads MLFLOW_TRACKING_URI and MLFLOW_RUN_ID; tests must not inherit them."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # mlviz sets MLFLOW_ALLOW_FILE_STORE itself when it opens a file store: start each test without it and
    # put back whatever was there afterwards
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory):
    """A real SQLite store with the 120-run synthetic sweep; read it, do not log into it (copy it first)."""
    from mlviz.demo.synthetic import log_synthetic_sweep

    root = tmp_path_factory.mktemp("synthetic-store")
    db = root / "mlflow.db"
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as mp:
        # MLflow resolves the default artifact root (./mlruns) against the cwd: keep it inside root.
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            mp.delenv(name, raising=False)
        exp_id = log_synthetic_sweep(uri, SYNTHETIC_EXPERIMENT, n_runs=SYNTHETIC_RUNS, n_steps=SYNTHETIC_STEPS)
    return {"uri": uri, "db": db, "root": root, "experiment_id": exp_id, "experiment": SYNTHETIC_EXPERIMENT,
            "n_runs": SYNTHETIC_RUNS}


@pytest.fixture
def synthetic_copy(synthetic_store, tmp_path):
    """A private copy of the synthetic SQLite store (artifacts of new runs still go to the experiment's
    absolute artifact location inside the session store's folder)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy2(synthetic_store["db"], db)
    return {**synthetic_store, "db": db, "uri": f"sqlite:///{db}", "root": db.parent}
