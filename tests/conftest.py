"""Shared fixtures and helpers for the mlviz test-suite.

- `synthetic_store` (session): a real SQLite MLflow store holding `log_synthetic_sweep(..., n_runs=120,
  n_steps=5)` under experiment `synthetic-sweep` (120 finished runs nested under a `stage1` parent).
- `demo_store` (session): ONE `run_demo(..., "multiclass", "quick", seed 0)` store, built the first time a
  test asks for it (about a minute and a half of training) and shared by every test that only reads it;
  `demo_copy` / `clone_store(store, dst)` give a test its own relocated copy (artifacts too) to log into.
- `fresh_sqlite_store(tmp_path)`: an empty, migrated SQLite store copied from a template made once per
  session (migrating a new one costs about 4 s); its Default experiment's artifacts go under tmp_path.
- `copy_store(name, tmp_path)`: a writable copy of a folder of ../shared/stores (the originals are never
  opened); `tree_digest(path)` fingerprints a folder so a test can prove a store was not modified.
- `write_import_sources(root)`: one small realistic input per importer (two-stage CSVs, an Optuna
  study, a per-epoch run folder).
- `run_cli(*args)`: `mlviz` through click's CliRunner (result.exit_code, .output, .stdout, .stderr).
- `clean_env`: no MLFLOW_TRACKING_URI / MLFLOW_RUN_ID leaking in from the shell running the tests.

Global state (cwd, environment, MLflow's process-wide tracking URI, torch's thread count and
deterministic mode) is put back after every test and every module, and a test that leaked it is named in
the terminal summary. Under `CI=true` a skipped test is a failure unless its reason is on `ALLOWED_SKIPS`.

Import the plain helpers with `from conftest import copy_store, run_cli, ...` (tests/ is on sys.path).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import tempfile
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


# --------------------------------------------------------------------------- stores made once, copied many times

_TEMPLATE: dict[str, Path] = {}


def _template_db() -> Path:
    """An empty SQLite store migrated to this MLflow's head once per session (in a temp folder removed at
    exit); the Default experiment's artifact location is rewritten in every copy."""
    if "db" not in _TEMPLATE:
        from mlflow import MlflowClient

        root = Path(tempfile.mkdtemp(prefix="mlviz-template-store-"))
        atexit.register(shutil.rmtree, root, True)
        db = root / "mlflow.db"
        cwd = os.getcwd()
        try:
            os.chdir(root)  # MLflow resolves the Default experiment's ./mlruns against the cwd
            MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        finally:
            os.chdir(cwd)
        _TEMPLATE["db"] = db
    return _TEMPLATE["db"]


def _relocate(db: Path, old_root: str, new_root: str) -> None:
    """Point a copied store's artifact locations (experiments and runs) from old_root to new_root."""
    con = sqlite3.connect(str(db))
    try:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            for prefix_old, prefix_new in ((old_root, new_root), (Path(old_root).as_uri(), Path(new_root).as_uri())):
                con.execute(f"update {table} set {column} = ? || substr({column}, ?) where {column} like ? || '%'",
                            (prefix_new, len(prefix_old) + 1, prefix_old))
        con.commit()
    finally:
        con.close()


def fresh_sqlite_store(tmp_path: Path, name: str = "mlflow.db") -> dict:
    """A new, empty, migrated SQLite store in tmp_path (a copy of the session's template: milliseconds
    instead of about 4 s of migrations). Its Default experiment keeps artifacts in tmp_path/mlruns/0;
    create experiments with an artifact_location inside tmp_path (or chdir there) for the rest."""
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    template = _template_db()
    db = tmp_path / name
    shutil.copy2(template, db)
    _relocate(db, str(template.parent), str(tmp_path))
    return {"uri": f"sqlite:///{db}", "db": db, "root": tmp_path}


def clone_store(store: dict, dst: Path) -> dict:
    """A private copy of a store fixture (its folder: database and artifacts) at dst, with every artifact
    location pointing into the copy, so a test can log into it without touching the shared one."""
    src_root, dst = Path(store["root"]), Path(dst)
    shutil.copytree(src_root, dst, symlinks=True)
    db = dst / Path(store["db"]).relative_to(src_root)
    _relocate(db, str(src_root), str(dst))
    return {**store, "root": dst, "db": db, "uri": f"sqlite:///{db}"}


