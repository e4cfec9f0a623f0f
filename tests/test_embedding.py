"""The embedding/ section (`mlviz embed`): projections that keep known structure, rows that line up,
a self-contained page that draws its points in headless Chromium and shows metadata as text, bad input
as one line with the store left byte-identical, and the whole command on a real SQLite store.

UMAP's first fit compiles numba code (tens of seconds), so one fitted digits map is shared (module fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, describe_result, headless_chromium, run_cli, tree_digest

from mlviz.errors import MlvizError

pytestmark = pytest.mark.usefixtures("clean_env")
EVIL = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    meta = pd.DataFrame({"sample_id": [f"digit-{i:04d}" for i in range(len(d.target))], "label": d.target,
                         "note": ["plain"] * len(d.target)})
    meta.loc[7, "note"] = EVIL
    return d.data, meta, d.images


@pytest.fixture(scope="module")
def digits_map(digits):
    """UMAP of the 1,797 64-d digits, fitted once for the module."""
    from mlviz.analysis.embedding import embed

    x, meta, _ = digits
    return embed(x, meta, method="umap", seed=0)


@pytest.fixture(scope="module")
def model_store(tmp_path_factory, one_thread):
    """A real SQLite store: a tiny CNN trained on the digits and logged as `mlviz demo` logs its best run
    (state dict + model_config.json, data/val_images.npz, predictions, embeddings/penultimate.npy +
    embeddings/metadata.csv), and runs that logged broken embeddings."""
    from mlflow import MlflowClient

    from mlviz.demo.data import load_task
    from mlviz.demo.sweep import _log_predictions, predictions_frame
    from mlviz.demo.train import embeddings, train

    root = tmp_path_factory.mktemp("embed-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("embed", artifact_location=str(root / "artifacts"))
    task = load_task("multiclass")
    params = {"learning_rate": 3e-3, "weight_decay": 1e-4, "dropout": 0.0, "channels": 8, "depth": 2,
              "optimizer": "adam", "activation": "relu", "augment": False, "batch_size": 64}
    result = train(params, task, 4, seed=0)
    feats = embeddings(result.model, task.x_val)
    meta = predictions_frame(task, result.epochs[-1].probs)

    def run_with(name: str, files: dict) -> str:
        rid = client.create_run(exp, run_name=name).info.run_id
        folder = root / "staging" / name
        (folder / "embeddings").mkdir(parents=True)
        for rel, content in files.items():
            path = folder / rel
            if isinstance(content, np.ndarray):
                np.save(path, content)
            else:
                content.to_csv(path, index=False)
        client.log_artifacts(rid, str(folder))
        client.set_terminated(rid, "FINISHED")
        return rid

    good = client.create_run(exp, run_name="best").info.run_id
    _log_predictions(client, good, task, result)
    staging = root / "staging" / "best" / "embeddings"
    staging.mkdir(parents=True)
    np.save(staging / "penultimate.npy", feats)
    meta.to_csv(staging / "metadata.csv", index=False)
    client.log_artifacts(good, str(staging.parent))
    client.set_terminated(good, "FINISHED")
    runs = {
        "good": good,
        "short_meta": run_with("short-meta", {"embeddings/penultimate.npy": feats,
                                              "embeddings/metadata.csv": meta.iloc[:-5]}),
        "empty": run_with("empty", {"embeddings/penultimate.npy": np.zeros((0, 16), np.float32)}),
        "text": run_with("text", {"embeddings/penultimate.npy": np.array([["a", "b"]] * 20)}),
    }
    return {"uri": uri, "root": root, "client": client, "runs": runs, "task": task, "features": feats,
            "meta": meta, "model": result.model}


def _download(client, run_id: str, path: str, dst: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(dst)))


# --------------------------------------------------------------------------- analysis: structure is kept
def test_separated_clusters_keep_their_neighbours():
    """Five well-separated 32-d Gaussian clusters: the 2-D map classifies as well as the original space."""
    from sklearn.datasets import make_blobs

    from mlviz.analysis.embedding import embed

    x, y = make_blobs(500, n_features=32, centers=5, cluster_std=1.0, center_box=(-20, 20), random_state=1)
    for method in ("umap", "pca"):
        r = embed(x, pd.DataFrame({"label": y}), method=method, seed=0)
        q = r.quality
        assert r.coords.shape == (500, 2) and r.coords.dtype == np.float32
        assert q.knn_accuracy_original == pytest.approx(1.0)
        assert q.knn_accuracy_2d >= 0.99, (method, q)
        assert q.knn_n == 500 and q.knn_folds == 5 and q.knn_k == 5
        assert q.knn_chance == pytest.approx(0.2)
        assert q.trust_n == 500 and q.trustworthiness > 0.85, (method, q)


def test_digits_keep_their_structure(digits_map):
    """The 64-d digits: 2-D 5-NN accuracy within 0.03 of the original space's (0.986 here), trustworthiness > 0.95."""
    q = digits_map.quality
    assert digits_map.n_samples == 1797 and digits_map.n_features == 64
    assert q.knn_accuracy_original == pytest.approx(0.9855, abs=0.005)
    assert q.knn_accuracy_2d >= q.knn_accuracy_original - 0.03, q
    assert q.trustworthiness > 0.95, q
    assert q.trust_n == 1797 and q.knn_n == 1797
    assert digits_map.params["pca_before"]["dims"] == 50  # 64 > 50 features: PCA first, said in the notes
    assert any("PCA first" in n for n in digits_map.notes)


