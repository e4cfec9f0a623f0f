"""`mlviz best-model` end to end on a real SQLite store: numbers logged into the model's own run against
scikit-learn, Parquet predictions, a sweep's top-k, seed 000's layout from import to diagnostics, and the
bad inputs a user gives (one line, exit code 2, the store unchanged)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, describe_result, run_cli, sqlite_dump
from mlflow import MlflowClient
from mlflow.entities import Metric

pytestmark = pytest.mark.usefixtures("clean_env")
N_BOOT = "50"


def _digits_probabilities(seed: int, c: float):
    """Real predictions: a logistic regression on scikit-learn's digits, validation half."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x / 16.0, y, test_size=0.4, random_state=seed, stratify=y)
    probs = LogisticRegression(C=c, max_iter=300).fit(xtr, ytr).predict_proba(xva)
    frame = pd.DataFrame({"sample_id": np.arange(len(yva)), "label": yva})
    for k in range(10):
        frame[f"prob_{k}"] = probs[:, k]
    frame["stroke"] = np.where(xva.sum(1) > np.median(xva.sum(1)), "heavy", "light")
    return frame


def _log_run(client, exp, name, frame: pd.DataFrame | None, tmp, path="predictions/val_predictions.csv",
             accuracy=None):
    rid = client.create_run(exp, run_name=name).info.run_id
    if frame is not None:
        local = tmp / name / path
        local.parent.mkdir(parents=True)
        frame.to_parquet(local, index=False) if path.endswith(".parquet") else frame.to_csv(local, index=False)
        client.log_artifact(rid, str(local), str(local.parent.relative_to(tmp / name)))
    if accuracy is not None:
        client.log_batch(rid, metrics=[Metric("val_accuracy", accuracy, 0, 0)])
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("best-model")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("digits-lr", artifact_location=str(root / "artifacts"))
    tmp = root / "src"
    good = _digits_probabilities(0, 1.0)
    weak = _digits_probabilities(1, 0.01)
    runs = {
        "good": _log_run(client, exp, "good", good, tmp, accuracy=0.96),
        "weak": _log_run(client, exp, "weak", weak, tmp, accuracy=0.90),
        "parquet": _log_run(client, exp, "parquet", good, tmp, path="eval/preds.parquet"),
        "none": _log_run(client, exp, "none", None, tmp),
    }
    bad = {
        "no_label": good.drop(columns=["label"]),
        "out_of_range": good.assign(prob_3=good["prob_3"] + 1.5),
        "not_summing": good.assign(prob_0=good["prob_0"] * 0.2),
        "nan_scores": good.assign(prob_2=np.where(np.arange(len(good)) == 7, np.nan, good["prob_2"])),
    }
    for name, frame in bad.items():
        runs[name] = _log_run(client, exp, name, frame, tmp)
    return {"uri": uri, "db": root / "mlflow.db", "client": client, "exp": exp, "runs": runs, "good": good,
            "weak": weak}


def test_diagnostics_logged_into_the_run_match_sklearn(store, tmp_path):
    from sklearn.metrics import roc_auc_score

    client, rid = store["client"], store["runs"]["good"]
    r = run_cli("best-model", "--tracking-uri", store["uri"], "--run", rid, "--n-boot", N_BOOT)
    assert r.exit_code == 0, describe_result(r)
    good = store["good"]
    probs = good[[f"prob_{k}" for k in range(10)]].to_numpy()
    metrics = client.get_run(rid).data.metrics
    assert metrics["mlviz.auc"] == pytest.approx(roc_auc_score(good["label"], probs, multi_class="ovr"), abs=1e-9)
    assert metrics["mlviz.accuracy"] == pytest.approx((probs.argmax(1) == good["label"]).mean(), abs=1e-12)
    assert metrics["mlviz.n_samples"] == len(good)
    folder = tmp_path / "dl"
    folder.mkdir()
    local = client.download_artifacts(rid, "mlviz", str(folder))
    slices = json.loads(open(f"{local}/best_model/slice_metrics.json").read())
    assert "stroke" in json.dumps(slices)  # the grouping column became slices
    assert (folder / "mlviz" / "index.html").is_file()

    def grid_images():
        names = [f.path.split("/")[-1] for f in client.list_artifacts(rid, "images")]
        return sorted(n.split("+step+")[0] for n in names if n.endswith(".png") and "compressed" not in n)

    expected = ["mlviz_calibration", "mlviz_case_gallery", "mlviz_confusion_matrix", "mlviz_precision_recall",
                "mlviz_roc_curve"]
    assert grid_images() == expected  # the UI's image grid shows these side by side across runs
    again = run_cli("best-model", "--tracking-uri", store["uri"], "--run", rid, "--n-boot", N_BOOT)
    assert again.exit_code == 0, describe_result(again)
    assert grid_images() == expected  # replaced, not piled up


def test_parquet_predictions_by_path(store, tmp_path):
    out = tmp_path / "out"
    r = run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["runs"]["parquet"],
                "--predictions", "eval/preds.parquet", "--n-boot", N_BOOT, "--out", out)
    assert r.exit_code == 0, describe_result(r)
    summary = json.loads((out / "mlviz" / "best_model_summary.json").read_text())
    assert summary["run"]["predictions"] == "eval/preds.parquet"
    assert "mlviz/best_model/roc_curve.png" in summary["figures_made"]


