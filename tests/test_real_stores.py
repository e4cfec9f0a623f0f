"""`mlviz visualize --out` on the real stores of /work/shared/stores (see PROVENANCE.md), each copied to a
temporary folder first; afterwards the copy must be byte-identical to the original: reading never writes.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
import types
from pathlib import Path

import pytest
from conftest import (
    assert_one_line_error,
    copy_store,
    describe_result,
    original_digest,
    read_summary,
    run_cli,
    tree_digest,
)

pytestmark = pytest.mark.usefixtures("clean_env")


def _temp_copies() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "mlviz-store-*")))


def _analyse(tmp_path_factory, store_name, uri_of, experiment, *extra):
    """Copy the store, run `visualize --out`, return what a test needs (digests before and after)."""
    root = tmp_path_factory.mktemp(store_name)
    store = copy_store(store_name, root)
    assert tree_digest(store) == original_digest(store_name)
    out = root / "out"
    temps = _temp_copies()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        # mlviz must open legacy file stores without the user setting MLFLOW_ALLOW_FILE_STORE
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
        mp.delenv("MLFLOW_ALLOW_FILE_STORE")
        result = run_cli("visualize", "--tracking-uri", uri_of(store), "-e", experiment, "--out", out,
                         "--n-boot", "50", *extra)
    return types.SimpleNamespace(store=store, out=out, result=result, name=store_name,
                                 summary=read_summary(out) if result.exit_code == 0 else None,
                                 digest_after=tree_digest(store), temps_left=_temp_copies() - temps)


def _skips(summary):
    return {s["figure"]: s["reason"] for s in summary["figures_skipped"] if s["section"] == "stage1"}


def _made(summary):
    return {Path(f).stem for f in summary["figures_made"]}


def _assert_unchanged(a):
    assert a.digest_after == original_digest(a.name), "reading modified the store"


# --------------------------------------------------------------------------- bank-sqlite (old schema SQLite)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return _analyse(tmp_path_factory, "bank-sqlite", lambda s: f"sqlite:///{s / 'mlflow.db'}", "1")


def test_bank_sqlite_runs_and_exclusions(bank):
    assert bank.result.exit_code == 0, describe_result(bank.result)
    sweep = bank.summary["sweep"]
    assert sweep["n_runs"] == 12
    assert sweep["excluded"]["by_reason"] == {"deleted": 77} and sweep["excluded"]["count"] == 77
    assert sweep["n_runs"] + sweep["excluded"]["count"] == 89  # every run of experiment 1 accounted for
    assert sweep["objective"] == "auc" and sweep["mode"] == "max"
    assert "objective chosen automatically: 'auc'" in " ".join(sweep["notes"])
    assert "runs left out: 77 deleted" in bank.result.output
    lr = sweep["params"]["best_learning_rate"]
    assert lr["kind"] == "float" and not lr["fixed"] and lr["n_missing"] == 1
    assert sweep["params"]["model_type"]["kind"] == "categorical"
    assert bank.summary["selection"]["experiment_name"] == "bank-subscription-prediction"


def test_bank_sqlite_figures(bank):
    made = _made(bank.summary)
    assert {"parameter_importance", "heatmaps_auc", "parallel_coordinates", "top_k_comparison",
            "model_type_comparison_auc", "optimization_history", "stage1_summary_dashboard"} <= made
    for f in bank.summary["figures_made"]:
        png = bank.out / f
        assert png.read_bytes()[:4] == b"\x89PNG" and png.with_suffix(".json").is_file(), f


def test_bank_sqlite_is_read_from_a_temporary_copy_and_left_alone(bank):
    _assert_unchanged(bank)
    assert sorted(p.name for p in bank.store.iterdir()) == ["mlflow.db", "optuna.db"]  # no journal, no WAL
    assert bank.temps_left == set(), "the temporary migrated copy was not removed"


# --------------------------------------------------------------------------- random-search (legacy file store)


@pytest.fixture(scope="module")
def random_search(tmp_path_factory):
    # experiment 18: 50 active finished runs with accuracy/loss ("Busqueda Hiperparametros -Modelo2")
    return _analyse(tmp_path_factory, "random-search", lambda s: str(s / "mlruns"), "18")


def test_random_search_typing(random_search):
    r = random_search
    assert r.result.exit_code == 0, describe_result(r.result)
    sweep = r.summary["sweep"]
    assert sweep["n_runs"] == 50 and sweep["excluded"]["count"] == 0
    assert sweep["objective"] == "accuracy" and sweep["mode"] == "max"
    params = sweep["params"]
    lr = params["learning_rate"]
    assert lr["kind"] == "float" and lr["n_unique"] == 36 and lr["n_missing"] == 0
    assert lr["values"][0] == 0.0001 and lr["values"][-1] == 0.001
    # One decade only, and 13 of the 50 values sit exactly on the 1e-4 floor: the values are crowded at the
    # bottom even on a log axis, so a linear axis is as reasonable as a log one; mlviz picks linear
    # (log needs two decades or powers of 2/10).
    assert lr["log_scale"] is False
    for name in ("epochs", "hidden_layer_1", "hidden_layer_2", "hidden_layer_3"):
        assert params[name]["kind"] == "int" and not params[name]["fixed"], name
    assert params["dropout_1"]["kind"] == "float"
    assert sweep["fixed_params"] == {"batch_size": 32}


def test_random_search_figures(random_search):
    r = random_search
    assert _made(r.summary) == {"parameter_importance", "heatmaps_accuracy", "parallel_coordinates",
                                "parameter_effects", "top_k_comparison", "metric_distributions",
                                "metric_correlations", "optimization_history", "stage1_summary_dashboard"}
    assert _skips(r.summary) == {"param_comparison": "no varied categorical or boolean parameter"}
    imp = json.loads((r.out / "mlviz" / "stage1" / "parameter_importance.json").read_text())
    assert imp["n_runs"] == 50 and set(imp["params"]) == {"learning_rate", "epochs", "dropout_1", "hidden_layer_1",
                                                          "hidden_layer_2", "hidden_layer_3"}


def test_random_search_store_unchanged(random_search):
    _assert_unchanged(random_search)
    assert not (random_search.store / "mlruns" / ".trash").exists()


def test_random_search_logging_is_refused_for_a_foreign_artifact_location(tmp_path):
    """The experiments' artifact_location is /home/fidel/...: nothing may be created there or in the store."""
    store = copy_store("random-search", tmp_path)
    home = Path("/home/fidel")
    existed = home.exists()
    r = run_cli("visualize", "--tracking-uri", store / "mlruns", "-e", "15", "--n-boot", "50")
    assert_one_line_error(r, "artifact location", "does not exist on this machine", "--out")
    assert tree_digest(store) == original_digest("random-search")
    assert home.exists() == existed


