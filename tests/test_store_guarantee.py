"""The store guarantee on a store an older MLflow still uses: every command that writes refuses an
old-schema SQLite store (a copy of ../shared/stores/bank-sqlite, alembic `bf29a5ff90ea`) before it touches
it, with the message `visualize` gives; every command that only reads leaves it byte-identical.

MLflow migrates such a file in place the moment a plain `MlflowClient` opens it, after which the older
MLflow the rest of a team runs cannot open it any more: so "refused" is checked on the file's bytes
(sha256 of the database and the digest of its folder, no journal left beside it), not only on the exit code.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    assert_one_line_error,
    copy_store,
    describe_result,
    original_digest,
    run_cli,
    tree_digest,
    write_import_sources,
)

pytestmark = pytest.mark.usefixtures("clean_env")

OLD_SCHEMA = "bf29a5ff90ea"
EXPERIMENT = "bank-subscription-prediction"
BEST_RUN = "e11629b5ad0c4297aa02f8972a815f0a"  # a finished run (auc 0.9685) of that experiment
OTHER_RUN = "f2c64e293c9246fa904dd6f66bce8c9f"  # another (auc 0.9664)
REFUSAL = ("will not", "older than this MLflow", "mlflow db upgrade")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def schema_of(db: Path) -> str:
    con = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return con.execute("select version_num from alembic_version").fetchone()[0]
    finally:
        con.close()


# --------------------------------------------------------------------------- inputs a user would give


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One realistic input per importer (see conftest.write_import_sources)."""
    root = tmp_path_factory.mktemp("import-sources")
    return {**write_import_sources(root), "root": root}


@pytest.fixture
def old_store(tmp_path, monkeypatch):
    """A writable copy of bank-sqlite, checked to be the original bytes and the old schema; cwd = tmp_path
    so that anything a command creates by a relative path (./mlruns, ./mlflow.db) lands there."""
    folder = copy_store("bank-sqlite", tmp_path)
    db = folder / "mlflow.db"
    assert tree_digest(folder) == original_digest("bank-sqlite")
    assert schema_of(db) == OLD_SCHEMA
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return {"folder": folder, "db": db, "uri": f"sqlite:///{db}", "sha": sha256(db),
            "digest": tree_digest(folder), "work": work}


def assert_untouched(store) -> None:
    """The database bytes, its schema version and the folder around it (no -journal/-wal left) as before."""
    assert schema_of(store["db"]) == OLD_SCHEMA, "the store was migrated"
    assert sha256(store["db"]) == store["sha"], "the database's bytes changed"
    assert tree_digest(store["folder"]) == store["digest"]


# --------------------------------------------------------------------------- every writing command refuses

WRITING = {
    "select --tag": ["select", "-e", EXPERIMENT, "--tag"],
    "import two-stage": ["import", "two-stage", "{two_stage}"],
    "import optuna": ["import", "optuna", "sqlite:///{optuna}", "--study", "tiny"],
    "import epochs": ["import", "epochs", "{epochs}"],
    "synthetic-sweep": ["synthetic-sweep", "--runs", "3", "--steps", "2"],
    "best-model --run": ["best-model", "--run", BEST_RUN, "--n-boot", "50", "--no-heatmaps"],
    "best-model -e": ["best-model", "-e", EXPERIMENT, "--metric", "auc", "--n-boot", "50", "--no-heatmaps"],
    "heatmaps": ["heatmaps", "--run", BEST_RUN, "--samples", "2"],
    "visualize": ["visualize", "-e", EXPERIMENT, "--n-boot", "50", "--no-heatmaps"],
    "compare": ["compare", "--run", BEST_RUN, "--run", OTHER_RUN],
    "embed": ["embed", "--run", BEST_RUN, "--method", "pca"],
}


# Commands that do not refuse first today (the lead fixes them and removes the line): strict xfail.
KNOWN_FAILURES: dict[str, str] = {}


def _writing_params() -> list:
    return [pytest.param(c, id=c, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[c])]
                         if c in KNOWN_FAILURES else []) for c in WRITING]


def _fill(args: list[str], sources: dict) -> list[str]:
    return [a.format(**{k: str(v) for k, v in sources.items()}) for a in args]