def test_top_k_of_a_sweep(store, tmp_path):
    out = tmp_path / "out"
    before = sqlite_dump(store["db"])
    r = run_cli("best-model", "--tracking-uri", store["uri"], "-e", "digits-lr", "--metric", "val_accuracy",
                "--top-k", "2", "--n-boot", N_BOOT, "--out", out)
    assert r.exit_code == 0, describe_result(r)
    assert sqlite_dump(store["db"]) == before  # --out logs nothing
    good, weak = store["runs"]["good"], store["runs"]["weak"]
    folders = sorted(p.name for p in out.iterdir())
    assert folders == [f"01-{good[:8]}", f"02-{weak[:8]}"]  # ranked by val_accuracy
    auc = [json.loads((out / f / "mlviz" / "best_model_summary.json").read_text())["headline_metrics"]["mlviz.auc"]
           for f in folders]
    assert auc[0] > auc[1]  # the weaker model (C=0.01) ranks lower on AUC too


@pytest.mark.parametrize("run, fragments", [
    ("none", ["logged no predictions artifact"]),
    ("no_label", ["label"]),
    ("out_of_range", ["prob_3", "[0, 1]"]),
    ("not_summing", ["sum to 1", "renormalis"]),
    ("nan_scores", ["prob_2", "missing or infinite", "rows 7"]),
])
def test_bad_predictions_one_line_and_the_store_unchanged(store, run, fragments):
    before = sqlite_dump(store["db"])
    r = run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["runs"][run], "--n-boot", N_BOOT)
    assert_one_line_error(r, *fragments)
    assert sqlite_dump(store["db"]) == before


def test_unknown_artifact_and_unknown_run(store):
    assert_one_line_error(run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["runs"]["good"],
                                  "--predictions", "nope.csv"), "no artifact 'nope.csv'")
    assert_one_line_error(run_cli("best-model", "--tracking-uri", store["uri"], "--run", "0" * 32), "0" * 32)


def test_seed_000_layout_from_import_to_diagnostics(tmp_path):
    """Seed 000's run folder (metrics_epoch.csv, val_predictions.csv with label + prob_header) imported, then
    diagnosed with no column options at all: prob_header is the positive class's probability."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    folder = tmp_path / "csn_16frames_test"
    folder.mkdir()
    pd.DataFrame({"epoch": np.arange(1, 6), "train_loss": np.linspace(1, 0.2, 5), "val_loss": np.linspace(1, 0.4, 5),
                  "val_f1": np.linspace(0.3, 0.8, 5)}).to_csv(folder / "metrics_epoch.csv", index=False)
    label = rng.integers(0, 2, 400)
    prob = np.clip(0.35 * label + rng.uniform(0, 0.65, 400), 0, 1)
    pd.DataFrame({"label": label, "prob_header": prob}).to_csv(folder / "val_predictions.csv", index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = run_cli("import", "epochs", folder, "--tracking-uri", uri, "-e", "header")
    assert r.exit_code == 0, describe_result(r)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("header").experiment_id])[0]
    r = run_cli("best-model", "--tracking-uri", uri, "--run", run.info.run_id, "--n-boot", N_BOOT)
    assert r.exit_code == 0, describe_result(r)
    m = client.get_run(run.info.run_id).data.metrics
    assert m["mlviz.auc"] == pytest.approx(roc_auc_score(label, prob), abs=1e-12)
    assert m["mlviz.ap"] == pytest.approx(average_precision_score(label, prob), abs=1e-12)
    assert 0 <= m["mlviz.ece"] <= 1 and m["mlviz.n_samples"] == 400


def test_images_named_by_path_become_thumbnails(tmp_path):
    """Predictions that name each image by an artifact path (no image array): the galleries show them."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    x, y = x[:300] / 16.0, (y[:300] == 3).astype(int)
    score = LogisticRegression(C=0.05, max_iter=300).fit(x[::2], y[::2]).predict_proba(x)[:, 1]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("by-path", artifact_location=str(tmp_path / "artifacts"))
    rid = client.create_run(exp).info.run_id
    pics = tmp_path / "src" / "images"
    pics.mkdir(parents=True)
    for i in range(len(x)):
        Image.fromarray((x[i].reshape(8, 8) * 255).astype(np.uint8)).resize((32, 32)).save(pics / f"s{i:03d}.png")
    client.log_artifacts(rid, str(pics), "images")
    frame = pd.DataFrame({"sample_id": np.arange(len(x)), "label": y, "score": score,
                          "image_path": [f"images/s{i:03d}.png" for i in range(len(x))]})
    frame.to_csv(tmp_path / "src" / "val_predictions.csv", index=False)
    client.log_artifact(rid, str(tmp_path / "src" / "val_predictions.csv"), "predictions")
    client.set_terminated(rid, "FINISHED")
    out = tmp_path / "out"
    r = run_cli("best-model", "--tracking-uri", uri, "--run", rid, "--n-boot", N_BOOT, "--out", out)
    assert r.exit_code == 0, describe_result(r)
    for name in ("case_gallery", "hardest_samples"):
        data = json.loads((out / "mlviz" / "best_model" / f"{name}.json").read_text())
        assert data["pixels"]["shape"][0] == len(data["table"]) and data["pixels"]["shape"][1:3] == [96, 96]
        assert "from the 'image_path' column" in data["pixels"]["note"] and "not found" not in data["pixels"]["note"]
        assert all(row["image_path"].startswith("images/s") for row in data["table"])
