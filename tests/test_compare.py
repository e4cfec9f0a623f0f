"""`mlviz compare`: runs and sweeps side by side.

Pure part (fast, scikit-learn's digits): paired vs unpaired bootstrap, a run against itself, tasks that
cannot be compared. End to end (slow): one multi-class and one binary quick demo sweep in one SQLite
store, `mlviz best-model` on candidates, then `mlviz compare` on them: its numbers equal the `mlviz.*`
metrics best-model logged, a run against itself reads "no difference", runs of another task or without
predictions are compared where they can be and the rest skipped with reasons, a bad run id is one line
and exit code 2 with the store unchanged, `--out` logs nothing; and two sweeps compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, clone_store, describe_result, run_cli, sqlite_dump

from mlviz.analysis.compare import RunInput, compare_pair, compare_runs, metric_draws
from mlviz.analysis.predictions import predictions_from_frame
from mlviz.figures.model import headline_metrics

pytestmark = pytest.mark.usefixtures("clean_env")
METRICS = ("auc", "ap", "ece", "brier", "nll", "accuracy")


def _register():
    """`mlviz compare` through the real CLI group (the lead registers it in cli.py; harmless when done)."""
    from mlviz.cli import main
    from mlviz.commands.compare import compare

    if "compare" not in main.commands:
        main.add_command(compare)


# --------------------------------------------------------------------------- pure: digits predictions
def _digits(c: float, binary: bool = False, ids: bool = True, split_seed: int = 0) -> pd.DataFrame:
    """Real predictions: a logistic regression on scikit-learn's digits, validation 30%."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    idx = np.arange(len(y))
    xtr, xva, ytr, yva, _, iva = train_test_split(x / 16.0, y, idx, test_size=0.3, random_state=split_seed,
                                                  stratify=y)
    if binary:
        ytr, yva = (ytr == 3).astype(int), (yva == 3).astype(int)
    probs = LogisticRegression(C=c, max_iter=300).fit(xtr, ytr).predict_proba(xva)
    frame = pd.DataFrame({"sample_id": iva} if ids else {})
    frame["label"] = yva
    if binary:
        frame["score"] = probs[:, 1]
    else:
        for k in range(probs.shape[1]):
            frame[f"prob_{k}"] = probs[:, k]
    return frame


@pytest.fixture(scope="module")
def digits():
    good, weak = _digits(1.0), _digits(0.05)
    return {"good": predictions_from_frame(good), "weak": predictions_from_frame(weak),
            "shuffled_weak": predictions_from_frame(weak.sample(frac=1.0, random_state=3)),
            "weak_no_ids": predictions_from_frame(_digits(0.05, ids=False)),
            "binary": predictions_from_frame(_digits(1.0, binary=True)),
            "other_split": predictions_from_frame(_digits(0.05, split_seed=1))}


def test_paired_bootstrap_matches_by_sample_id_and_is_tighter_than_unpaired(digits):
    good = digits["good"]
    paired = {r["metric"]: r for r in compare_pair(digits["shuffled_weak"], good, headline=headline_metrics,
                                                     n_boot=400)}
    unpaired = {r["metric"]: r for r in compare_pair(digits["weak_no_ids"], good, headline=headline_metrics,
                                                       n_boot=400)}
    assert set(paired) == set(METRICS)
    for m in METRICS:
        p, u = paired[m], unpaired[m]
        assert p["test"] == "paired bootstrap" and p["n_matched"] == good.n == 540
        assert u["test"] == "unpaired bootstrap" and u["n_matched"] == 0
        assert "no sample id" in u["note"]
        # rows matched by id: the shuffled table gives the same point difference as the unshuffled one
        assert p["diff"] == pytest.approx(u["diff"], abs=1e-12)
        assert p["low"] <= p["diff"] <= p["high"]
    # the same samples cancel out: for AUC and accuracy the paired interval is narrower
    for m in ("auc", "accuracy"):
        assert paired[m]["high"] - paired[m]["low"] < unpaired[m]["high"] - unpaired[m]["low"]
    assert paired["ece"]["significant"] and paired["ece"]["verdict"].startswith("worse")