@pytest.mark.parametrize("command", _writing_params())
def test_writing_command_refuses_an_old_schema_store(command, old_store, sources):
    r = run_cli(*_fill(WRITING[command], sources), "--tracking-uri", old_store["uri"])
    assert_one_line_error(r, *REFUSAL)
    assert_untouched(old_store)
    assert sorted(p.name for p in old_store["work"].iterdir()) == []  # no ./mlruns, no ./mlflow.db


@pytest.mark.parametrize("how", ["MLFLOW_TRACKING_URI", "default ./mlflow.db"])
@pytest.mark.parametrize("command", ["select --tag", "synthetic-sweep", "import epochs"])
def test_the_store_named_by_environment_or_default_is_refused_too(command, how, old_store, sources, monkeypatch):
    """`--tracking-uri` left out: the store comes from MLFLOW_TRACKING_URI, or is ./mlflow.db in the cwd."""
    store = old_store
    if how == "MLFLOW_TRACKING_URI":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    else:
        monkeypatch.chdir(store["folder"])
    r = run_cli(*_fill(WRITING[command], sources))
    assert_one_line_error(r, *REFUSAL)
    assert_untouched(store)


def test_demo_is_refused_before_it_trains(old_store):
    """`demo --quick` trains for a minute and more: refusing the store must come first, in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    started = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "mlviz.cli", "demo", "--quick", "--tracking-uri", old_store["uri"]],
                           cwd=old_store["work"], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("demo --quick on an old-schema store was still running after 60 s (it trains first)")
    seconds = time.monotonic() - started
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("mlviz: error: "), p.stderr
    assert all(f in lines[0] for f in REFUSAL), lines[0]
    assert "stage 1" not in p.stdout  # no trial started
    assert seconds < 60
    assert_untouched(old_store)


# --------------------------------------------------------------------------- reading never migrates


def test_visualize_out_reads_without_migrating(old_store, tmp_path):
    out = tmp_path / "figures"
    r = run_cli("visualize", "--tracking-uri", old_store["uri"], "-e", EXPERIMENT, "--metric", "auc",
                "--n-boot", "50", "--no-heatmaps", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    assert "analysed 12 runs of objective 'auc' (max)" in r.output
    assert (out / "mlviz" / "summary.json").is_file()
    assert_untouched(old_store)


@pytest.mark.parametrize("to_csv", [False, True], ids=["terminal", "--out csv"])
def test_select_without_tag_reads_without_migrating(old_store, tmp_path, to_csv):
    extra = ["--out", tmp_path / "picks.csv"] if to_csv else []
    r = run_cli("select", "--tracking-uri", old_store["uri"], "-e", EXPERIMENT, "--metric", "auc", *extra)
    assert r.exit_code == 0, describe_result(r)
    assert "candidates from 12 runs" in r.output
    if to_csv:
        picks = pd.read_csv(tmp_path / "picks.csv")
        assert len(picks) >= 1 and set(picks["run_id"]) <= set(pd.read_sql(
            "select run_uuid from runs", sqlite3.connect(f"{old_store['db'].as_uri()}?mode=ro", uri=True))["run_uuid"])
    assert_untouched(old_store)


READING_THAT_FAILS = {  # command: (args, a fragment of the error)
    "best-model --out": (["best-model", "--run", BEST_RUN, "--out", "{out}", "--no-heatmaps"], BEST_RUN),
    "compare --out": (["compare", "--run", BEST_RUN, "--run", OTHER_RUN, "--out", "{out}"], "no predictions"),
    "embed --out": (["embed", "--run", BEST_RUN, "--method", "pca", "--out", "{out}"], BEST_RUN),
    "explore": (["explore", "--run", BEST_RUN, "--no-browser"], BEST_RUN),
}


@pytest.mark.parametrize("command", list(READING_THAT_FAILS))
def test_reads_that_fail_do_not_migrate_either(command, old_store, tmp_path):
    """The bank runs logged no predictions, embeddings or model: one line, and still nothing migrated."""
    args, fragment = READING_THAT_FAILS[command]
    r = run_cli(*[a.replace("{out}", str(tmp_path / "out")) for a in args], "--tracking-uri", old_store["uri"])
    assert_one_line_error(r, fragment)
    assert_untouched(old_store)
