"""Loading a run's model and images (weights only, pickles refused), the heatmaps/ files and their JSON,
and the training-loop callback."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from mlviz.attribution.cam import compute_cams  # noqa: E402
from mlviz.attribution.hooks import hook_count  # noqa: E402
from mlviz.attribution.load import load_model, load_samples  # noqa: E402
from mlviz.errors import MlvizError  # noqa: E402
from mlviz.sections.heatmap_figures import heatmap_figures, heatmap_report, run_heatmap_figures  # noqa: E402
from mlviz.sections.training_heatmaps import HeatmapCallback  # noqa: E402
from tests.attribution_tasks import FlatHeadCNN, fit, quadrant_task  # noqa: E402

FACTORY = "mlviz.demo.model:build_model"
HEADS = ["top_left", "top_right", "bottom_left", "bottom_right"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, one_thread):
    """A run folder laid out as `mlviz demo` logs a stage-2 run: the multi-output digits task, briefly trained."""
    from mlviz.demo.data import load_task
    from mlviz.demo.sweep import contract, predictions_frame
    from mlviz.demo.train import train

    task = load_task("multioutput")
    params = {"learning_rate": 3e-3, "weight_decay": 1e-4, "dropout": 0.0, "channels": 8, "depth": 2,
              "optimizer": "adam", "activation": "relu", "augment": False, "batch_size": 64}
    result = train(params, task, 3, seed=0)
    root = tmp_path_factory.mktemp("run")
    for d in ("predictions", "data", "checkpoints"):
        (root / d).mkdir()
    predictions_frame(task, result.epochs[-1].probs).to_csv(root / "predictions/val_predictions.csv", index=False)
    (root / "predictions/contract.json").write_text(json.dumps(contract(task)))
    np.savez_compressed(root / "data/val_images.npz", images=task.x_val, labels=task.y_val, sample_ids=task.val_ids,
                        class_names=np.array(task.class_names), head_names=np.array(task.head_names))
    torch.save(result.model.state_dict(), root / "checkpoints/model_state.pt")
    (root / "checkpoints/model_config.json").write_text(json.dumps({"factory": FACTORY, "config": result.config}))
    return root, result.model.eval(), task


# --------------------------------------------------------------------------- models
def test_state_dict_and_factory(demo_run):
    root, model, task = demo_run
    loaded = load_model(root)
    assert loaded.source == "state_dict" and loaded.factory == FACTORY and not loaded.model.training
    x = torch.as_tensor(task.x_val[:5])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    assert load_model(root / "checkpoints").source == "state_dict"
    assert load_model(root / "checkpoints/model_state.pt").config == loaded.config


def test_corrupt_and_code_carrying_checkpoints_are_refused(demo_run, tmp_path):
    root, model, _ = demo_run
    cfg = (root / "checkpoints/model_config.json").read_text()
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "model_config.json").write_text(cfg)
    (bad / "model_state.pt").write_bytes((root / "checkpoints/model_state.pt").read_bytes()[:200])
    with pytest.raises(MlvizError, match="not a readable PyTorch file") as err:
        load_model(bad)
    assert "\n" not in str(err.value)

    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "model_config.json").write_text(cfg)
    torch.save(model, whole / "model_state.pt")  # a pickled module, not a state dict
    with pytest.raises(MlvizError, match="pickled Python objects.*weights_only=True"):
        load_model(whole)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model_config.json").write_text(cfg)
    torch.save({"weight": Evil()}, evil / "model_state.pt")
    with pytest.raises(MlvizError, match="pickled Python objects"):
        load_model(evil)
    assert not marker.exists()  # refused before anything ran

    (tmp_path / "nothing").mkdir()
    with pytest.raises(MlvizError, match="no model in"):
        load_model(tmp_path / "nothing")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    torch.save(model.state_dict(), wrong / "model_state.pt")
    (wrong / "model_config.json").write_text(json.dumps({"factory": FACTORY, "config": {"n_heads": 2}}))
    with pytest.raises(MlvizError, match="does not fit the model"):
        load_model(wrong)
    (wrong / "model_config.json").write_text(json.dumps({"factory": "no.such.module:build", "config": {}}))
    with pytest.raises(MlvizError, match="cannot import the model factory"):
        load_model(wrong)


def test_mlflow_models_pt2_loaded_and_pickle_refused(demo_run, tmp_path):
    import mlflow.pytorch

    root, model, task = demo_run
    pt2 = tmp_path / "pt2"
    mlflow.pytorch.save_model(model, str(pt2), serialization_format="pt2", input_example=task.x_val[:2],
                              pip_requirements=["torch"])
    loaded = load_model(pt2)
    assert loaded.source == "mlflow_pt2"
    x = task.x_val[:6]
    ours = compute_cams(loaded.model, x, "gradcam")  # hooks work on the unflattened export
    ref = compute_cams(model, x, "gradcam")
    assert ours.layer["name"] == ref.layer["name"] == "features.4"
    np.testing.assert_allclose(ours.maps, ref.maps, atol=1e-5)
    assert hook_count(loaded.model) == 0

    pickled = tmp_path / "pickled"
    mlflow.pytorch.save_model(model, str(pickled), serialization_format="pickle", pip_requirements=["torch"])
    with pytest.raises(MlvizError, match="is a pickle"):
        load_model(pickled)


# --------------------------------------------------------------------------- images
def test_samples_from_a_run(demo_run):
    root, model, task = demo_run
    a = load_samples(root, n=6, select="random", seed=3)
    b = load_samples(root, n=6, select="random", seed=3)
    np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
    assert a.images.shape == (6, 1, 8, 8) and a.head_names == HEADS and a.class_names == ["low", "medium", "high"]
    preds = pd.read_csv(root / "predictions/val_predictions.csv")
    wrong = (preds[[f"label_{h}" for h in HEADS]].to_numpy() != preds[[f"pred_{h}" for h in HEADS]].to_numpy()).any(1)
    mis = load_samples(root, n=5, select="misclassified")
    assert wrong[mis.indices].all() and not mis.correct.any()
    right = load_samples(root, n=5, select="correct")
    assert not wrong[right.indices].any()
    bal = load_samples(root, n=6, select="balanced")
    assert bal.correct.sum() == 3 and len(bal) == 6
    np.testing.assert_array_equal(bal.labels, task.y_val[bal.indices])
    with pytest.raises(MlvizError, match="select must be one of"):
        load_samples(root, select="best")


def test_samples_from_a_folder_of_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{cls}{i}.png")
    s = load_samples(tmp_path, n=4, select="random", seed=0)
    assert s.images.shape == (4, 3, 10, 12) and s.images.max() <= 1 and s.class_names == ["cat", "dog"]
    assert all(str(i).startswith(("cat", "dog")) for i in s.sample_ids)
    assert load_samples(tmp_path, n=2, select="balanced").notes  # no predictions: random, and says so
    grey = load_samples(tmp_path, n=2, select="first", size=(4, 6), channels=1)
    assert grey.images.shape == (2, 1, 4, 6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlvizError, match="no PNG or JPG"):
        load_samples(tmp_path / "empty", n=1)


# --------------------------------------------------------------------------- the heatmaps/ section
def test_run_heatmap_figures_published_to_a_folder(demo_run, tmp_path):
    from mlviz.publish import ToFolder, publish

    root, _, _ = demo_run
    report = run_heatmap_figures(root, n=4, select="balanced", faithfulness_methods=["gradcam", "occlusion"],
                                 faithfulness_samples=4, threads=1)
    summary = publish(report, ToFolder(tmp_path), echo=lambda _: None).summary
    out = tmp_path / "mlviz" / "heatmaps"
    names = set(os.listdir(out))
    ids = summary["samples"]["sample_ids"]
    for h in HEADS:
        for sid in ids:
            assert f"heatmap_{h}_{sid}.png" in names and f"heatmap_{h}_{sid}.json" in names
    assert {"gradcam_correct_gallery.png", "gradcam_error_gallery.png"} <= names
    data = json.loads((out / f"heatmap_top_left_{ids[0]}.json").read_text())
    assert data["method"] == "gradcam" and data["is_cam"] and data["output"] == "top_left"
    assert data["layer"]["name"] == "features.4" and np.array(data["map"]).shape == (8, 8)
    assert data["predicted_class"] in ("low", "medium", "high")
    assert set(data["faithfulness"]) == {"gradcam", "occlusion"}
    road = data["faithfulness"]["occlusion"]["metrics"]["road_combined"]
    assert {"mean", "ci95", "random_baseline", "per_output"} <= set(road)
    gallery = json.loads((out / "gradcam_error_gallery.json").read_text())
    assert gallery["kind"] == "error" and gallery["tiles"]
    assert all(t["true_class"] != t["predicted_class"] for t in gallery["tiles"])
    probs = [t["probability"] for t in gallery["tiles"]]
    assert probs == sorted(probs, reverse=True)  # most confident mistakes first
    assert summary["model"]["source"] == "state_dict" and summary["figures_skipped"] == []


def test_report_results_skips_and_labels(tmp_path, one_thread):
    x, y = quadrant_task(200, seed=0)
    torch.manual_seed(0)
    model = FlatHeadCNN()
    fit(model, x, y, epochs=4)
    xt, yt = quadrant_task(4, seed=5)
    results, faith, skipped = heatmap_report(model, xt, yt, ["a", "b", "c", "d"], method="hirescam",
                                             head_names=["q0", "q1", "q2", "q3"], faithfulness_methods=False)
    assert faith == {} and ("heatmaps", "heatmap_q2_c") in results
    data, make = results[("heatmaps", "heatmap_q2_c")]
    fig = make()
    assert fig.axes and "HiResCAM" in fig._suptitle.get_text()
    from mlviz.analysis.stats import to_jsonable

    json.dumps(to_jsonable(data), allow_nan=False)
    if (model(torch.as_tensor(xt)).argmax(-1).numpy() == yt).all():
        assert {s["figure"] for s in skipped} == {"gradcam_error_gallery"}

    # no labels: both galleries skipped, with the reason
    _, _, skipped = heatmap_report(model, xt, None, None, method="occlusion", faithfulness_methods=False)
    assert {s["figure"] for s in skipped} == {"gradcam_correct_gallery", "gradcam_error_gallery"}
    assert all("no labels" in s["reason"] for s in skipped)

    from mlviz.publish import ToFolder, publish

    report = heatmap_figures(model, xt, yt, method="occlusion", faithfulness_methods=False)
    summary = publish(report, ToFolder(tmp_path / "occ"), echo=lambda _: None).summary
    one = json.loads((tmp_path / "occ" / "mlviz" / "heatmaps" / "heatmap_output0_0.json").read_text())
    assert one["is_cam"] is False and "not a CAM" in one["method_label"]  # never presented as a CAM
    assert summary["attribution"]["is_cam"] is False


def test_empty_map_is_stated_not_drawn():
    from mlviz.render import overlay

    fig, ax = overlay.style.subplots(1, 1, 2, 2)
    overlay.draw_overlay(ax[0, 0], np.zeros((8, 8)), np.zeros((8, 8)), empty=True)
    assert len(ax[0, 0].images) == 1 and "no positive evidence" in ax[0, 0].texts[0].get_text()
    import matplotlib

    cmap = matplotlib.colormaps["mlviz_heat"]
    r0, g0, b0, _ = cmap(0.0)
    r1, g1, b1, _ = cmap(1.0)
    assert b0 > g0 and r0 > g0 and r1 > 0.8 and g1 < 0.2  # purple → ... → red
    assert cmap(0.5)[1] > cmap(0.5)[0]  # green in the middle


def test_callback_in_a_training_loop(one_thread):
    x, y = quadrant_task(128, seed=0)
    torch.manual_seed(0)
    model = FlatHeadCNN()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    logged = []
    cb = HeatmapCallback(model, x[:3], every_n_epochs=2, log_fn=lambda e, img: logged.append((e, img)),
                         method="hirescam", head_names=["a", "b", "c", "d"])
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for epoch in range(1, 5):
        model.train()
        loss = torch.nn.functional.cross_entropy(model(xt).reshape(-1, 2), yt.reshape(-1))
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        cb.on_epoch_end(epoch)  # between backward() and step(): must not touch .grad
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
        assert model.training and hook_count(model) == 0
        opt.step()
    assert [e for e, _ in logged] == [2, 4] and cb.logged == [2, 4]
    img = logged[0][1]
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 100

    bad = HeatmapCallback(model, x[:2], 1, target_layer="nope")
    with pytest.warns(UserWarning, match="unknown layer"):
        assert bad(1) is None
    assert bad.errors
