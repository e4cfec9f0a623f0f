"""`mlviz visualize` end to end on a real SQLite store: the analysis run, its artifacts, their numbers, and
that nothing else in the store changes.

The module works on its own copy of the session's synthetic store (120 finished runs under a `stage1`
parent), so the analysis run it logs is not seen by other modules.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import analysis_runs, describe_result, run_cli, sqlite_dump, store_snapshot

STAGE1_FILES = [
    "heatmaps_val_accuracy", "parallel_coordinates", "parameter_importance", "parameter_effects",
    "top_k_comparison", "metric_distributions", "metric_correlations", "optimizer_comparison_val_accuracy",
    "augment_comparison_val_accuracy", "optimization_history", "stage1_summary_dashboard",
]
pytestmark = pytest.mark.usefixtures("clean_env")

PARAMS = ["learning_rate", "optimizer", "depth", "dropout", "augment", "noise_param"]


def _args(uri, *extra):
    return ["visualize", "--tracking-uri", uri, "-e", "synthetic-sweep", "--metric", "val_accuracy",
            "--n-boot", "50", *extra]


def _children(client, exp_id):
    """The sweep's runs as MlflowClient reports them (finished children of the `stage1` parent)."""
    from mlflow.entities import ViewType

    runs = client.search_runs([exp_id], run_view_type=ViewType.ALL, max_results=10000)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") and r.info.status == "FINISHED"
            and r.info.lifecycle_stage == "active" and not r.data.tags.get("mlviz.analysis")]
    frame = pd.DataFrame({
        "run_id": [r.info.run_id for r in kids],
        "learning_rate": [float(r.data.params["learning_rate"]) for r in kids],
        "dropout": [float(r.data.params["dropout"]) for r in kids],
        "noise_param": [float(r.data.params["noise_param"]) for r in kids],
        "depth": [int(r.data.params["depth"]) for r in kids],
        "optimizer": [r.data.params["optimizer"] for r in kids],
        "augment": [r.data.params["augment"] for r in kids],
        "val_accuracy": [r.data.metrics["val_accuracy"] for r in kids],
    })
    return runs, frame


