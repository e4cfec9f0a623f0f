"""`mlviz demo --quick` end to end: the two-stage sweep it logs, the stage-1/stage-2 figures `mlviz visualize`
makes of it (numbers recomputed from the runs), the best model, determinism, and the other task shapes.

The demos are real training runs (a small CNN, one thread each), so they start together as separate
processes when this module starts and the tests wait for the ones they need. On 2 idle cores the whole
file takes about a minute and a half (more when other work shares the machine); it is marked `slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy import stats

from mlviz.sweep import parse_scalar

EXPERIMENT = "mlviz-demo-multiclass"
OBJECTIVE = "val_accuracy"
N_TRIALS = 48  # the quick preset
SEEDS = (0, 1)
STAGE1_FIGURES = ["heatmaps_val_accuracy", "parallel_coordinates", "parameter_importance", "parameter_effects",
                  "top_k_comparison", "metric_distributions", "metric_correlations", "optimization_history",
                  "stage1_summary_dashboard"]
CATEGORICAL = ["optimizer", "activation", "augment"]  # <param>_comparison_<metric>
STAGE2_FIGURES = ["stage2_quick_vs_full", "stage2_selection_criterion", "learning_curves", "seed_variance",
                  "hyperparameter_interactions", "best_config_summary", "stage2_summary_dashboard"]

# Three quick demos (and the session's demo store) and a visualize: over a minute on 2 cores even on an idle machine.
pytestmark = pytest.mark.slow

class Job:
    """A command running in the background, its output kept in files."""

    def __init__(self, name: str, args: list[str], cwd: Path):
        self.name, self.args = name, args
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        self.started = time.perf_counter()
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, env=env)
        self.seconds: float | None = None

    def wait(self, timeout: float = 600) -> Job:
        if self.seconds is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.seconds = time.perf_counter() - self.started
        return self

    @property
    def rc(self) -> int:
        return self.wait().proc.returncode

    @property
    def stdout(self) -> str:
        return self.wait().out.read_text()

    @property
    def stderr(self) -> str:
        return self.wait().err.read_text()

    def check(self) -> Job:
        assert self.rc == 0, f"{self.name} exited {self.rc}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return self


def mlviz_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlviz.cli", *args]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """All demos start at once; `visualize` starts when the multiclass demo is done."""
    root = tmp_path_factory.mktemp("demo")
    uris = {k: f"sqlite:///{root / k / 'mlflow.db'}" for k in ("main", "binary", "multioutput")}
    for k in uris:
        (root / k).mkdir()
    started = {
        "main": Job("demo", mlviz_cmd("demo", "--quick", "--tracking-uri", uris["main"]), root / "main"),
        "binary": Job("binary", mlviz_cmd("demo", "--quick", "--task", "binary", "--tracking-uri", uris["binary"]),
                      root / "binary"),
        "multioutput": Job("multioutput", mlviz_cmd("demo", "--quick", "--task", "multioutput", "--tracking-uri",
                                                    uris["multioutput"]), root / "multioutput"),
    }
    state = {"root": root, "uris": uris, "jobs": started}
    yield state
    for job in list(started.values()):
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.wait()


@pytest.fixture(scope="module")
def demo(jobs):
    """The multiclass demo's store, read back with MlflowClient."""
    jobs["jobs"]["main"].check()
    uri = jobs["uris"]["main"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_name = {r.info.run_name: r for r in runs}
    stage1_parent, stage2_parent = by_name["stage1"], by_name["stage2"]
    stage1 = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage1_parent.info.run_id]
    stage2 = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage2_parent.info.run_id]
    return {"uri": uri, "client": client, "exp": exp, "runs": runs, "stage1": stage1, "stage2": stage2,
            "stage1_by_id": {r.info.run_id: r for r in stage1}, "root": jobs["root"] / "main",
            # as the demo left it (visualize later logs best-model diagnostics into the best run)
            "snapshot": comparable(uri, EXPERIMENT)}