def test_paired_draws_are_the_same_resamples(digits):
    """Same seed and the same rows: each resample picks the same samples for both runs, so a run against
    itself differs by exactly 0 in every resample."""
    a = metric_draws(digits["good"], 200, seed=5)
    b = metric_draws(digits["good"], 200, seed=5)
    for m in METRICS:
        assert len(a[m]) == 200 and np.array_equal(a[m], b[m])


def test_unshared_samples_and_disagreeing_labels_fall_back_to_unpaired(digits):
    rows = compare_pair(digits["other_split"], digits["good"], headline=headline_metrics, n_boot=100)
    assert {r["test"] for r in rows} == {"unpaired bootstrap"}
    note = rows[0]["note"]
    shared = int(note.split("only ")[1].split(" ")[0])
    assert shared < 270 and "540 and 540 samples" in note


def test_without_sample_ids_rows_pair_by_position_only_when_the_labels_agree(digits):
    good = predictions_from_frame(_digits(1.0, ids=False))
    rows = compare_pair(digits["weak_no_ids"], good, headline=headline_metrics, n_boot=100)
    assert {r["test"] for r in rows} == {"paired bootstrap"} and {r["n_matched"] for r in rows} == {540}
    assert "row order" in rows[0]["note"]
    shuffled = predictions_from_frame(_digits(0.05, ids=False).sample(frac=1.0, random_state=1))
    rows = compare_pair(shuffled, good, headline=headline_metrics, n_boot=100)
    assert {r["test"] for r in rows} == {"unpaired bootstrap"}


def test_compare_runs_groups_tasks_and_reads_no_difference_against_itself(digits):
    inputs = [RunInput("a" * 32, "good", digits["good"]), RunInput("b" * 32, "weak", digits["weak"]),
              RunInput("a" * 32, "good", digits["good"]), RunInput("c" * 32, "bin", digits["binary"])]
    res = compare_runs(inputs, headline=headline_metrics, n_boot=200)
    assert [g["runs"] for g in res.groups] == [["good", "weak", "good (again)"], ["bin"]]
    assert res.groups[0]["reference"] == "good"  # the best AUC
    d = res.metrics.differences
    again = d[d["run"] == "good (again)"]
    assert len(again) == len(METRICS)
    assert (again["diff"] == 0).all() and (again["low"] == 0).all() and (again["high"] == 0).all()
    assert set(again["verdict"]) == {"no difference"} and not again["significant"].any()
    assert set(again["test"]) == {"paired bootstrap"}
    skipped = {(s["run"], s["figure"]): s["reason"] for s in res.skipped}
    assert "different task" in skipped[("bin", "differences")]
    # every number is best-model's own, run by run
    for lab, preds in (("good", digits["good"]), ("weak", digits["weak"]), ("bin", digits["binary"])):
        own = _best_model_numbers(preds)
        row = res.metrics.runs.set_index("run").loc[lab]
        for m in METRICS:
            assert row[m] == pytest.approx(own[f"mlviz.{m}"], abs=1e-12)
    legend = res.roc.legend.set_index("run")
    assert legend.loc["bin", "what"] == "AUC" and legend.loc["good", "what"] == "macro AUC"
    assert legend.loc["bin", "n_pos"] == int(digits["binary"].y_true.sum())


def _best_model_numbers(preds):
    from mlviz.figures.model import analyse_predictions

    return analyse_predictions(preds, options={"n_boot": 0})[4]


# --------------------------------------------------------------------------- end to end on two demo sweeps
BUILD = """
import sys
from mlviz.demo.sweep import run_demo
run_demo(sys.argv[1], "cmp-binary", "binary", "quick", 1, replace=False, echo=print)
"""
MULTICLASS = "mlviz-demo-multiclass"  # the session's demo store (conftest.demo_store), copied
BINARY = "cmp-binary"