DEMO_EXPERIMENT = "mlviz-demo-multiclass"


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """ONE quick multiclass demo (seed 0) for the whole session, built when a test first asks for it:
    a real two-stage sweep with predictions, images, a state dict and an MLflow model in its best run.
    Read it only; log into `demo_copy` instead."""
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    from mlviz.demo.sweep import run_demo

    root = tmp_path_factory.mktemp("demo-store")
    db = root / "mlflow.db"
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp, _restored_global_state():
        mp.chdir(root)  # artifacts go to root/mlruns
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            mp.delenv(name, raising=False)
        outcome = run_demo(f"sqlite:///{db}", None, "multiclass", "quick", 0, False,
                           echo=lambda *a: lines.append(" ".join(map(str, a))))
    return {"uri": f"sqlite:///{db}", "db": db, "root": root, "experiment": outcome.experiment,
            "outcome": outcome, "log": lines}


@pytest.fixture
def demo_copy(demo_store, tmp_path):
    """A private, relocated copy of the session's demo store (logging into it changes nothing shared)."""
    return clone_store(demo_store, tmp_path / "demo-store")


# --------------------------------------------------------------------------- inputs for the importers


def write_import_sources(root: Path) -> dict[str, Path]:
    """Small realistic inputs, one per importer, under root: `two_stage` (seed 002's CSV layout with a
    stage-2 table and histories), `optuna` (an SQLite study `tiny`: 4 trials, one pruned, intermediate
    values) and `epochs` (seed 000's metrics_epoch.csv + val_predictions.csv)."""
    import numpy as np
    import pandas as pd

    root = Path(root)
    rng = np.random.default_rng(3)
    two_stage = root / "two-stage-sweep"
    two_stage.mkdir(parents=True)
    quick = pd.DataFrame({"combination_id": [7, 10, 13, 16], "masking_ratio": [0.4, 0.7, 0.4, 0.7],
                          "margin_type": ["hinge", "softplus", "hinge", "dynamic"],
                          "roc_auc": rng.uniform(0.6, 0.9, 4), "f1_score": rng.uniform(0.4, 0.8, 4)})
    quick.to_csv(two_stage / "quick_search_results.csv", index=False)
    full = quick.iloc[:2][["combination_id", "masking_ratio", "margin_type"]].assign(
        stage2_rank=[1, 2], selection_criterion=["overall_roc_auc", "margin_type=hinge"],
        roc_auc=[0.91, 0.88], quick_roc_auc=quick["roc_auc"].iloc[:2].to_numpy())
    full.to_csv(two_stage / "full_search_results.csv", index=False)
    (two_stage / "training_histories.json").write_text(
        '{"7": {"val_loss": [0.9, 0.6, 0.5]}, "10": {"val_loss": [0.8, 0.7, 0.65]}}')

    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna_db = root / "optuna.db"
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{optuna_db}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        x = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for step in range(3):
            trial.report(x * (step + 1), step)
        if trial.number == 2:
            raise optuna.TrialPruned()
        return float(np.log10(x))

    study.optimize(objective, n_trials=4)
    del study

    epochs = root / "csn_16frames_test"
    epochs.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.9, 0.7, 0.6], "val_loss": [1.0, 0.8, 0.75],
                  "val_f1": [0.5, 0.6, 0.64]}).to_csv(epochs / "metrics_epoch.csv", index=False)
    pd.DataFrame({"label": rng.integers(0, 2, 20), "prob_header": rng.uniform(0, 1, 20)}).to_csv(
        epochs / "val_predictions.csv", index=False)
    return {"two_stage": two_stage, "optuna": optuna_db, "epochs": epochs}


# --------------------------------------------------------------------------- global state put back

_ENV_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
             "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MPLBACKEND")
_LEAKS: list[str] = []


def _global_state() -> dict:
    """What a test can change for the tests after it. Torch is looked at only when already imported."""
    state = {"cwd": os.getcwd(), "env": {k: os.environ.get(k) for k in _ENV_KEYS}}
    mlflow_utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if mlflow_utils is not None and hasattr(mlflow_utils, "is_tracking_uri_set"):
        state["tracking_uri"] = mlflow_utils.get_tracking_uri() if mlflow_utils.is_tracking_uri_set() else None
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        state["torch_threads"] = torch.get_num_threads()
        state["torch_deterministic"] = torch.are_deterministic_algorithms_enabled()
    return state