@pytest.fixture(scope="module")
def visualized(jobs, demo, tmp_path_factory):
    """`mlviz visualize --n-boot 100` on the demo; the analysis run's artifacts downloaded."""
    job = Job("visualize", mlviz_cmd("visualize", "--tracking-uri", demo["uri"], "--experiment", EXPERIMENT,
                                     "--n-boot", "100"), demo["root"]).wait()
    client = demo["client"]
    analysis = client.search_runs([demo["exp"].experiment_id], filter_string="tags.`mlviz.analysis` = 'visualize'")
    assert len(analysis) == 1, (job.stdout, job.stderr)
    dst = tmp_path_factory.mktemp("analysis")
    folder = Path(client.download_artifacts(analysis[0].info.run_id, "mlviz", str(dst)))
    return {"job": job, "run": analysis[0], "folder": folder}


def config_of(run, varied: list[str]) -> frozenset:
    return frozenset((n, str(parse_scalar(run.data.params[n]))) for n in varied)


def parse_config(text: str) -> frozenset:
    return frozenset(tuple(part.split("=", 1)) for part in text.split(", "))


def varied_params(runs) -> list[str]:
    names = sorted({k for r in runs for k in r.data.params} - {"seed"})
    return [n for n in names if len({r.data.params.get(n) for r in runs}) > 1]


def stage2_groups(demo) -> dict[frozenset, list]:
    varied = varied_params(demo["stage1"] + demo["stage2"])
    groups: dict[frozenset, list] = {}
    for r in demo["stage2"]:
        groups.setdefault(config_of(r, varied), []).append(r)
    return groups


# --------------------------------------------------------------------------- the sweep the demo logged
def test_demo_logs_a_two_stage_sweep(jobs, demo):
    main_job = jobs["jobs"]["main"]
    assert "now run:" not in main_job.stdout  # the README's main command runs visualize itself
    assert len(demo["stage1"]) == N_TRIALS
    assert all(r.info.status == "FINISHED" for r in demo["runs"])
    for r in demo["stage1"]:
        assert r.data.tags["mlviz.stage"] == "1"
        assert r.data.params["seed"] == "0"
        assert {"train_loss", "val_loss", OBJECTIVE, "val_f1_macro", "val_auc"} <= set(r.data.metrics)
    groups = stage2_groups(demo)
    assert len(demo["stage2"]) == 2 * len(groups)
    for _config, runs in groups.items():
        assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]  # ≥ 2 seeds per configuration
        links = {r.data.tags["mlviz.stage1_run_id"] for r in runs}
        criteria = {r.data.tags["mlviz.selection_criterion"] for r in runs}
        assert len(links) == 1 and len(criteria) == 1
        linked = demo["stage1_by_id"][links.pop()]  # points at a stage-1 run of this sweep …
        for r in runs:  # … with the same hyperparameters
            assert r.data.tags["mlviz.stage"] == "2"
            assert {k: v for k, v in r.data.params.items() if k != "seed"} == \
                   {k: v for k, v in linked.data.params.items() if k != "seed"}
            assert r.data.metrics[f"stage1_{OBJECTIVE}"] == linked.data.metrics[OBJECTIVE]


def test_stage2_candidates_are_the_selection_of_the_stage1_runs(demo):
    from mlviz.analysis.selection import select_candidates
    from mlviz.sections.sweep import load_sweep

    stage1_id = next(r.info.run_id for r in demo["runs"] if r.info.run_name == "stage1")
    sweep = load_sweep(demo["uri"], experiment=EXPERIMENT, parent_run=stage1_id, metric=OBJECTIVE, mode="max")
    picks = select_candidates(sweep, per_value_k=1, top_n=2, second_metric="val_f1_macro", second_k=1,
                              per_value_params=["optimizer"]).picks
    logged = {}
    for r in demo["stage2"]:
        rank = int(r.data.tags["mlviz.stage2_rank"])
        logged[rank] = (r.data.tags["mlviz.stage1_run_id"], r.data.tags["mlviz.selection_criterion"])
    assert [logged[k] for k in sorted(logged)] == list(zip(picks["run_id"], picks["criterion"], strict=True))
    crit = picks["criterion"].tolist()
    assert crit[: 3] == ["optimizer=adam", "optimizer=adamw", "optimizer=sgd"]
    assert crit[3:5] == ["overall_val_accuracy"] * 2 and crit[5:] == ["top_val_f1_macro"]