def test_tsne_keeps_separated_clusters():
    from sklearn.datasets import make_blobs

    from mlviz.analysis.embedding import embed

    x, y = make_blobs(60, n_features=10, centers=3, random_state=0)
    r = embed(x, pd.DataFrame({"label": y}), method="tsne", seed=3)
    assert r.quality.knn_accuracy_2d == pytest.approx(1.0) and r.quality.knn_accuracy_original == pytest.approx(1.0)
    assert r.params["implementation"] in ("openTSNE", "scikit-learn") and r.params["perplexity"] <= 59 / 3


def test_trustworthiness_is_subsampled_and_said_so():
    from mlviz.analysis.embedding import TRUST_MAX_POINTS, neighbourhood_quality

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2500, 6)).astype(np.float32)
    q = neighbourhood_quality(x, x[:, :2], rng.integers(0, 3, 2500))
    assert q.trust_n == TRUST_MAX_POINTS and q.knn_n == 2500
    assert any("2,000 of the 2,500" in n for n in q.notes)


# --------------------------------------------------------------------------- rows line up
def test_metadata_columns_and_rows_line_up():
    """Standard columns first (prediction and confidence from prob_ columns), rows in the input's order,
    and each coordinate row belongs to its feature row (PCA is deterministic: compare with scikit-learn)."""
    from sklearn.decomposition import PCA

    from mlviz.analysis.embedding import embed

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    x[13] += 40  # one far-away sample
    probs = rng.dirichlet(np.ones(3), size=60)
    meta = pd.DataFrame({"id": [f"s{i}" for i in rng.permutation(60)], "y": rng.integers(0, 3, 60),
                         "prob_0": probs[:, 0], "prob_1": probs[:, 1], "prob_2": probs[:, 2], "site": "A"})
    r = embed(x, meta, method="pca", color_by="site")
    m = r.metadata
    assert list(m.columns[:6]) == ["index", "sample_id", "label", "prediction", "correct", "confidence"]
    assert m["sample_id"].tolist() == meta["id"].tolist()
    np.testing.assert_array_equal(m["prediction"], probs.argmax(1))
    np.testing.assert_allclose(m["confidence"], probs.max(1))
    np.testing.assert_array_equal(m["correct"], probs.argmax(1) == meta["y"].to_numpy())
    ref = PCA(2).fit_transform(x)
    np.testing.assert_allclose(np.abs(r.coords), np.abs(ref), rtol=1e-4, atol=1e-4)
    assert np.argmax(np.linalg.norm(r.coords - r.coords.mean(0), axis=1)) == 13
    assert "site" in m.columns and r.color_by == "site"


