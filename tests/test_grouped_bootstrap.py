"""Grouped (cluster) bootstrap: predictions with several rows per patient, subject or video get intervals
that resample whole groups (`--group-id COLUMN`, or detected and said), since resampling rows that are
near copies of each other makes the intervals too narrow.

Statistics (fast, pure): on 40 patients × 10 near-identical rows the grouped AUC interval is about √10
times the row interval; with one row per group the grouped bootstrap is the row bootstrap; the same seed
gives the same numbers. Detection: a repeated `patient_id` is found and said; a per-epoch table whose ids
repeat only across epochs is not grouped. End to end: `mlviz best-model --group-id patient_id` on a real
SQLite store writes JSON that says what was resampled; a bad column is one line and exit code 2;
`mlviz compare` pairs two grouped runs by group.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, describe_result, fresh_sqlite_store, run_cli, sqlite_dump

from mlviz.analysis.calibration import calibration_analysis
from mlviz.analysis.compare import compare_pair, metric_draws
from mlviz.analysis.diagnostics import (
    bootstrap_means,
    pr_analysis,
    resample_counts,
    roc_analysis,
    slice_metrics,
)
from mlviz.analysis.predictions import predictions_from_frame
from mlviz.analysis.progress import metrics_evolution
from mlviz.errors import MlvizError
from mlviz.figures.model import headline_metrics

pytestmark = pytest.mark.usefixtures("clean_env")
N_GROUPS, PER_GROUP = 40, 10


def patients(seed: int = 0, n_groups: int = N_GROUPS, per_group: int = PER_GROUP, jitter: float = 0.01,
             column: str = "patient_id") -> pd.DataFrame:
    """n_groups patients, each with one label and per_group rows whose scores barely differ (the same
    patient imaged several times): the rows carry about one patient's worth of information."""
    rng = np.random.default_rng(seed)
    label = np.tile([0, 1], n_groups // 2 + 1)[:n_groups]
    rng.shuffle(label)
    base = np.clip(0.5 + 0.18 * (2 * label - 1) + rng.normal(0, 0.2, n_groups), 0.02, 0.98)
    rows = np.repeat(np.arange(n_groups), per_group)
    return pd.DataFrame({
        "sample_id": np.arange(len(rows)),
        column: [f"P{g:03d}" for g in rows],
        "label": label[rows],
        "score": np.clip(base[rows] + rng.normal(0, jitter, len(rows)), 0.0, 1.0),
        "site": np.where(rows % 2 == 0, "north", "south"),
    })


def _width(result, name="auc") -> float:
    row = result.summary.iloc[0]
    return float(row[f"{name}_high"] - row[f"{name}_low"])


# --------------------------------------------------------------------------- statistics
def test_grouped_interval_is_wider_when_rows_within_a_group_are_alike():
    frame = patients()
    grouped = predictions_from_frame(frame, group_column="patient_id")
    rows = predictions_from_frame(frame, group_column="none")
    assert grouped.group_column == "patient_id" and grouped.n_groups == N_GROUPS
    assert rows.group_column is None and rows.groups is None
    g, r = roc_analysis(grouped, n_boot=1000, seed=0), roc_analysis(rows, n_boot=1000, seed=0)
    assert g.summary["auc"].iloc[0] == r.summary["auc"].iloc[0]  # the point estimate is the rows' AUC
    ratio = _width(g) / _width(r)
    assert ratio > 1.8, ratio  # ~√10 ≈ 3.2: ten near copies carry one patient's information
    assert (g.bootstrap_unit, g.group_column, g.n_groups) == ("groups", "patient_id", N_GROUPS)
    assert (r.bootstrap_unit, r.n_groups) == ("samples", None)
    assert _width(pr_analysis(grouped, n_boot=500), "ap") > 1.8 * _width(pr_analysis(rows, n_boot=500), "ap")
    cg = calibration_analysis(grouped, n_boot=400).metrics.set_index("metric")
    cr = calibration_analysis(rows, n_boot=400).metrics.set_index("metric")
    for m in ("brier", "nll"):
        assert (cg.loc[m, "high"] - cg.loc[m, "low"]) > 1.8 * (cr.loc[m, "high"] - cr.loc[m, "low"]), m
    # slices resample the groups inside each slice (site is constant within a patient)
    sg = slice_metrics(grouped, ["site"], n_boot=300).table.set_index("value")
    sr = slice_metrics(rows, ["site"], n_boot=300).table.set_index("value")
    assert sg.loc["north", "n"] == N_GROUPS // 2 * PER_GROUP
    assert ((sg["auc_high"] - sg["auc_low"]) > 1.5 * (sr["auc_high"] - sr["auc_low"])).all()


def test_resampled_groups_expand_to_rows():
    codes = np.repeat(np.arange(5), [1, 2, 3, 4, 5])
    for w in resample_counts(len(codes), 50, seed=3, groups=codes):
        # rows of one group share its count, and G draws are made among G groups
        for g in range(5):
            assert (w[:, codes == g] == w[:, [np.flatnonzero(codes == g)[0]]]).all()
        per_group = np.stack([w[:, np.flatnonzero(codes == g)[0]] for g in range(5)], axis=1)
        assert (per_group.sum(axis=1) == 5).all()
    # chunking (a small max_cells) does not change the resamples
    small = np.concatenate(list(resample_counts(len(codes), 50, seed=3, groups=codes, max_cells=40)))
    assert np.array_equal(small, np.concatenate(list(resample_counts(len(codes), 50, seed=3, groups=codes))))


def test_one_row_per_group_is_the_row_bootstrap():
    n = 300
    rows = list(resample_counts(n, 200, seed=7))
    groups = list(resample_counts(n, 200, seed=7, groups=np.arange(n)))
    assert all(np.array_equal(a, b) for a, b in zip(rows, groups, strict=True))  # the same draws, bit for bit
    values = np.random.default_rng(1).normal(size=n)
    np.testing.assert_allclose(bootstrap_means(values, 200, 7), bootstrap_means(values, 200, 7, np.arange(n)),
                               rtol=0, atol=1e-12)  # the same resamples (BLAS may round the last bit apart)
    frame = patients(seed=2, n_groups=400, per_group=1)
    g = roc_analysis(predictions_from_frame(frame, group_column="patient_id"), n_boot=2000, seed=0)
    r = roc_analysis(predictions_from_frame(frame, group_column="none"), n_boot=2000, seed=0)
    assert g.bootstrap_unit == "groups" and g.n_groups == 400
    for end in ("auc_low", "auc_high"):  # the same distribution (drawn in another order)
        assert g.summary[end].iloc[0] == pytest.approx(r.summary[end].iloc[0], abs=0.01)
    assert _width(g) / _width(r) == pytest.approx(1.0, abs=0.12)


def test_same_seed_same_numbers_other_seed_other_numbers():
    preds = predictions_from_frame(patients())
    a, b = roc_analysis(preds, n_boot=300, seed=5), roc_analysis(preds, n_boot=300, seed=5)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    pd.testing.assert_frame_equal(a.band, b.band)
    c = roc_analysis(preds, n_boot=300, seed=6)
    assert c.summary["auc_low"].iloc[0] != a.summary["auc_low"].iloc[0]
    d1, d2 = metric_draws(preds, 200, 5), metric_draws(preds, 200, 5)
    assert all(np.array_equal(d1[k], d2[k], equal_nan=True) for k in d1)


def test_metrics_per_epoch_resample_the_groups_of_each_epoch():
    frames = []
    for epoch in range(3):
        f = patients(seed=10 + epoch)
        f["epoch"] = epoch
        frames.append(f)
    per = predictions_from_frame(pd.concat(frames, ignore_index=True))
    assert per.group_column == "patient_id"  # it repeats within an epoch
    rows = predictions_from_frame(pd.concat(frames, ignore_index=True), group_column="none")
    g, r = metrics_evolution(per, n_boot=300), metrics_evolution(rows, n_boot=300)
    assert (g.bootstrap_unit, g.n_groups) == ("groups", N_GROUPS)
    wg = (g.table["auc_high"] - g.table["auc_low"]).to_numpy()
    wr = (r.table["auc_high"] - r.table["auc_low"]).to_numpy()
    assert (wg > 1.8 * wr).all(), (wg, wr)


# --------------------------------------------------------------------------- detection
def test_a_repeated_patient_id_is_detected_and_said():
    preds = predictions_from_frame(patients())
    assert preds.group_column == "patient_id" and preds.n_groups == N_GROUPS
    note = next(n for n in preds.notes if "patient_id" in n)
    assert "40 groups" in note and "resample" in note and "--group-id none" in note
    assert "patient_id" not in preds.group_columns  # a patient is not a slice; site still is
    assert "site" in preds.group_columns
    # other names people give the unit
    for column in ("subject", "video_id", "Case-ID", "group_id", "PatientID"):
        assert predictions_from_frame(patients(column=column)).group_column == column
    # a plain `group` or `case` column is more often a slice than a unit: not detected
    assert predictions_from_frame(patients(column="group")).group_column is None
    # a sample id that repeats (two or more rows per id) is the unit too
    frame = patients().drop(columns=["sample_id"]).rename(columns={"patient_id": "sample_id"})
    assert predictions_from_frame(frame).group_column == "sample_id"


def test_unique_ids_and_ids_repeated_only_across_epochs_are_not_grouped():
    one = patients(n_groups=200, per_group=1)
    assert predictions_from_frame(one).group_column is None
    frames = []
    for epoch in range(4):  # the long per-epoch layout: every sample once per epoch
        f = patients(seed=epoch, n_groups=200, per_group=1)
        f["epoch"] = epoch
        frames.append(f)
    per = predictions_from_frame(pd.concat(frames, ignore_index=True))
    assert per.has_epochs and per.group_column is None and per.groups is None
    assert not any("resample" in n for n in per.notes)


def test_explicit_none_and_missing_columns_and_too_few_groups():
    frame = patients()
    off = predictions_from_frame(frame, group_column="none")
    assert off.group_column is None and not any("patient_id" in n for n in off.notes)
    assert predictions_from_frame(frame, column_map={"group": "none"}).group_column is None
    assert predictions_from_frame(frame, column_map={"group_id": "site"}).group_column == "site"
    with pytest.raises(MlvizError, match="'nope_id' is not in the predictions"):
        predictions_from_frame(frame, group_column="nope_id")
    few = patients(n_groups=6, per_group=20)  # 6 patients: too few to detect, said
    preds = predictions_from_frame(few)
    assert preds.group_column is None
    assert any("fewer than 10 groups" in n and "--group-id patient_id" in n for n in preds.notes)
    forced = predictions_from_frame(few, group_column="patient_id")
    assert forced.n_groups == 6 and any("rough" in n for n in forced.notes)


# --------------------------------------------------------------------------- compare: paired by group
def test_two_grouped_runs_are_paired_by_group():
    a = predictions_from_frame(patients(seed=0))
    b_frame = patients(seed=0)
    b_frame["score"] = np.clip(b_frame["score"] + np.random.default_rng(9).normal(0, 0.05, len(b_frame)), 0, 1)
    b_frame = b_frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # rows in another order
    b = predictions_from_frame(b_frame)
    rows = compare_pair(a, b, headline=headline_metrics, n_boot=200, seed=0, metrics=["auc"])
    assert rows[0]["test"] == "paired bootstrap by group", rows[0]
    assert "40 groups of 'patient_id' shared" in rows[0]["note"]
    same = compare_pair(a, a, headline=headline_metrics, n_boot=200, seed=0, metrics=["auc"])[0]
    assert same["low"] == same["high"] == 0.0  # a run against itself: the same groups, no difference
    plain = predictions_from_frame(patients(seed=0), group_column="none")
    mixed = compare_pair(a, plain, headline=headline_metrics, n_boot=100, seed=0, metrics=["auc"])[0]
    assert mixed["test"] == "unpaired bootstrap (groups)" and "only one run" in mixed["note"]


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("grouped")
    s = fresh_sqlite_store(root)
    client = MlflowClient(s["uri"])
    exp = client.create_experiment("patients", artifact_location=str(root / "artifacts"))
    runs = {}
    for name, seed in (("model-a", 0), ("model-b", 0)):
        frame = patients(seed=seed)
        if name == "model-b":
            frame["score"] = np.clip(frame["score"] + np.random.default_rng(4).normal(0, 0.05, len(frame)), 0, 1)
        local = root / "src" / name / "val_predictions.csv"
        local.parent.mkdir(parents=True)
        frame.to_csv(local, index=False)
        rid = client.create_run(exp, run_name=name).info.run_id
        client.log_artifact(rid, str(local), "predictions")
        client.set_terminated(rid, "FINISHED")
        runs[name] = rid
    return {**s, "runs": runs}


def test_best_model_with_group_id_says_grouped_in_its_json(store, tmp_path):
    out = tmp_path / "out"
    r = run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["runs"]["model-a"], "--group-id",
                "patient_id", "--n-boot", "50", "--no-heatmaps", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    assert "40 groups of 'patient_id'" in r.output  # the note is printed
    roc = json.loads((out / "mlviz" / "best_model" / "roc_curve.json").read_text())
    assert (roc["bootstrap_unit"], roc["group_column"], roc["n_groups"]) == ("groups", "patient_id", N_GROUPS)
    cal = json.loads((out / "mlviz" / "best_model" / "calibration.json").read_text())
    assert cal["bootstrap_unit"] == "groups" and cal["n_groups"] == N_GROUPS
    summary = json.loads((out / "mlviz" / "best_model_summary.json").read_text())
    assert summary["bootstrap"]["bootstrap_unit"] == "groups" and summary["bootstrap"]["n_groups"] == N_GROUPS
    assert any("patient_id" in n for n in summary["notes"])
    # `--group-id none` resamples rows (detection without the option: the compare test below)
    rows = run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["runs"]["model-a"],
                   "--group-id", "none", "--n-boot", "20", "--no-heatmaps", "--out", tmp_path / "rows")
    assert rows.exit_code == 0, describe_result(rows)
    roc = json.loads((tmp_path / "rows" / "mlviz" / "best_model" / "roc_curve.json").read_text())
    assert roc["bootstrap_unit"] == "samples" and roc["n_groups"] is None


