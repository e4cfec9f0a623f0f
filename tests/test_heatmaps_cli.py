"""`mlviz heatmaps` and the heatmaps/ section of `mlviz best-model`, end to end on a real SQLite store.

The run is laid out as `mlviz demo` logs a stage-2 run (state dict + model_config.json, validation
images, predictions with their contract) by the demo's own logging code, for a small CNN trained here on
the multi-output digits task (one head per image quadrant).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, describe_result, run_cli, sqlite_dump

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from mlflow import MlflowClient  # noqa: E402

HEADS = ["top_left", "top_right", "bottom_left", "bottom_right"]
pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with one demo-style run (`model_run`) and one run that logged no model (`bare_run`)."""
    from mlviz.demo.data import load_task
    from mlviz.demo.sweep import _log_predictions
    from mlviz.demo.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("heatmap-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("cams", artifact_location=str(root / "artifacts"))
    task = load_task("multioutput")
    params = {"learning_rate": 3e-3, "weight_decay": 1e-4, "dropout": 0.0, "channels": 8, "depth": 2,
              "optimizer": "adam", "activation": "relu", "augment": False, "batch_size": 64}
    result = train(params, task, 3, seed=0)
    model_run = client.create_run(exp, run_name="with-model").info.run_id
    _log_predictions(client, model_run, task, result)
    client.set_terminated(model_run, "FINISHED")
    bare_run = client.create_run(exp, run_name="no-model").info.run_id
    client.log_metric(bare_run, "val_accuracy", 0.5)
    client.set_terminated(bare_run, "FINISHED")
    return {"uri": uri, "db": root / "mlflow.db", "client": client, "model_run": model_run, "bare_run": bare_run,
            "task": task, "root": root}


def _artifacts(client, run_id, folder=None):
    out = []
    for f in client.list_artifacts(run_id, folder):
        out += _artifacts(client, run_id, f.path) if f.is_dir else [f.path]
    return out


def test_heatmaps_logged_into_the_run(store, tmp_path):
    client, rid = store["client"], store["model_run"]
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", rid, "--samples", "4",
                "--faithfulness", "gradcam,occlusion")
    assert r.exit_code == 0, describe_result(r)
    assert "heatmaps of run" in r.output and "Grad-CAM" in r.output
    paths = set(_artifacts(client, rid, "mlviz"))
    summary = json.loads(open(client.download_artifacts(rid, "mlviz/heatmaps_summary.json", str(tmp_path))).read())
    ids = summary["samples"]["sample_ids"]
    assert len(ids) == 4 and summary["samples"]["selection"] == "balanced"
    for h in HEADS:  # one map per output head and sample
        for sid in ids:
            assert {f"mlviz/heatmaps/heatmap_{h}_{sid}.png", f"mlviz/heatmaps/heatmap_{h}_{sid}.json"} <= paths
    assert "mlviz/heatmaps/gradcam_correct_gallery.png" in paths
    assert "mlviz/heatmaps_index.html" in paths
    data = json.loads(open(client.download_artifacts(rid, f"mlviz/heatmaps/heatmap_top_right_{ids[0]}.json",
                                                     str(tmp_path))).read())
    assert data["is_cam"] and data["method"] == "gradcam" and data["output"] == "top_right"
    m = np.array(data["map"])
    assert m.shape == (8, 8) and 0.0 <= m.min() and m.max() <= 1.0
    assert set(data["faithfulness"]) == {"gradcam", "occlusion"}  # a score per method in the JSON
    assert data["faithfulness"]["occlusion"]["is_cam"] is False
    assert client.get_run(rid).data.tags["mlviz.heatmaps"] == "gradcam"
    html = open(client.download_artifacts(rid, "mlviz/heatmaps_index.html", str(tmp_path))).read()
    assert html.count("<img") == sum(p.endswith(".png") for p in paths if p.startswith("mlviz/heatmaps/"))