# --------------------------------------------------------------------------- bad input (analysis)
@pytest.mark.parametrize("features, meta_rows, fragment", [
    (np.zeros((10, 4)), 9, "10 rows but the metadata has 9"),
    (np.zeros((0, 4)), None, "empty"),
    (np.array([["a", "b"]] * 5), None, "not numeric"),
    (np.zeros(10), None, "must be 2-D"),
    (np.zeros((2, 4)), None, "at least 3"),
    (np.array([[0.0, np.nan]] * 5), None, "NaN or infinite"),
])
def test_bad_features_are_one_clear_error(features, meta_rows, fragment):
    from mlviz.analysis.embedding import embed

    meta = None if meta_rows is None else pd.DataFrame({"label": np.zeros(meta_rows, int)})
    with pytest.raises(MlvizError, match=fragment) as err:
        embed(features, meta, method="pca")
    assert "\n" not in str(err.value)


def test_unknown_colour_column_lists_the_options(digits_map):
    from mlviz.render.embedding import plot_embedding

    with pytest.raises(MlvizError, match="no such metadata column.*label"):
        plot_embedding(digits_map, color_by="nope")


# --------------------------------------------------------------------------- drawing
def test_png_legend_counts_and_marked_errors(digits_map, tmp_path):
    import dataclasses

    from mlviz.render.embedding import plot_embedding

    meta = digits_map.metadata.copy()
    meta["prediction"] = meta["label"]
    meta.loc[:9, "prediction"] = (meta.loc[:9, "label"] + 1) % 10  # ten deliberate mistakes
    meta["correct"] = meta["prediction"] == meta["label"]
    result = dataclasses.replace(digits_map, metadata=meta)
    fig = plot_embedding(result)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"0 (n={int((meta['label'] == 0).sum())})" in texts
    assert "misclassified (n=10 of 1,797)" in texts
    title = ax.get_title(loc="left")
    assert "trustworthiness 0.9" in title and "n=1,797" in title and "in 64-D" in title
    fig.savefig(tmp_path / "embedding.png")
    plot_embedding(result, color_by="correct").savefig(tmp_path / "by_correct.png")


# --------------------------------------------------------------------------- the page, in a real browser
@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("715,900")
    yield driver
    driver.quit()