@pytest.fixture(scope="module")
def demo(demo_store, tmp_path_factory):
    """A copy of the session's multi-class quick demo with a binary quick demo added to it (about a minute and a
    half on 2 cores), then best-model on two multi-class candidates and one binary candidate."""
    from mlflow import MlflowClient

    copy = clone_store(demo_store, tmp_path_factory.mktemp("compare") / "store")
    root, db, uri = copy["root"], copy["db"], copy["uri"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    done = subprocess.run([sys.executable, "-c", BUILD, uri], cwd=root, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = MlflowClient(uri)
    out = {"uri": uri, "db": db, "root": root, "client": client}
    for task, name in (("multiclass", MULTICLASS), ("binary", BINARY)):
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`mlviz.stage` = '2'", max_results=1000)
        cands = sorted((r for r in runs if r.info.run_name.startswith("cand")), key=lambda r: r.info.run_name)
        out[task] = {"exp": exp, "candidates": cands}
        if task == "multiclass":
            stage1 = client.search_runs([exp.experiment_id], filter_string="tags.`mlviz.stage` = '1'",
                                        max_results=1000)
            out["trial"] = next(r for r in stage1 if r.info.run_name.startswith("trial"))
    # best-model on the runs to compare, so their numbers are logged (heatmaps left out: not compared)
    a, b = out["multiclass"]["candidates"][0], out["multiclass"]["candidates"][2]
    binary = out["binary"]["candidates"][0]
    for r in (a, b, binary):
        res = run_cli("best-model", "--run", r.info.run_id, "--tracking-uri", uri, "--n-boot", "20", "--no-heatmaps")
        assert res.exit_code == 0, describe_result(res)
    out["a"], out["b"], out["bin"] = (client.get_run(r.info.run_id) for r in (a, b, binary))
    _register()
    return out


def _ids(demo, *names):
    return [demo[n].info.run_id for n in names]


@pytest.mark.slow
def test_compare_runs_logs_numbers_equal_to_best_model_and_skips_what_it_cannot_compare(demo, tmp_path):
    uri, client = demo["uri"], demo["client"]
    a, b, binary, trial = _ids(demo, "a", "b", "bin", "trial")
    before = sqlite_dump(demo["db"])
    res = run_cli("compare", "--run", a, "--run", b, "--run", binary, "--run", trial, "--tracking-uri", uri,
                  "--n-boot", "200")
    assert res.exit_code == 0, describe_result(res)
    exp_id = demo["multiclass"]["exp"].experiment_id
    found = client.search_runs([exp_id], filter_string="tags.`mlviz.analysis` = 'compare'")
    assert len(found) == 1
    run = found[0]
    assert run.info.run_name == "mlviz-compare" and run.info.status == "FINISHED"
    assert run.data.tags["mlviz.compared_runs"] == ",".join([a, b, binary])
    assert run.data.metrics["mlviz.compare.n_runs"] == 3 and run.data.metrics["mlviz.compare.n_skipped_runs"] == 1
    # the compared runs and everything else are as they were (the experiment's own tags aside: mlviz marks
    # an experiment it logs into as model training)
    after = sqlite_dump(demo["db"], skip_run_ids={run.info.run_id})
    assert {k: v for k, v in after.items() if k != "experiment_tags"} == \
           {k: v for k, v in before.items() if k != "experiment_tags"}

    folder = Path(client.download_artifacts(run.info.run_id, "mlviz", str(tmp_path)))
    for name in ("roc_curves", "precision_recall_curves", "calibration_curves", "metrics_table", "learning_curves"):
        assert (folder / "compare" / f"{name}.png").stat().st_size > 10_000, name
    table = pd.read_csv(folder / "compare" / "metrics_table.csv")
    for rid, rec in ((a, demo["a"]), (b, demo["b"]), (binary, demo["bin"])):
        rows = table[table["run_id"] == rid].set_index("metric")
        for m in METRICS:
            assert rows.loc[m, "value"] == pytest.approx(rec.data.metrics[f"mlviz.{m}"], abs=1e-9), (rid, m)
            assert rows.loc[m, "low"] <= rows.loc[m, "value"] <= rows.loc[m, "high"]
        assert rows.loc["auc", "n"] == rec.data.metrics["mlviz.n_samples"]
    # the two multi-class candidates: paired on the same 540 validation samples
    diff = table[(table["run_id"] != table["reference_run_id"]) & table["diff"].notna()]
    assert set(diff["test"]) == {"paired bootstrap"} and set(diff["n_matched"]) == {540}
    assert set(diff["run_id"]) | set(diff["reference_run_id"]) == {a, b}
    auc = diff[diff["metric"] == "auc"].iloc[0]
    ref_auc = table[(table["run_id"] == auc["reference_run_id"]) & (table["metric"] == "auc")]["value"].iloc[0]
    assert auc["diff"] == pytest.approx(auc["value"] - ref_auc, abs=1e-12)
    assert auc["larger_than_noise"] == (auc["diff_low"] > 0 or auc["diff_high"] < 0)

    summary = json.loads((folder / "summary.json").read_text())
    skipped = {s["figure"]: s["reason"] for s in summary["figures_skipped"]}
    assert "logged no predictions artifact" in skipped[f"run {demo['trial'].info.run_name}"]
    # the binary candidate shares its name with a multi-class one, so its label carries its id's start
    why = skipped[f"differences of run {demo['bin'].info.run_name} ({binary[:8]})"]
    assert "no other binary" in why and "multi-class" in why and "different task" in why
    roc = json.loads((folder / "compare" / "roc_curves.json").read_text())
    panels = {p["title"] for p in roc["panels"]}
    assert panels == {"multi-class (10 classes)", "binary (3 vs rest)"}
    legend = {r["run_id"]: r for r in roc["legend"]}
    assert legend[binary]["value"] == pytest.approx(demo["bin"].data.metrics["mlviz.auc"], abs=1e-9)
    html = (folder / "index.html").read_text()
    assert all(rid in html for rid in (a, b, binary))
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "mlviz/tables/compare_metrics.json",
                                                       str(tmp_path / "t"))).read_text())
    assert len(logged["data"]) == len(table)

    again = run_cli("compare", "--run", a, "--run", b, "--run", binary, "--run", trial, "--tracking-uri", uri,
                    "--n-boot", "200")
    assert again.exit_code == 0 and "up to date" in again.output
    assert len(client.search_runs([exp_id], filter_string="tags.`mlviz.analysis` = 'compare'")) == 1


