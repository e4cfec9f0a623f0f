"""`mlviz embed` made fast (issue 11): UMAP gets an exact k-NN graph instead of pynndescent's, runs 200
epochs on large inputs (UMAP's own choice above 10,000 points), keeps its compiled numba code on disk, and
says all of that beside the map. No timing here: bench/bench_embedding.py measures the time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, describe_result, run_cli

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(scope="module")
def blobs():
    from sklearn.datasets import make_blobs

    x, y = make_blobs(300, n_features=60, centers=4, cluster_std=1.0, random_state=1)
    meta = pd.DataFrame({"sample_id": [f"b{i:03d}" for i in range(len(y))], "label": y})
    return x.astype(np.float32), meta


def test_epochs_rule():
    from mlviz.analysis.embedding import UMAP_EPOCHS, UMAP_EPOCHS_SMALL, UMAP_SMALL, umap_epochs

    assert (UMAP_EPOCHS, UMAP_EPOCHS_SMALL, UMAP_SMALL) == (200, 500, 5000)
    assert umap_epochs(300) == 500 and umap_epochs(5000) == 500
    assert umap_epochs(5001) == 200 and umap_epochs(10000) == 200 and umap_epochs(200000) == 200
    assert umap_epochs(10000, 500) == 500 and umap_epochs(50, 7) == 7


def test_exact_knn_matches_numpy():
    from mlviz.analysis.embedding import exact_knn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    idx, dist = exact_knn(x, 6)
    assert idx.shape == dist.shape == (200, 6) and idx.dtype == np.int32 and dist.dtype == np.float32
    d = np.sqrt(((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1))
    want = np.argsort(d, axis=1, kind="stable")[:, :6]
    assert (idx[:, 0] == np.arange(200)).all()  # itself first, as UMAP's own search returns it
    assert (np.sort(idx, axis=1) == np.sort(want, axis=1)).all()
    assert np.allclose(dist, np.take_along_axis(d, want, axis=1), atol=1e-4)


def test_umap_params_and_notes_say_graph_epochs_and_seed(blobs):
    from mlviz.analysis.embedding import embed

    x, meta = blobs
    r = embed(x, meta, method="umap", seed=3)
    assert r.params["n_epochs"] == 500 and r.params["knn_graph"] == "exact" and r.params["seed"] == 3
    assert r.params["pca_before"]["dims"] == 50
    assert "UMAP: exact 15-NN graph, 500 epochs, seed 3 (one thread: the same seed gives the same map)" in r.notes
    assert r.quality.trustworthiness > 0.9 and r.quality.knn_accuracy_2d == pytest.approx(1.0)
    again = embed(x, meta, method="umap", seed=3)
    assert np.array_equal(r.coords, again.coords)  # seeded: the same map, point for point
    few = embed(x, meta, method="umap", seed=3, n_epochs=40)
    assert few.params["n_epochs"] == 40 and any("40 epochs" in n for n in few.notes)
    assert not any("epochs" in n for n in embed(x, meta, method="pca").notes)  # only UMAP has epochs


def test_umap_numba_code_is_kept_on_disk(blobs):
    """The UMAP functions a fit compiles (and whose cache=True upstream is missing) land in numba's cache
    folder, so the next process loads them instead of compiling them."""
    import numba
    import umap.layouts
    import umap.umap_

    from mlviz.analysis.embedding import _UMAP_UNCACHED, project

    x, _ = blobs
    project(x, "umap", seed=0, n_epochs=20)
    for module, name in (("umap.umap_", "smooth_knn_dist"), ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch")):
        assert (module, name) in _UMAP_UNCACHED
    assert type(umap.umap_.smooth_knn_dist._cache).__name__ == "FunctionCache"
    assert type(umap.layouts._nb_optimize_layout_euclidean_single_epoch._cache).__name__ == "FunctionCache"
    from pathlib import Path

    folder = Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else Path(umap.__file__).parent / "__pycache__"
    names = {p.name.split("-")[0] for p in folder.rglob("*.nbi")}
    assert {"umap_.smooth_knn_dist", "umap_.compute_membership_strengths",
            "layouts._optimize_layout_euclidean_single_epoch"} <= names, (folder, sorted(names)[:20])


def test_cli_n_epochs_reaches_the_summary(blobs, tmp_path):
    x, meta = blobs
    np.save(tmp_path / "f.npy", x)
    meta.to_csv(tmp_path / "m.csv", index=False)
    r = run_cli("embed", "--features", tmp_path / "f.npy", "--metadata", tmp_path / "m.csv", "--n-epochs", "30",
                "--out", tmp_path / "out")
    assert r.exit_code == 0, describe_result(r)
    assert "UMAP: exact 15-NN graph, 30 epochs, seed 0" in r.output  # the notes, on the terminal too
    summary = json.loads((tmp_path / "out" / "mlviz" / "embedding_summary.json").read_text())["embedding"]
    assert summary["params"]["n_epochs"] == 30 and summary["params"]["knn_graph"] == "exact"
    assert any("30 epochs" in n for n in summary["notes"])
    r = run_cli("embed", "--features", tmp_path / "f.npy", "--n-epochs", "0", "--out", tmp_path / "o2")
    assert_one_line_error(r, "--n-epochs")
    assert not (tmp_path / "o2").exists()


def test_bad_n_epochs_in_the_analysis_is_one_clear_error(blobs):
    from mlviz.analysis.embedding import embed
    from mlviz.errors import MlvizError

    x, meta = blobs
    with pytest.raises(MlvizError, match="n_epochs must be at least 1"):
        embed(x, meta, n_epochs=0)