def test_out_folder_leaves_the_store_unchanged(store, tmp_path):
    before = sqlite_dump(store["db"])
    out = tmp_path / "out"
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", store["model_run"], "--samples", "2",
                "--method", "gradcam++", "--select", "misclassified", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    assert sqlite_dump(store["db"]) == before
    files = sorted(p.name for p in (out / "mlviz" / "heatmaps").iterdir())
    assert len([f for f in files if f.startswith("heatmap_") and f.endswith(".png")]) == 2 * len(HEADS)
    summary = json.loads((out / "mlviz" / "heatmaps_summary.json").read_text())
    assert summary["attribution"]["method"] == "gradcam++"
    tile = json.loads((out / "mlviz" / "heatmaps" / "gradcam_error_gallery.json").read_text())["tiles"][0]
    assert tile["true_class"] != tile["predicted_class"]  # misclassified samples were chosen


def test_a_bad_layer_with_a_fallback_draws_a_labelled_alternative(store, tmp_path):
    out = tmp_path / "out"
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", store["model_run"], "--samples", "2",
                "--layer", "no.such.layer", "--fallback", "occlusion", "--out", out)
    assert r.exit_code == 0, describe_result(r)
    assert "no.such.layer" in r.output and "drew occlusion instead" in r.output
    data = json.loads(next((out / "mlviz" / "heatmaps").glob("heatmap_top_left_*.json")).read_text())
    assert data["method"] == "occlusion" and data["is_cam"] is False
    assert "not a CAM" in data["method_label"]


@pytest.mark.parametrize("args, fragments", [
    (["--layer", "no.such.layer"], ["no.such.layer"]),
    (["--method", "bogus-cam"], ["unknown attribution method", "bogus-cam"]),
    (["--target", "17"], ["target class 17 is out of range"]),
    (["--target", "sideways"], ["--target must be"]),
])
def test_bad_options_one_line(store, tmp_path, args, fragments):
    before = sqlite_dump(store["db"])
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", store["model_run"], "--samples", "2",
                *args)
    assert_one_line_error(r, *fragments)
    assert sqlite_dump(store["db"]) == before


def test_a_run_without_a_model(store):
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", store["bare_run"])
    assert_one_line_error(r, "logged no model")


def test_images_of_the_wrong_shape(store, tmp_path):
    from PIL import Image

    folder = tmp_path / "rgb"
    folder.mkdir()
    for i in range(3):  # colour 16×16 images for a model of 1-channel 8×8 digits
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(folder / f"img{i}.png")
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", store["model_run"], "--images", folder,
                "--select", "random")
    assert_one_line_error(r, "channel")


def test_a_model_that_does_not_load(store, tmp_path):
    client = store["client"]
    exp = client.get_run(store["model_run"]).info.experiment_id
    rid = client.create_run(exp, run_name="corrupt").info.run_id
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "model_state.pt").write_bytes(b"not a checkpoint at all")
    (ckpt / "model_config.json").write_text(json.dumps({"factory": "mlviz.demo.model:build_model", "config": {}}))
    client.log_artifacts(rid, str(ckpt), "checkpoints")
    client.log_artifacts(rid, str(store["root"] / "artifacts" / store["model_run"] / "artifacts" / "data"), "data")
    client.set_terminated(rid, "FINISHED")
    r = run_cli("heatmaps", "--tracking-uri", store["uri"], "--run", rid)
    assert_one_line_error(r, "model_state.pt")


def test_best_model_adds_heatmaps_to_the_same_index(store, tmp_path):
    out = tmp_path / "out"
    r = run_cli("best-model", "--tracking-uri", store["uri"], "--run", store["model_run"], "--n-boot", "50",
                "--out", out)
    assert r.exit_code == 0, describe_result(r)
    summary = json.loads((out / "mlviz" / "best_model_summary.json").read_text())
    made = summary["figures_made"]
    assert any(f.startswith("mlviz/best_model/") for f in made)
    heat = [f for f in made if f.startswith("mlviz/heatmaps/")]
    assert len(heat) >= len(HEADS) and all((out / f).is_file() for f in heat)
    html = (out / "mlviz" / "index.html").read_text()
    assert "Attribution heatmaps" in html and html.count("<img") == len(made)
    gallery = json.loads((out / "mlviz" / "best_model" / "case_gallery.json").read_text())
    assert gallery["pixels"]["overlay"].startswith("Grad-CAM for the predicted class")  # maps over the thumbnails
    assert gallery["pixels"]["shape"][0] == len(gallery["table"])