@pytest.fixture(scope="module")
def analysed(synthetic_store, tmp_path_factory):
    """Run `mlviz visualize` once on a private copy of the synthetic store and download what it logged."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("visualize-sqlite")
    db = root / "mlflow.db"
    shutil.copy2(synthetic_store["db"], db)
    uri, exp_id = f"sqlite:///{db}", synthetic_store["experiment_id"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
            mp.delenv(name, raising=False)
        before = store_snapshot(uri)
        before_raw = sqlite_dump(db)
        assert analysis_runs(uri, exp_id) == []
        result = run_cli(*_args(uri))
        assert result.exit_code == 0, describe_result(result)
        runs = analysis_runs(uri, exp_id)
        assert len(runs) == 1, [r.info.run_id for r in runs]
        run = runs[0]
        client = MlflowClient(tracking_uri=uri)
        dl = root / "download"
        dl.mkdir()
        local = Path(client.download_artifacts(run.info.run_id, "mlviz", str(dl)))
    return types.SimpleNamespace(uri=uri, db=db, root=root, exp_id=exp_id, result=result, run=run, client=client,
                                 local=local, before=before, before_raw=before_raw)


def test_visualize_logs_one_finished_analysis_run(analysed):
    run, out = analysed.run, analysed.result.output
    assert "analysed 120 runs of objective 'val_accuracy' (max): 11 figures written to run " + run.info.run_id in out
    assert "runs left out: 1 parent run" in out
    assert run.info.run_name == "mlviz-visualize" and run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["mlviz.analysis"] == "visualize"
    assert tags["mlviz.objective"] == "val_accuracy" and tags["mlviz.mode"] == "max"
    assert tags["mlviz.experiment"] == "synthetic-sweep" and len(tags["mlviz.fingerprint"]) == 24
    _, frame = _children(analysed.client, analysed.exp_id)
    assert len(frame) == 120
    best = frame.loc[frame["val_accuracy"].idxmax()]
    assert tags["mlviz.best_run_id"] == best["run_id"]
    m = run.data.metrics
    assert m["mlviz.n_runs"] == 120 and m["mlviz.n_figures"] == 11 and m["mlviz.n_excluded"] == 1
    assert m["mlviz.best.val_accuracy"] == best["val_accuracy"]


def test_every_stage1_figure_is_a_png_with_its_numbers(analysed):
    from PIL import Image

    stage1 = analysed.local / "stage1"
    pngs = sorted(p.stem for p in stage1.glob("*.png"))
    assert pngs == sorted(STAGE1_FILES)
    for stem in STAGE1_FILES:
        png = stage1 / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200, (stem, im.size)
        numbers = stage1 / f"{stem}.json"
        assert numbers.is_file(), f"{stem}.png has no JSON beside it"
        data = json.loads(numbers.read_text())  # strict JSON: NaN would not parse back as a number
        assert isinstance(data, dict) and data, stem
    importance = json.loads((stage1 / "parameter_importance.json").read_text())
    assert importance["params"][:2] == ["learning_rate", "optimizer"] and importance["n_runs"] == 120
    assert "batch_size" not in importance["params"]
    assert set(importance["params"]) == set(PARAMS)
    history = json.loads((stage1 / "optimization_history.json").read_text())
    assert len(history["values"]) == 120 and history["best_so_far"][-1] == max(history["values"])
    top = json.loads((stage1 / "top_k_comparison.json").read_text())
    assert top["k"] == 10 and top["table"][0]["run_id"] == analysed.run.data.tags["mlviz.best_run_id"]


def test_summary_json(analysed):
    s = json.loads((analysed.local / "summary.json").read_text())
    sweep = s["sweep"]
    assert sweep["n_runs"] == 120 and sweep["runs_per_stage"] == {"1": 120}
    assert sweep["objective"] == "val_accuracy" and sweep["mode"] == "max"
    assert sweep["excluded"]["count"] == 1 and sweep["excluded"]["by_reason"] == {"parent run": 1}
    assert sweep["excluded"]["runs"][0]["run_name"] == "stage1"
    assert sweep["excluded"]["runs"][0]["reason"] == "parent run: groups 120 child runs"
    assert sweep["fixed_params"] == {"batch_size": 64}
    assert sweep["params"]["learning_rate"]["kind"] == "float" and sweep["params"]["learning_rate"]["log_scale"]
    assert sweep["params"]["augment"]["kind"] == "bool" and sweep["params"]["depth"]["kind"] == "int"
    assert sorted(s["figures_made"]) == sorted(f"mlviz/stage1/{f}.png" for f in STAGE1_FILES)
    assert s["figures_skipped"], "stage-2 figures should be listed as skipped"
    for skip in s["figures_skipped"]:
        assert skip["section"] == "stage2" and skip["reason"].strip()
    assert s["fingerprint"] == analysed.run.data.tags["mlviz.fingerprint"]
    assert s["selection"]["experiment_id"] == analysed.exp_id and s["selection"]["experiment_name"] == "synthetic-sweep"
    assert s["options"]["n_boot"] == 50
    assert s["versions"]["mlflow"]


def test_index_html_shows_every_png(analysed):
    html = (analysed.local / "index.html").read_text()
    for stem in STAGE1_FILES:
        assert f"mlviz/stage1/{stem}.png" in html, stem
    assert html.count("data:image/png;base64,") == len(STAGE1_FILES)
    assert "120 runs analysed, 1 left out" in html


def _codes(x: np.ndarray, labels: list[str], log: bool) -> np.ndarray:
    """Independent binning of a continuous parameter into the heatmap's levels: 6 equal-width bins
    (in log space for a log-scaled parameter), empty bins dropped."""
    if len(np.unique(x)) <= 6:
        return np.searchsorted(np.unique(x), x)
    edges = np.geomspace(x.min(), x.max(), 7) if log else np.linspace(x.min(), x.max(), 7)
    raw = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 5)
    used = np.unique(raw)
    assert len(used) == len(labels), labels
    lo, hi = (float(v) for v in labels[0].split("–"))
    assert lo == pytest.approx(x.min(), rel=0.05) and float(labels[-1].split("–")[1]) == pytest.approx(x.max(), rel=0.05)
    return np.searchsorted(used, raw)


def test_heatmap_numbers_match_runs_read_with_mlflowclient(analysed):
    hm = json.loads((analysed.local / "stage1" / "heatmaps_val_accuracy.json").read_text())
    assert hm["metric"] == "val_accuracy" and hm["n_runs"] == 120 and hm["n_boot"] == 50
    _, frame = _children(analysed.client, analysed.exp_id)
    v = frame["val_accuracy"].to_numpy()
    assert {frozenset((p["x_param"], p["y_param"])) for p in hm["pairs"]} == {
        frozenset((a, b)) for i, a in enumerate(PARAMS) for b in PARAMS[i + 1:]}

    def codes(name, labels):
        col = frame[name]
        if name in ("optimizer", "augment"):
            assert labels == sorted(col.unique())
            return col.map({lab: i for i, lab in enumerate(labels)}).to_numpy()
        if name == "depth":
            assert labels == [str(d) for d in sorted(col.unique())]
            return col.map({int(lab): i for i, lab in enumerate(labels)}).to_numpy()
        return _codes(col.to_numpy(), labels, log=(name == "learning_rate"))

    cells = 0
    for pair in hm["pairs"]:
        cx, cy = codes(pair["x_param"], pair["x_labels"]), codes(pair["y_param"], pair["y_labels"])
        assert sum(map(sum, pair["n"])) == 120
        for iy in range(len(pair["y_labels"])):
            for ix in range(len(pair["x_labels"])):
                sel = v[(cx == ix) & (cy == iy)]
                n, mean = pair["n"][iy][ix], pair["mean"][iy][ix]
                lo, hi = pair["ci_low"][iy][ix], pair["ci_high"][iy][ix]
                assert n == len(sel), (pair["x_param"], pair["y_param"], ix, iy)
                if n == 0:
                    assert mean is None
                    continue
                assert mean == pytest.approx(sel.mean(), abs=1e-12)
                if n == 1:
                    assert lo is None and hi is None
                else:
                    assert sel.min() - 1e-12 <= lo <= mean + 1e-12 and mean - 1e-12 <= hi <= sel.max() + 1e-12
                cells += 1
    assert cells > 150


def test_running_again_is_up_to_date(analysed):
    result = run_cli(*_args(analysed.uri))
    assert result.exit_code == 0, describe_result(result)
    assert "up to date" in result.output and analysed.run.info.run_id in result.output
    assert [r.info.run_id for r in analysis_runs(analysed.uri, analysed.exp_id)] == [analysed.run.info.run_id]


def test_force_redoes_it_in_the_same_run(analysed):
    result = run_cli(*_args(analysed.uri, "--force"))
    assert result.exit_code == 0, describe_result(result)
    assert "up to date" not in result.output
    assert f"written to run {analysed.run.info.run_id}" in result.output
    runs = analysis_runs(analysed.uri, analysed.exp_id)
    assert [r.info.run_id for r in runs] == [analysed.run.info.run_id]  # reused, no duplicate
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlviz.fingerprint"] == analysed.run.data.tags["mlviz.fingerprint"]
    files = [f.path for f in analysed.client.list_artifacts(run.info.run_id, "mlviz/stage1")]
    assert sorted(Path(f).name for f in files if f.endswith(".png")) == sorted(f"{s}.png" for s in STAGE1_FILES)
    again = run_cli(*_args(analysed.uri))
    assert again.exit_code == 0 and "up to date" in again.output


def test_out_dir_writes_the_same_files_and_creates_no_run(analysed, tmp_path):
    before = [r.info.run_id for r in analysis_runs(analysed.uri, analysed.exp_id)]
    from mlflow.entities import ViewType

    n_runs = len(analysed.client.search_runs([analysed.exp_id], run_view_type=ViewType.ALL, max_results=10000))
    out = tmp_path / "report"
    result = run_cli(*_args(analysed.uri, "--out", out))
    assert result.exit_code == 0, describe_result(result)
    assert f"written to {out / 'mlviz'}" in result.output
    got = sorted(p.relative_to(out / "mlviz").as_posix() for p in (out / "mlviz").rglob("*") if p.is_file())
    logged = sorted(p.relative_to(analysed.local).as_posix() for p in analysed.local.rglob("*") if p.is_file())
    assert got == logged
    # the same numbers (the analysis run itself is now also listed among the runs left out)
    for stem in STAGE1_FILES:
        mine = json.loads((out / "mlviz" / "stage1" / f"{stem}.json").read_text())
        theirs = json.loads((analysed.local / "stage1" / f"{stem}.json").read_text())
        assert mine == theirs, stem
    summary = json.loads((out / "mlviz" / "summary.json").read_text())
    assert summary["sweep"]["n_runs"] == 120
    assert summary["sweep"]["excluded"]["by_reason"] == {"mlviz analysis run": 1, "parent run": 1}
    assert [r.info.run_id for r in analysis_runs(analysed.uri, analysed.exp_id)] == before
    assert len(analysed.client.search_runs([analysed.exp_id], run_view_type=ViewType.ALL, max_results=10000)) == n_runs
    again = run_cli(*_args(analysed.uri, "--out", out))
    assert again.exit_code == 0 and "up to date" in again.output


def test_store_unchanged_apart_from_the_analysis_run(analysed):
    """Runs last in this module: after logging, re-logging with --force and writing to --out."""
    assert store_snapshot(analysed.uri) == analysed.before
    ids = {r.info.run_id for r in analysis_runs(analysed.uri, analysed.exp_id)}
    after_raw = sqlite_dump(analysed.db, skip_run_ids=ids)
    assert set(after_raw) == set(analysed.before_raw)
    changed = [t for t in after_raw if after_raw[t] != analysed.before_raw[t]]
    assert changed == [], {t: (len(analysed.before_raw[t]), len(after_raw[t])) for t in changed}


# --------------------------------------------------------------------------- store locations


def test_store_in_a_folder_with_a_hash_in_its_name(synthetic_store, tmp_path):
    from mlflow import MlflowClient

    folder = tmp_path / "C#-project"
    folder.mkdir()
    db = folder / "mlflow.db"
    shutil.copy2(synthetic_store["db"], db)
    assert MlflowClient(tracking_uri=f"sqlite:///{db}").get_experiment_by_name("synthetic-sweep") is not None
    r = run_cli("visualize", "--tracking-uri", f"sqlite:///{db}", "-e", "synthetic-sweep", "--metric", "val_auc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C#-project"], "stray file created beside the store"
    assert "metric 'val_auc' was logged by no selected run" in r.output, r.output  # i.e. the runs were read


def test_logging_when_the_artifact_root_does_not_exist_yet(synthetic_copy):
    import tempfile
    import uuid

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    top = Path(tempfile.gettempdir())
    if len(top.parts) != 2:
        pytest.skip("needs the temp folder to be a top-level folder such as /tmp")
    fresh = top / f"mlviz-test-{uuid.uuid4().hex}"  # like /tmp/mlruns for a store made with cwd=/tmp
    uri = synthetic_copy["uri"]
    try:
        client = MlflowClient(tracking_uri=uri)
        exp_id = client.create_experiment("fresh", artifact_location=str(fresh / "mlruns"))
        for i in range(20):  # a small local sweep; no artifacts, so the folder does not exist yet
            run = client.create_run(exp_id, run_name=f"t{i}", start_time=1_700_000_000_000 + i)
            client.log_batch(run.info.run_id, params=[Param("lr", repr(10 ** (-4 + 3 * i / 19))),
                                                      Param("opt", ["adam", "sgd"][i % 2])],
                             metrics=[Metric("val_loss", 1.0 / (i + 1) + 0.01 * (i % 2), 0, 0)])
            client.set_terminated(run.info.run_id, "FINISHED")
        assert not fresh.exists()
        r = run_cli("visualize", "--tracking-uri", uri, "-e", "fresh", "--n-boot", "20")
        assert r.exit_code == 0, describe_result(r)
        assert len(analysis_runs(uri, exp_id)) == 1
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def test_final_best_takes_the_best_of_each_history(tmp_path):
    """--final best: each run's metric is the best value of its history (min for a loss), not the last."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("overfit", artifact_location=str(tmp_path / "artifacts"))
    rng = np.random.default_rng(0)
    curves = {}
    for i in range(12):  # the loss falls, then rises again (overfitting): its best is not its last value
        rid = client.create_run(exp, run_name=f"r{i}").info.run_id
        steps = np.arange(8)
        loss = 1.0 / (1 + 0.3 * i) + 0.05 * (steps - 2 - i % 4) ** 2 + rng.uniform(0, 0.01, 8)
        curves[rid] = loss
        client.log_batch(rid, params=[Param("lr", repr(10 ** (-4 + i / 4))), Param("opt", "ab"[i % 2])],
                         metrics=[Metric("val_loss", float(v), 1_700_000_000_000 + int(s), int(s))
                                  for s, v in zip(steps, loss, strict=True)])
        client.set_terminated(rid, "FINISHED")
    out = {}
    for final in ("last", "best"):
        out[final] = tmp_path / final
        r = run_cli("visualize", "--tracking-uri", uri, "-e", "overfit", "--final", final, "--n-boot", "20",
                    "--top-k", "12", "--out", out[final])
        assert r.exit_code == 0, describe_result(r)
    for final, pick in (("last", lambda c: c[-1]), ("best", np.min)):
        rows = json.loads((out[final] / "mlviz" / "stage1" / "top_k_comparison.json").read_text())["table"]
        assert len(rows) == 12
        for row in rows:
            assert row["val_loss"] == pytest.approx(float(pick(curves[row["run_id"]])), abs=1e-12), final
        assert [row["val_loss"] for row in rows] == sorted(row["val_loss"] for row in rows)  # minimised
    assert json.loads((out["best"] / "mlviz" / "summary.json").read_text())["selection"]["final"] == "best"