def test_reading_the_same_file_store_twice_in_one_process(tmp_path):
    from mlviz.sections.sweep import load_sweep

    store = copy_store("nested-tutorial", tmp_path) / "mlruns"
    first = load_sweep(str(store), "896296360431059581")
    second = load_sweep(str(store), "896296360431059581")  # e.g. a notebook cell run twice
    assert len(first.runs) == len(second.runs) == 2


# --------------------------------------------------------------------------- nested-tutorial (legacy file store)


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    return _analyse(tmp_path_factory, "nested-tutorial", lambda s: (s / "mlruns").as_uri(), "896296360431059581")


def test_nested_tutorial_finishes_with_skips_recorded(nested):
    assert nested.result.exit_code == 0, describe_result(nested.result)
    sweep = nested.summary["sweep"]
    assert sweep["n_runs"] == 2 and sweep["objective"] == "training_accuracy_score"
    assert sweep["excluded"]["by_reason"] == {"deleted": 22, "failed": 1, "objective missing": 15}
    run_dirs = [p for p in (nested.store / "mlruns" / "896296360431059581").iterdir()
                if re.fullmatch(r"[0-9a-f]{32}", p.name)]
    assert sweep["n_runs"] + sweep["excluded"]["count"] == len(run_dirs) == 40
    skips = _skips(nested.summary)
    for fig in ("parameter_importance", "heatmaps", "parallel_coordinates", "parameter_effects"):
        assert "varied parameter" in skips[fig] and "found 0" in skips[fig], fig
    assert "two varying metrics" in skips["metric_correlations"]
    assert _made(nested.summary) == {"top_k_comparison", "metric_distributions", "optimization_history",
                                     "stage1_summary_dashboard"}
    html = (nested.out / "mlviz" / "index.html").read_text()
    assert "parameter importance needs 1 varied parameter" in html


def test_nested_tutorial_store_unchanged(nested):
    _assert_unchanged(nested)


def test_nested_tutorial_runs_without_metrics_is_a_clean_error(tmp_path):
    """Experiment 0 nests runs three levels deep but logged no metric at all."""
    store = copy_store("nested-tutorial", tmp_path)
    r = run_cli("visualize", "--tracking-uri", store / "mlruns", "-e", "0", "--out", tmp_path / "out")
    assert_one_line_error(r, "logged a metric")
    assert tree_digest(store) == original_digest("nested-tutorial")
    assert not (tmp_path / "out").exists()


def test_unreadable_run_folders_are_counted_with_their_reason(tmp_path):
    """A file store with a run folder whose meta.yaml is gone and one whose meta.yaml is garbage (as a
    half-copied or hand-edited mlruns has): both are left out and counted, the rest analysed (MLflow alone
    fails the whole search on the garbage one)."""
    from mlviz.sections.sweep import load_sweep

    store = copy_store("nested-tutorial", tmp_path) / "mlruns"
    exp = store / "896296360431059581"
    (exp / ("a" * 32)).mkdir()
    (exp / ("a" * 32) / "params").mkdir()
    (exp / ("b" * 32)).mkdir()
    (exp / ("b" * 32) / "meta.yaml").write_text("{this is: [not, valid yaml\n")
    before = tree_digest(store)
    sweep = load_sweep(str(store), "896296360431059581")
    assert tree_digest(store) == before
    reasons = {e.run_id: e.reason for e in sweep.excluded if e.reason.startswith("unreadable")}
    assert reasons == {"a" * 32: "unreadable: meta.yaml missing", "b" * 32: "unreadable: meta.yaml invalid"}
    assert sweep.exclusion_counts()["unreadable"] == 2 and len(sweep.runs) == 2
    r = run_cli("visualize", "--tracking-uri", str(store), "-e", "896296360431059581")  # logging is refused
    assert_one_line_error(r, "unreadable meta.yaml", "--out")
    assert tree_digest(store) == before