@pytest.mark.slow
def test_run_against_itself_reads_no_difference_and_out_logs_nothing(demo, tmp_path):
    a, b = _ids(demo, "a", "b")
    before = sqlite_dump(demo["db"])
    res = run_cli("compare", "--run", a, "--run", a, "--run", b, "--reference", a, "--tracking-uri", demo["uri"],
                  "--n-boot", "100", "--out", tmp_path)
    assert res.exit_code == 0, describe_result(res)
    assert sqlite_dump(demo["db"]) == before
    folder = tmp_path / "mlviz" / "compare"
    table = pd.read_csv(folder / "metrics_table.csv")
    name = demo["a"].info.run_name
    itself = table[table["run"] == f"{name} (again)"]
    assert len(itself) == len(METRICS)
    assert (itself["diff"] == 0).all() and (itself["diff_low"] == 0).all() and (itself["diff_high"] == 0).all()
    assert set(itself["verdict"]) == {"no difference"} and not itself["larger_than_noise"].any()
    assert set(itself["test"]) == {"paired bootstrap"} and set(itself["n_matched"]) == {540}
    curves = json.loads((folder / "learning_curves.json").read_text())
    assert "val_loss" in curves["keys"]
    lines = pd.DataFrame(curves["curves"])
    own = demo["client"].get_metric_history(b, "val_loss")
    mine = lines[(lines["line"] == demo["b"].info.run_name) & (lines["key"] == "val_loss")].sort_values("step")
    assert mine["mean"].tolist() == pytest.approx([m.value for m in sorted(own, key=lambda m: m.step)])
    for name in ("roc_curves", "precision_recall_curves", "calibration_curves", "metrics_table", "learning_curves"):
        assert (folder / f"{name}.png").is_file() and (folder / f"{name}.json").is_file()
    assert (tmp_path / "mlviz" / "index.html").is_file()