def test_html_escapes_metadata(digits_map):
    from mlviz.render.embedding import embedding_html

    page = embedding_html(digits_map)
    assert "window.pwned" in page  # the text is there ...
    assert "<script>window.pwned" not in page and "<img src=x" not in page  # ... never as markup
    assert page.count("<script") == 2  # the data block and the hover code, nothing else
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_html_draws_points_and_hover_shows_text_from_disk(digits_map, digits, browser, tmp_path):
    """The page opened from disk in a 715 px wide window (the MLflow artifact viewer's frame): every
    point drawn inside the window, hovering shows that sample's metadata and thumbnail, and metadata
    holding HTML and script is shown as text and never runs."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from mlviz.render.embedding import embedding_html

    page = tmp_path / "embedding.html"
    page.write_text(embedding_html(digits_map, thumbnails=digits[2]), encoding="utf-8")
    browser.get(page.as_uri())
    drawn = browser.execute_script(
        "var w=document.documentElement.clientWidth;return Array.from(document.querySelectorAll('circle.pt'))"
        ".filter(function(c){var b=c.getBoundingClientRect();return b.width>0&&b.left>=0&&b.right<=w;}).length;")
    assert drawn == 1797
    assert browser.execute_script("return window.mlvizEmbedding.n") == 1797
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 715
    for i in (7, 100):
        dot = browser.find_element(By.CSS_SELECTOR, f'circle.pt[data-i="{i}"]')
        # lift it above its neighbours (points overlap), then hover its centre
        browser.execute_script("arguments[0].parentNode.appendChild(arguments[0]);"
                               "arguments[0].scrollIntoView({block:'center'})", dot)
        ActionChains(browser).move_to_element(dot).perform()
        tip = browser.find_element(By.ID, "tip")
        assert tip.is_displayed()
        assert f"digit-{i:04d}" in tip.text
        label = str(int(digits[1].loc[i, "label"]))
        assert f"label\n{label}" in tip.text or f"label {label}" in tip.text
        width = browser.execute_script("var im=document.querySelector('#tip img');return im&&im.naturalWidth;")
        assert width == 64
    # sample 7's note is the evil string: shown literally, nothing ran
    dot = browser.find_element(By.CSS_SELECTOR, 'circle.pt[data-i="7"]')
    ActionChains(browser).move_to_element(dot).perform()
    assert EVIL in browser.find_element(By.ID, "tip").text
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('#tip script, #tip img[src=\"x\"]').length") == 0
    # the colour-by choice recolours the points
    before = browser.execute_script("return document.querySelector('circle.pt[data-i=\"0\"]').getAttribute('fill')")
    browser.execute_script("var s=document.getElementById('colour');s.value='note';s.dispatchEvent(new Event('change'))")
    after = browser.execute_script("return document.querySelector('circle.pt[data-i=\"0\"]').getAttribute('fill')")
    assert before != after


# --------------------------------------------------------------------------- features from a model
def test_features_at_a_layer_leave_the_model_clean(model_store):
    from mlviz.attribution.features import extract_features
    from mlviz.attribution.hooks import hook_count

    model, x = model_store["model"], model_store["task"].x_val
    model.train()
    model.zero_grad(set_to_none=True)  # training left gradients behind; extraction must add none
    got = extract_features(model, x, None, batch_size=50)
    assert got.layer == "input of head"
    np.testing.assert_allclose(got.features, model_store["features"], rtol=1e-5, atol=1e-5)
    assert got.probabilities.shape == (len(x), 10)
    np.testing.assert_allclose(got.probabilities.sum(1), 1.0, atol=1e-5)
    conv = extract_features(model, x[:20], "features.0")
    assert conv.features.shape == (20, 8) and "spatial" in conv.pooled
    assert hook_count(model) == 0 and model.training  # hooks gone, train mode restored
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(MlvizError, match="no layer 'features.99'.*layers include: .*head"):
        extract_features(model, x[:4], "features.99")


# --------------------------------------------------------------------------- the command, on a real store
@pytest.mark.parametrize("run, args, fragments", [
    ("short_meta", (), ("rows but the metadata has",)),
    ("good", ("--layer", "backbone.layer4"), ("no layer 'backbone.layer4'", "features.4", "head")),
    ("empty", (), ("empty",)),
    ("text", (), ("not numeric",)),
    ("good", ("--method", "isomap"), ("--method must be one of umap, pca, tsne",)),
    ("good", ("--color-by", "nope"), ("cannot colour by 'nope'", "label")),
])
def test_bad_input_is_one_line_and_leaves_the_store_alone(model_store, run, args, fragments):
    before = tree_digest(model_store["root"])
    r = run_cli("embed", "--tracking-uri", model_store["uri"], "--run", model_store["runs"][run], "--method",
                "pca", *args)
    assert_one_line_error(r, *fragments)
    assert tree_digest(model_store["root"]) == before


def test_embed_logs_into_the_run_and_reads_back(model_store, tmp_path):
    client, rid = model_store["client"], model_store["runs"]["good"]
    r = run_cli("embed", "--tracking-uri", model_store["uri"], "--run", rid, "--color-by", "prediction")
    assert r.exit_code == 0, describe_result(r)
    assert f"run {rid}" in r.output
    got = _download(client, rid, "mlviz", tmp_path)
    folder = got / "embedding"
    coords = np.load(folder / "embedding_coords.npy")
    meta = pd.read_csv(folder / "embedding_metadata.csv")
    n = len(model_store["meta"])
    assert coords.shape == (n, 2) and coords.dtype == np.float32
    assert meta["sample_id"].tolist() == model_store["meta"]["sample_id"].tolist()
    assert list(meta.columns[:7]) == ["index", "sample_id", "label", "prediction", "correct", "confidence",
                                      "image_index"]
    assert "ink_level" in meta.columns
    assert (meta["correct"] == (meta["label"] == meta["prediction"])).all()
    summary = json.loads((got / "embedding_summary.json").read_text())
    q = summary["embedding"]["quality"]
    assert summary["embedding"]["source"] == "logged embeddings/penultimate.npy with embeddings/metadata.csv"
    assert summary["embedding"]["color_by"] == "prediction" and q["knn_n"] == n
    # the 2-D map keeps most of what a 5-NN classifier finds in the 16-d penultimate features of this
    # briefly trained CNN (measured: 0.824 in 16-d, 0.759 in 2-D, n=540)
    assert q["knn_accuracy_original"] > 0.75 and q["knn_accuracy_2d"] >= q["knn_accuracy_original"] - 0.10
    metrics = client.get_run(rid).data.metrics
    assert metrics["mlviz.embedding.trustworthiness"] == pytest.approx(q["trustworthiness"])
    assert metrics["mlviz.embedding.knn_accuracy_2d"] == pytest.approx(q["knn_accuracy_2d"])
    assert client.get_run(rid).data.tags["mlviz.embedding"] == "umap"
    page = (folder / "embedding.html").read_text()
    assert page.count('class="pt') == n and "data:image/png;base64," in page
    from PIL import Image

    with Image.open(folder / "embedding.png") as im:
        assert im.size[0] > 600
    images = [p for p in _artifact_list(client, rid, "images")]
    assert any(Path(p).name.startswith("mlviz_embedding") for p in images)
    # a second run replaces the section rather than adding to it
    r = run_cli("embed", "--tracking-uri", model_store["uri"], "--run", rid, "--method", "pca")
    assert r.exit_code == 0, describe_result(r)
    assert client.get_run(rid).data.tags["mlviz.embedding"] == "pca"
    files = _artifact_list(client, rid, "mlviz/embedding")
    assert sorted(Path(f).name for f in files) == sorted(
        ["embedding.png", "embedding.json", "embedding_coords.npy", "embedding_metadata.csv", "embedding.html"])


def _artifact_list(client, run_id, folder=None):
    out = []
    for f in client.list_artifacts(run_id, folder):
        out += _artifact_list(client, run_id, f.path) if f.is_dir else [f.path]
    return out


def test_embed_from_a_layer_of_the_model_to_a_folder(model_store, tmp_path):
    before = tree_digest(model_store["root"])
    r = run_cli("embed", "--tracking-uri", model_store["uri"], "--run", model_store["runs"]["good"], "--layer",
                "features.6", "--method", "pca", "--out", tmp_path / "out")
    assert r.exit_code == 0, describe_result(r)
    assert tree_digest(model_store["root"]) == before  # --out: nothing logged
    folder = tmp_path / "out" / "mlviz" / "embedding"
    summary = json.loads((tmp_path / "out" / "mlviz" / "embedding_summary.json").read_text())
    assert summary["embedding"]["source"] == "features.6 of the run's model over data/val_images.npz"
    assert summary["embedding"]["n_features"] == 16  # the second conv block's ReLU: 16 channels, averaged over 4×4
    meta = pd.read_csv(folder / "embedding_metadata.csv")
    assert meta["sample_id"].tolist() == model_store["meta"]["sample_id"].tolist()
    assert np.load(folder / "embedding_coords.npy").shape == (len(meta), 2)


def test_embed_from_files_without_a_store(tmp_path):
    from sklearn.datasets import make_blobs

    x, y = make_blobs(90, n_features=8, centers=3, random_state=0)
    np.save(tmp_path / "f.npy", x)
    pd.DataFrame({"sample_id": [f"a{i}" for i in range(90)], "label": y}).to_csv(tmp_path / "m.csv", index=False)
    r = run_cli("embed", "--features", tmp_path / "f.npy", "--metadata", tmp_path / "m.csv", "--method", "pca",
                "--out", tmp_path / "out")
    assert r.exit_code == 0, describe_result(r)
    data = np.load(tmp_path / "out" / "mlviz" / "embedding" / "embedding_coords.npy")
    assert data.shape == (90, 2)
    r = run_cli("embed", "--features", tmp_path / "f.npy", "--method", "pca")
    assert_one_line_error(r, "--out")
    pd.DataFrame({"label": y[:80]}).to_csv(tmp_path / "short.csv", index=False)
    r = run_cli("embed", "--features", tmp_path / "f.npy", "--metadata", tmp_path / "short.csv", "--out", tmp_path / "o2")
    assert_one_line_error(r, "90 rows but the metadata has 80")
    assert not (tmp_path / "o2").exists()


def test_best_model_hook(model_store, tmp_path):
    from mlviz.sections.embedding import embedding_for_best_model
    from mlviz.store.read import Store

    with Store(model_store["uri"]) as store:
        report, why = embedding_for_best_model(store, model_store["runs"]["good"], tmp_path, {"method": "pca"})
        assert why is None and report.kind == "embedding" and report.figures[0].grid_key == "mlviz_embedding"
        report, why = embedding_for_best_model(store, model_store["runs"]["empty"], tmp_path / "b", {"method": "pca"})
        assert report is None and "empty" in why