def test_stage2_runs_log_predictions_and_images(demo, tmp_path):
    client = demo["client"]
    for r in demo["stage2"]:
        dst = tmp_path / r.info.run_id
        dst.mkdir()
        preds = pd.read_csv(client.download_artifacts(r.info.run_id, "predictions/val_predictions.csv", str(dst)))
        probs = preds[[f"prob_{d}" for d in range(10)]].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (preds["pred"].to_numpy() == probs.argmax(1)).all()
        assert r.data.metrics[OBJECTIVE] == pytest.approx((preds["pred"] == preds["label"]).mean(), abs=1e-12)
        with np.load(client.download_artifacts(r.info.run_id, "data/val_images.npz", str(dst))) as npz:
            assert npz["images"].shape == (len(preds), 1, 8, 8)
            assert (npz["labels"] == preds["label"].to_numpy()).all()
            assert (npz["sample_ids"] == preds["sample_id"].to_numpy()).all()
        contract = json.loads(Path(client.download_artifacts(r.info.run_id, "predictions/contract.json",
                                                             str(dst))).read_text())
        assert contract["task"] == "multiclass" and contract["images"] == "data/val_images.npz"
        assert len(client.get_metric_history(r.info.run_id, "val_loss")) == 3  # quick: 3 stage-2 epochs


def test_best_run_model_reproduces_its_logged_predictions(demo, tmp_path):
    import mlflow.pytorch
    import torch

    client = demo["client"]
    best = [r for r in demo["stage2"] if r.data.tags.get("mlviz.best_model") == "1"]
    assert len(best) == 1
    best = best[0]
    assert best.data.metrics[OBJECTIVE] == max(r.data.metrics[OBJECTIVE] for r in demo["stage2"])
    preds = pd.read_csv(client.download_artifacts(best.info.run_id, "predictions/val_predictions.csv", str(tmp_path)))
    with np.load(client.download_artifacts(best.info.run_id, "data/val_images.npz", str(tmp_path))) as npz:
        images = npz["images"]
    # loaded from a local copy: no process-wide tracking URI to set and put back
    # the run's logged model, loaded from where the store keeps it: no process-wide tracking URI to set
    logged = client.search_logged_models(experiment_ids=[demo["exp"].experiment_id],
                                         filter_string=f"source_run_id = '{best.info.run_id}'")
    assert len(logged) == 1
    model = mlflow.pytorch.load_model(logged[0].artifact_location, map_location="cpu")
    # MLflow 3 saves it with torch.export (pt2): a graph captured in eval mode, on which .eval() raises.
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(images)), dim=-1).numpy()
    np.testing.assert_allclose(probs, preds[[f"prob_{d}" for d in range(10)]].to_numpy(), atol=1e-5)

    # The state dict beside it rebuilds the same model from weights alone.
    from mlviz.demo.model import build_model

    cfg = json.loads(Path(client.download_artifacts(best.info.run_id, "checkpoints/model_config.json",
                                                    str(tmp_path))).read_text())
    assert cfg["factory"] == "mlviz.demo.model:build_model"
    rebuilt = build_model(cfg["config"])
    state = client.download_artifacts(best.info.run_id, "checkpoints/model_state.pt", str(tmp_path))
    rebuilt.load_state_dict(torch.load(state, weights_only=True))
    rebuilt.eval()
    with torch.no_grad():
        again = torch.softmax(rebuilt(torch.from_numpy(images)), dim=-1).numpy()
    np.testing.assert_allclose(again, probs, atol=1e-6)


# --------------------------------------------------------------------------- mlviz visualize on it
def test_visualize_succeeds(visualized):
    job = visualized["job"]
    assert job.rc == 0, job.stderr[-3000:]
    assert "Traceback" not in job.stderr
    assert "figures written to run" in job.stdout