def test_best_model_group_id_not_a_column_is_one_line(store, tmp_path):
    before = sqlite_dump(store["db"])
    r = run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["runs"]["model-a"], "--group-id",
                "nope_id", "--n-boot", "20", "--no-heatmaps")
    assert_one_line_error(r, "nope_id", "not in the predictions")
    assert sqlite_dump(store["db"]) == before
    assert not (tmp_path / "out").exists()


def test_compare_pairs_grouped_runs_by_group(store, tmp_path):
    out = tmp_path / "cmp"
    r = run_cli("compare", "--tracking-uri", store["uri"], "--run", store["runs"]["model-a"], "--run",
                store["runs"]["model-b"], "--n-boot", "50", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    table = pd.read_csv(out / "mlviz" / "compare" / "metrics_table.csv")
    tests = set(table["test"].dropna())
    assert tests == {"paired bootstrap by group"}, tests
    summary = json.loads((out / "mlviz" / "summary.json").read_text())  # patient_id detected in both runs
    assert {run["bootstrap_unit"] for run in summary["compare"]["runs"]} == {"groups"}
    bad = run_cli("compare", "--tracking-uri", store["uri"], "--run", store["runs"]["model-a"], "--run",
                  store["runs"]["model-b"], "--group-id", "nope_id", "--n-boot", "20")
    assert_one_line_error(bad, "nope_id")