@pytest.mark.slow
def test_bad_input_is_one_line_and_leaves_the_store_unchanged(demo):
    a = demo["a"].info.run_id
    before = sqlite_dump(demo["db"])
    bad = "0" * 32
    assert_one_line_error(run_cli("compare", "--run", a, "--run", bad, "--tracking-uri", demo["uri"]), "no run", bad)
    assert_one_line_error(run_cli("compare", "--run", a, "--tracking-uri", demo["uri"]), "at least two runs")
    assert_one_line_error(run_cli("compare", "--run", a, "--run", a, "--n-boot", "many", "--tracking-uri",
                                  demo["uri"]), "--n-boot", "many")
    assert_one_line_error(run_cli("compare", "--run", a, "--run", a, "--reference", "worst", "--tracking-uri",
                                  demo["uri"]), "--reference", "worst")
    assert_one_line_error(run_cli("compare", "-e", MULTICLASS, "--tracking-uri", demo["uri"]), "two or more")
    assert_one_line_error(run_cli("compare", "-e", MULTICLASS, "-e", "no-such-sweep", "--tracking-uri",
                                  demo["uri"]), "no-such-sweep")
    assert sqlite_dump(demo["db"]) == before


@pytest.mark.slow
def test_compare_two_sweeps(demo, tmp_path):
    from mlviz.analysis.stage1 import parameter_importance
    from mlviz.analysis.stage2 import stage_agreement
    from mlviz.sections.sweep import load_sweep

    before = sqlite_dump(demo["db"])
    res = run_cli("compare", "-e", MULTICLASS, "-e", BINARY, "--metric", "val_accuracy",
                  "--n-boot", "100", "--tracking-uri", demo["uri"], "--out", tmp_path)
    assert res.exit_code == 0, describe_result(res)
    assert sqlite_dump(demo["db"]) == before
    folder = tmp_path / "mlviz" / "compare"
    imp = json.loads((folder / "importance.json").read_text())
    agree = json.loads((folder / "stage_agreement.json").read_text())
    curves = json.loads((folder / "learning_curves.json").read_text())
    assert imp["sweeps"] == agree["sweeps"] == [MULTICLASS, BINARY]
    for i, name in enumerate(imp["sweeps"]):
        sweep = load_sweep(demo["uri"], experiment=name, metric="val_accuracy")
        own = parameter_importance(sweep.stage(1), n_boot=100, seed=0)
        assert imp["results"][i]["params"] == own.params
        assert imp["results"][i]["importance"] == pytest.approx(own.importance, abs=1e-12)
        assert imp["results"][i]["n_runs"] == 48
        ag = stage_agreement(sweep, n_boot=100, seed=0)
        assert agree["results"][i]["spearman"] == pytest.approx(ag.spearman, abs=1e-12)
        assert agree["results"][i]["n_candidates"] == ag.n_candidates
    lines = pd.DataFrame(curves["curves"])
    assert set(lines["line"]) == {MULTICLASS, BINARY}
    assert "val_accuracy" in curves["keys"] and (lines["n_runs"] == 2).all()  # two seeds per configuration
    for name in ("importance", "learning_curves", "stage_agreement"):
        assert (folder / f"{name}.png").stat().st_size > 10_000