def test_every_stage1_and_stage2_figure_with_its_numbers(visualized, demo):
    folder = visualized["folder"]
    assert (folder / "index.html").is_file() and (folder / "summary.json").is_file()
    stage1 = STAGE1_FIGURES + [f"{p}_comparison_{OBJECTIVE}" for p in CATEGORICAL]
    varied2 = varied_params(demo["stage2"])
    assert len(varied2) >= 2
    stage2 = STAGE2_FIGURES + [f"hyperparam_{p}" for p in varied2]
    missing = [f"stage1/{n}" for n in stage1 if not (folder / "stage1" / f"{n}.png").is_file()]
    missing += [f"stage2/{n}" for n in stage2 if not (folder / "stage2" / f"{n}.png").is_file()]
    assert not missing, missing
    for section, names in (("stage1", stage1), ("stage2", stage2)):
        for name in names:
            png = folder / section / f"{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert (folder / section / f"{name}.json").is_file(), f"{section}/{name}.json"
            json.loads((folder / section / f"{name}.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    made = set(summary["figures_made"])
    assert {f"mlviz/stage1/{n}.png" for n in stage1} <= made
    assert {f"mlviz/stage2/{n}.png" for n in stage2} <= made
    skipped = {(s["section"], s["figure"]) for s in summary["figures_skipped"]}
    assert not {s for s in skipped if s[0] in ("stage1", "stage2")}, summary["figures_skipped"]


def test_quick_vs_full_numbers_match_the_runs(visualized, demo):
    data = json.loads((visualized["folder"] / "stage2" / "stage2_quick_vs_full.json").read_text())
    assert data["objective"] == OBJECTIVE and data["mode"] == "max"
    assert data["stage1_source"].startswith("stage-1 run named by the mlviz.stage1_run_id tag")
    groups = stage2_groups(demo)
    ours = {}
    for config, runs in groups.items():
        linked = demo["stage1_by_id"][runs[0].data.tags["mlviz.stage1_run_id"]]
        ours[config] = (linked.data.metrics[OBJECTIVE], float(np.mean([r.data.metrics[OBJECTIVE] for r in runs])))
    assert data["n_candidates"] == len(ours) == len(data["points"])
    points = [(parse_config(p["config"]), p) for p in data["points"]]
    assert {c for c, _ in points} == set(ours)
    for config, p in points:
        s1, s2 = ours[config]
        assert p["stage1"] == pytest.approx(s1, abs=1e-12)
        assert p["stage2_mean"] == pytest.approx(s2, abs=1e-12)
        assert p["n_seeds"] == 2
        assert p["improvement"] == pytest.approx(s2 - s1, abs=1e-12)
    x = np.array([ours[c][0] for c, _ in points])
    y = np.array([ours[c][1] for c, _ in points])
    assert data["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-9)
    assert data["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-9)
    for key in ("spearman_ci", "kendall_ci"):
        lo, hi = data[key]
        assert -1 - 1e-9 <= lo <= hi <= 1 + 1e-9
    # Regret: the best stage-2 score minus that of the candidate the stage-1 score would have picked
    # (ties between stage-1 scores go to the first point, as listed).
    picked = int(np.argmax(x))
    assert data["regret"] == pytest.approx(y.max() - y[picked], abs=1e-12)
    assert data["regret"] >= 0
    k = data["top_k"]
    assert k == max(1, min(5, len(x) // 3 or 1))
    top1 = set(np.argsort(-x, kind="mergesort")[:k])
    top2 = set(np.argsort(-y, kind="mergesort")[:k])
    assert data["top_k_overlap"] == pytest.approx(len(top1 & top2) / k)


def test_seed_variance_shares(visualized, demo):
    data = json.loads((visualized["folder"] / "stage2" / "seed_variance.json").read_text())
    groups = stage2_groups(demo)
    assert data["n_configs"] == len(groups) and data["n_runs"] == len(demo["stage2"])
    for share in ("share_hyperparameters", "share_seeds"):
        assert 0.0 <= data[share] <= 1.0
    assert data["share_hyperparameters"] + data["share_seeds"] == pytest.approx(1.0, abs=1e-12)
    # One-way random-effects ANOVA, recomputed: σ²_seeds = MS_within, σ²_hp = (MS_between − MS_within)/n0.
    values = [np.array([r.data.metrics[OBJECTIVE] for r in runs]) for runs in groups.values()]
    n, k = sum(len(v) for v in values), len(values)
    grand = np.concatenate(values).mean()
    ms_within = sum(((v - v.mean()) ** 2).sum() for v in values) / (n - k)
    ms_between = sum(len(v) * (v.mean() - grand) ** 2 for v in values) / (k - 1)
    n0 = (n - sum(len(v) ** 2 for v in values) / n) / (k - 1)
    var_hp = max(0.0, (ms_between - ms_within) / n0)
    assert data["var_seeds"] == pytest.approx(ms_within, rel=1e-9)
    assert data["var_hyperparameters"] == pytest.approx(var_hp, rel=1e-9, abs=1e-15)
    assert data["share_seeds"] == pytest.approx(ms_within / (ms_within + var_hp), rel=1e-9)
    for row in data["configs"]:
        assert row["n_seeds"] >= 2 and row["min"] <= row["mean"] <= row["max"]


def test_selection_criterion_and_best_config(visualized, demo):
    folder = visualized["folder"] / "stage2"
    crit = json.loads((folder / "stage2_selection_criterion.json").read_text())
    logged = {}
    for runs in stage2_groups(demo).values():
        logged.setdefault(runs[0].data.tags["mlviz.selection_criterion"], []).append(
            float(np.mean([r.data.metrics[OBJECTIVE] for r in runs])))
    got = {g["criterion"]: sorted(g["values"]) for g in crit["groups"]}
    assert got.keys() == logged.keys()
    for c, vals in logged.items():
        np.testing.assert_allclose(got[c], sorted(vals), atol=1e-12)
    best = json.loads((folder / "best_config_summary.json").read_text())
    best_mean = max(v for vals in logged.values() for v in vals)
    assert best["stage2_mean"] == pytest.approx(best_mean, abs=1e-12)
    assert best["n_seeds"] == 2 and best["n_candidates"] == len(stage2_groups(demo))
    curves = json.loads((folder / "learning_curves.json").read_text())
    assert curves["curves"] and all(c["n_seeds"] == 2 and c["steps"] == [1, 2, 3] for c in curves["curves"])
    for c in curves["curves"]:
        assert all(lo <= m <= hi for lo, m, hi in zip(c["low"], c["mean"], c["high"], strict=True))


# --------------------------------------------------------------------------- determinism, other tasks
def comparable(uri: str, experiment: str) -> dict[str, tuple[dict, dict]]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    out = {}
    for r in runs:
        if r.data.tags.get("mlviz.analysis"):
            continue
        assert r.info.run_name not in out
        out[r.info.run_name] = (dict(r.data.params), dict(r.data.metrics))
    return out


def test_demo_is_deterministic(demo, demo_store):
    """The CLI demo (which calls `run_demo(preset='quick')`) in its own process and store, and the session's
    demo store (conftest: a direct `run_demo(..., "quick", seed 0)` call in the test process): the same params
    and metrics for every run name."""
    again = demo_store["outcome"]
    assert [again.experiment, again.n_stage1, again.n_stage2] == [EXPERIMENT, N_TRIALS, len(demo["stage2"])]
    a = demo["snapshot"]
    b = comparable(demo_store["uri"], EXPERIMENT)
    assert a.keys() == b.keys()
    assert len(a) == 2 + N_TRIALS + len(demo["stage2"])
    different = [name for name in a if a[name] != b[name]]
    assert not different, {n: (a[n], b[n]) for n in different[:3]}


def best_predictions(uri: str, experiment: str, dst: Path) -> tuple[pd.DataFrame, dict]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    best = client.search_runs([exp.experiment_id], filter_string="tags.`mlviz.best_model` = '1'")
    assert len(best) == 1
    run_id = best[0].info.run_id
    preds = pd.read_csv(client.download_artifacts(run_id, "predictions/val_predictions.csv", str(dst)))
    contract = json.loads(Path(client.download_artifacts(run_id, "predictions/contract.json", str(dst))).read_text())
    return preds, contract


def test_binary_demo(jobs, tmp_path):
    jobs["jobs"]["binary"].check()
    preds, contract = best_predictions(jobs["uris"]["binary"], "mlviz-demo-binary", tmp_path)
    columns = ["sample_id", "image_index", "label", "score", "pred"]
    assert [c for c in preds.columns if c in columns] == columns  # grouping columns may follow
    assert contract["task"] == "binary" and contract["label"] == "label" and contract["scores"] == ["score"]
    assert set(preds["label"]) == {0, 1}
    assert preds["score"].between(0, 1).all()
    assert (preds["pred"] == (preds["score"] >= 0.5).astype(int)).all()


def test_multioutput_demo(jobs, tmp_path):
    from mlviz.demo.data import HEADS, INK_CLASSES

    jobs["jobs"]["multioutput"].check()
    preds, contract = best_predictions(jobs["uris"]["multioutput"], "mlviz-demo-multioutput", tmp_path)
    expected = ["sample_id", "image_index"]
    for h in HEADS:
        expected += [f"label_{h}", *[f"prob_{h}_{c}" for c in INK_CLASSES], f"pred_{h}"]
    assert [c for c in preds.columns if c in expected] == expected  # grouping columns may follow
    assert contract["task"] == "multioutput" and list(contract["heads"]) == list(HEADS)
    for h in HEADS:
        assert contract["heads"][h] == {"label": f"label_{h}", "scores": [f"prob_{h}_{c}" for c in INK_CLASSES]}
    for h in HEADS:
        probs = preds[[f"prob_{h}_{c}" for c in INK_CLASSES]].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (preds[f"pred_{h}"].to_numpy() == probs.argmax(1)).all()
        assert set(preds[f"label_{h}"]) <= {0, 1, 2}


# --------------------------------------------------------------------------- the best model's own run
BEST_MODEL_FIGURES = ["roc_curve", "precision_recall", "metrics_vs_threshold", "score_distributions",
                      "confusion_matrix", "calibration", "slice_metrics", "hardest_samples", "case_gallery"]
PROGRESS_FIGURES = ["metrics_evolution", "score_evolution", "sample_trajectories", "late_bloomers",
                    "decision_boundary_evolution"]


def _artifact_paths(client, run_id, folder=None) -> list[str]:
    out = []
    for f in client.list_artifacts(run_id, folder):
        out += _artifact_paths(client, run_id, f.path) if f.is_dir else [f.path]
    return out


def _assert_model_sections(folder: Path, heads: list[str], summary_name: str) -> dict:
    """Every best_model/, training_progress/ and heatmaps/ figure with its numbers, under folder/mlviz."""
    for section, names in (("best_model", BEST_MODEL_FIGURES), ("training_progress", PROGRESS_FIGURES)):
        for name in names:
            assert (folder / section / f"{name}.png").read_bytes()[:4] == b"\x89PNG", f"{section}/{name}"
            json.loads((folder / section / f"{name}.json").read_text())
    heat = folder / "heatmaps"
    for gallery in ("gradcam_correct_gallery", "gradcam_error_gallery"):
        assert (heat / f"{gallery}.png").is_file() and (heat / f"{gallery}.json").is_file(), gallery
    per_head = {h: sorted(heat.glob(f"heatmap_{h}_*.png")) for h in heads}
    assert all(len(v) == len(per_head[heads[0]]) >= 4 for v in per_head.values()), per_head
    data = json.loads(per_head[heads[0]][0].with_suffix(".json").read_text())
    assert data["is_cam"] and data["method"] == "gradcam" and data["faithfulness"]["gradcam"]["metrics"]
    summary = json.loads((folder / summary_name).read_text())
    made = set(summary["figures_made"])
    assert {f"mlviz/heatmaps/{p.name}" for ps in per_head.values() for p in ps} <= made
    assert not [s for s in summary["figures_skipped"] if not s["figure"].startswith("regression")], \
        summary["figures_skipped"]
    return summary


def test_stage2_runs_log_heatmaps_by_epoch(demo):
    """The first seed of each candidate logs Grad-CAM grids at epochs 1 and 3 under one image key."""
    client = demo["client"]
    for run in demo["stage2"]:
        images = [p for p in _artifact_paths(client, run.info.run_id, "images")
                  if p.startswith("images/mlviz_heatmaps+step+") and p.endswith(".png") and "compressed" not in p]
        steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in images)
        assert steps == ([1, 3] if run.data.params["seed"] == "0" else []), (run.info.run_name, steps)


def test_visualize_logs_diagnostics_and_heatmaps_into_the_best_run(visualized, demo, tmp_path):
    client = demo["client"]
    diagnosed = client.search_runs([demo["exp"].experiment_id], filter_string="tags.`mlviz.diagnostics` = 'best_model'")
    assert len(diagnosed) == 1
    best_id = diagnosed[0].info.run_id
    best = client.get_run(best_id)
    assert best.data.tags.get("mlviz.best_model") == "1"  # the stage-2 best, which logged the MLflow model
    folder = Path(client.download_artifacts(best_id, "mlviz", str(tmp_path)))
    summary = _assert_model_sections(folder, ["digit"], "best_model_summary.json")
    html = (folder / "index.html").read_text()
    assert html.count("<img") == len(summary["figures_made"]) and "Attribution heatmaps" in html
    roc = json.loads((folder / "best_model" / "roc_curve.json").read_text())
    assert best.data.metrics["mlviz.auc"] == pytest.approx(summary["headline_metrics"]["mlviz.auc"])
    assert 0.5 < best.data.metrics["mlviz.auc"] <= 1.0 and roc
    assert 0.0 <= best.data.metrics["mlviz.ece"] <= 1.0


@pytest.mark.parametrize("task, heads", [("binary", ["is_3"]),
                                         ("multioutput", ["top_left", "top_right", "bottom_left", "bottom_right"])])
def test_best_model_of_the_other_demos(jobs, tmp_path, task, heads):
    """`mlviz best-model -e` on the binary and multi-output demos: every figure, heatmaps per head."""
    jobs["jobs"][task].check()
    uri = jobs["uris"][task]
    out = tmp_path / "out"
    job = Job("best", mlviz_cmd("best-model", "--tracking-uri", uri, "-e", f"mlviz-demo-{task}", "--n-boot", "50",
                                "--out", str(out)), tmp_path).wait()
    assert job.rc == 0, job.stderr[-3000:]
    _assert_model_sections(out / "mlviz", heads, "best_model_summary.json")


def test_best_run_logs_penultimate_embeddings(demo, tmp_path):
    """The best run's embeddings are its model's penultimate features of the validation images, with one
    metadata row (the predictions contract's columns) per embedded image."""
    import torch

    from mlviz.demo.model import build_model

    client = demo["client"]
    best = next(r for r in demo["stage2"] if r.data.tags.get("mlviz.best_model") == "1").info.run_id
    emb = np.load(client.download_artifacts(best, "embeddings/penultimate.npy", str(tmp_path)))
    meta = pd.read_csv(client.download_artifacts(best, "embeddings/metadata.csv", str(tmp_path)))
    with np.load(client.download_artifacts(best, "data/val_images.npz", str(tmp_path))) as npz:
        images, ids = npz["images"], npz["sample_ids"]
    assert emb.ndim == 2 and emb.shape[0] == len(images) == len(meta) and emb.shape[1] >= 8
    assert (meta["sample_id"].to_numpy() == ids).all()
    cfg = json.loads(Path(client.download_artifacts(best, "checkpoints/model_config.json", str(tmp_path))).read_text())
    model = build_model(cfg["config"])
    model.load_state_dict(torch.load(client.download_artifacts(best, "checkpoints/model_state.pt", str(tmp_path)),
                                     weights_only=True))
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(model.embed(torch.from_numpy(images)).numpy(), emb, atol=1e-5)


# --------------------------------------------------------------------------- one publish path, same trees
TREES = json.loads((Path(__file__).parent / "data" / "artifact_trees_before_publish.json").read_text())


def _normalised(paths) -> list[str]:
    """Image-grid files carry a timestamp and a uuid: keep their key only."""
    return sorted({("images/" + p.split("/", 1)[1].split("+step+")[0]) if p.startswith("images/") else p
                   for p in paths})


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                  if not _added_since(p.relative_to(folder).as_posix()))


def _added_since(path: str) -> bool:
    """The embedding/ section (and its image key), added to the best model's report after the recording."""
    return "mlviz/embedding/" in path or path.startswith("images/mlviz_embedding")


def test_one_publish_path_keeps_every_artifact_tree(visualized, demo, tmp_path):
    """visualize (logged and --out), best-model --out and heatmaps --out write exactly the files they wrote
    before every section went through mlviz.publish (recorded on the same demo, see tests/data)."""
    client = demo["client"]
    analysis = visualized["run"].info.run_id
    best_id = client.get_run(analysis).data.tags["mlviz.best_run_id"]
    logged = [p for p in _artifact_paths(client, analysis) if not p.startswith("mlviz/tables/")]
    assert _normalised(logged) == TREES["analysis_run"]
    model = _normalised(p for p in _artifact_paths(client, best_id)
                        if not p.startswith("images/mlviz_heatmaps") and not _added_since(p))
    assert model == TREES["model_run"]
    for name, args in (("visualize_out", ["visualize", "-e", EXPERIMENT, "--n-boot", "50"]),
                       ("best_model_out", ["best-model", "--run", best_id, "--n-boot", "50"]),
                       ("heatmaps_out", ["heatmaps", "--run", best_id])):
        out = tmp_path / name
        Job(name, mlviz_cmd(*args, "--tracking-uri", demo["uri"], "--out", str(out)), demo["root"]).wait().check()
        assert _files(out) == TREES[name], name