def _restore(before: dict) -> list[str]:
    """Put back what changed; returns what did."""
    now, changed = _global_state(), []
    if now["cwd"] != before["cwd"]:
        changed.append(f"cwd {before['cwd']} → {now['cwd']}")
        with _suppress_oserror():
            os.chdir(before["cwd"])
    for key, value in before["env"].items():
        if now["env"][key] != value:
            changed.append(f"${key}")
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if "tracking_uri" in now and now["tracking_uri"] != before.get("tracking_uri"):
        changed.append("mlflow tracking URI")
        import mlflow

        mlflow.set_tracking_uri(before.get("tracking_uri"))
    torch = sys.modules.get("torch")
    if "torch_threads" in now and "torch_threads" in before and now["torch_threads"] != before["torch_threads"]:
        changed.append(f"torch threads {before['torch_threads']} → {now['torch_threads']}")
        torch.set_num_threads(before["torch_threads"])
    if "torch_deterministic" in now and now["torch_deterministic"] != before.get("torch_deterministic", False):
        changed.append("torch deterministic algorithms")
        torch.use_deterministic_algorithms(before.get("torch_deterministic", False))
    return changed


class _suppress_oserror:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError)


class _restored_global_state:
    """Context manager for fixtures that must change global state while they build something."""

    def __enter__(self):
        self.before = _global_state()
        return self

    def __exit__(self, *exc):
        _restore(self.before)
        return False


@pytest.fixture(autouse=True, scope="module")
def _module_global_state(request):
    """Module-scoped fixtures (a store built with chdir, torch.set_num_threads for a module) put back."""
    before = _global_state()
    yield
    changed = _restore(before)
    if changed:
        _LEAKS.append(f"{request.node.nodeid}: " + ", ".join(changed))


@pytest.fixture(autouse=True)
def _test_global_state(request):
    before = _global_state()
    yield
    changed = _restore(before)
    if changed:
        _LEAKS.append(f"{request.node.nodeid}: " + ", ".join(changed))


# --------------------------------------------------------------------------- skips are failures under CI

# A skip is allowed in CI only for a reason on this list (a regex on the skip's reason) and why.
ALLOWED_SKIPS: dict[str, str] = {
    r"\b(needs|requires) (a |an )?(CUDA|GPU)\b": "CI runners have no GPU; GPU-only checks run on the device machine",
}
_DISALLOWED: list[str] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _skip_allowed(reason: str) -> bool:
    return any(re.search(pattern, reason, re.IGNORECASE) for pattern in ALLOWED_SKIPS)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test (importorskip, a missing shared store, skipif) is reported as failed,
    unless its reason is on ALLOWED_SKIPS; xfail is not a skip."""
    report = yield
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not _skip_allowed(reason):
            report.outcome = "failed"
            report.longrepr = (f"skipped under CI=true, which is a failure unless the reason is on "
                               f"tests/conftest.py ALLOWED_SKIPS: {reason}")
            _DISALLOWED.append(f"{report.nodeid}: {reason}")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped at import (module-level importorskip): counted, and the session fails."""
    report = yield
    if _in_ci() and report.skipped:
        reason = _skip_reason(report)
        if not _skip_allowed(reason):
            _DISALLOWED.append(f"{report.nodeid} (whole module): {reason}")
    return report


def pytest_sessionfinish(session, exitstatus):
    if _DISALLOWED and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _DISALLOWED:
        terminalreporter.section("skips not allowed under CI=true", sep="=", red=True)
        for line in _DISALLOWED:
            terminalreporter.line(line)
        terminalreporter.line("install the [dev] extra and ../shared/stores, or add the reason with why to "
                              "ALLOWED_SKIPS in tests/conftest.py")
    if _LEAKS:
        terminalreporter.section("global state changed and put back (fix the test or fixture)", sep="-")
        for line in _LEAKS:
            terminalreporter.line(line)


# --------------------------------------------------------------------------- a real browser
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def headless_chromium(window: str):
    """A headless Debian Chromium driven by selenium (skips when it is not installed; CI installs it).
    The caller quits it."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--window-size={window}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver
