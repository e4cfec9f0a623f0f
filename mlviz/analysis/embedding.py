"""2-D maps of a model's feature space, and how far to trust them.

`embed(features, metadata, ...)` checks the features and the table that describes their rows, projects
to 2-D with UMAP (default), PCA or t-SNE (seeded), and measures neighbourhood quality: trustworthiness
(scikit-learn) and the k-nearest-neighbour accuracy of the label in 2-D against the original space,
because a map that looks tidy can still tear neighbourhoods apart. Pure numpy / pandas / scikit-learn /
umap-learn: no drawing, no MLflow, no torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError

METHODS = ("umap", "pca", "tsne")
STANDARD_COLUMNS = ("index", "sample_id", "label", "prediction", "correct", "confidence", "image_index")
TRUST_MAX_POINTS = 2000  # trustworthiness is O(n²) in memory and time: measured on a seeded subsample
KNN_MAX_POINTS = 5000  # k-NN accuracy (5-fold, in 2-D and in the original space) on a seeded subsample beyond this
KNN_K = 5
KNN_FOLDS = 5
PCA_BEFORE_UMAP = 50  # features wider than this are reduced with PCA first (see bench/RESULTS.md)
UMAP_EPOCHS = 200  # UMAP's own choice above 10,000 points; its 500 below costs 2.5x for ~0.001 trustworthiness
UMAP_EPOCHS_SMALL = 500  # maps of at most UMAP_SMALL points keep UMAP's 500 epochs (they take a second or two)
UMAP_SMALL = 5000
PCA_ONE_THREAD = 1e10  # PCA with n·d² up to this runs BLAS on one thread (see _pca)
EXACT_KNN_MAX_POINTS = 50000  # up to this many points UMAP gets an exact k-NN graph (BLAS, no numba compiling)
MAX_CATEGORIES = 30  # a column with more distinct values is coloured as a number (or not at all)

_LABEL_NAMES = ("label", "labels", "y", "y_true", "target", "true", "true_label", "class", "gt")
_PRED_NAMES = ("prediction", "pred", "predicted", "y_pred", "pred_label", "predicted_label")
_CONF_NAMES = ("confidence", "conf", "max_prob", "probability")
_ID_NAMES = ("sample_id", "id", "sample", "uid", "filename", "file", "path", "image_path", "name")


@dataclass
class EmbeddingQuality:
    """Neighbourhood quality of the map, each number with the points it was measured on."""

    trustworthiness: float | None  # 1 = every 2-D neighbour is a neighbour in the original space
    trust_k: int
    trust_n: int  # points measured (a seeded subsample of at most TRUST_MAX_POINTS)
    knn_accuracy_2d: float | None  # k-NN accuracy of the label, cross-validated, on the 2-D coordinates
    knn_accuracy_original: float | None  # the same folds on the original features
    knn_chance: float | None  # share of the most frequent label: what guessing gets
    knn_k: int
    knn_n: int
    knn_folds: int
    label_column: str | None
    notes: list[str] = field(default_factory=list)


@dataclass
class EmbeddingResult:
    """A 2-D projection, the rows it describes and its quality."""

    method: str  # "umap" | "pca" | "tsne"
    params: dict
    n_samples: int
    n_features: int
    coords: np.ndarray  # (n, 2) float32, row i ↔ metadata row i
    quality: EmbeddingQuality
    metadata: pd.DataFrame  # index, sample_id, label, prediction, correct, confidence, image_index, others
    color_by: str | None  # the column the map is coloured by (None: one colour)
    color_columns: list[str]  # columns it could be coloured by
    explained_variance: list[float] | None = None  # PCA only: share of variance of each axis
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- validation
def validate_features(features, n_rows: int | None = None, what: str = "the embedding") -> np.ndarray:
    """The features as a finite float 2-D array (samples × features), or one clear MlvizError."""
    try:
        array = np.asarray(features)
    except (ValueError, TypeError) as exc:
        raise MlvizError(f"{what} is not an array of numbers ({exc})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise MlvizError(f"{what} is not numeric (dtype {array.dtype}); expected a float array of samples × features")
    if array.size == 0:
        raise MlvizError(f"{what} is empty (shape {array.shape}); nothing to project")
    if array.ndim != 2:
        raise MlvizError(f"{what} must be 2-D (samples × features), got shape {array.shape}")
    if len(array) < 3:
        raise MlvizError(f"{what} has {len(array)} samples; a 2-D map needs at least 3")
    if n_rows is not None and len(array) != n_rows:
        raise MlvizError(f"{what} has {len(array)} rows but the metadata has {n_rows}; they must pair row by row")
    array = array.astype(np.float32 if array.dtype != np.float64 else np.float64, copy=False)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise MlvizError(f"{what} has {int(bad.sum())} rows with NaN or infinite values (first: row "
                         f"{int(np.flatnonzero(bad)[0])})")
    return array


def _find(columns, names) -> str | None:
    lower = {str(c).lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def standard_metadata(metadata: pd.DataFrame | None, n: int, class_names: list[str] | None = None) -> pd.DataFrame:
    """The metadata with the columns every map uses first: index, sample_id, label, prediction, correct,
    confidence, image_index (when known), then every other column as it was.

    Recognised: a label column (`label`, `y`, `target`, ...; or one `label_<head>`), a prediction column
    (`pred`, `prediction`, ...) or else the argmax of `prob_<class>` columns (or `score` ≥ 0.5 for one
    score), the confidence as the top probability, an id (`sample_id`, `id`, `filename`, ...)."""
    meta = pd.DataFrame(index=range(n)) if metadata is None else metadata.reset_index(drop=True).copy()
    if len(meta) != n:
        raise MlvizError(f"the embedding has {n} rows but the metadata has {len(meta)}; they must pair row by row")
    meta.columns = [str(c) for c in meta.columns]
    out = pd.DataFrame({"index": np.arange(n)})
    used: set[str] = set()

    id_col = _find(meta.columns, _ID_NAMES)
    out["sample_id"] = meta[id_col].astype(str).to_numpy() if id_col else np.arange(n).astype(str)
    used |= {id_col} if id_col else set()

    label_col = _find(meta.columns, _LABEL_NAMES)
    heads = [c for c in meta.columns if c.startswith("label_")]
    if label_col is None and len(heads) == 1:
        label_col = heads[0]
    if label_col is not None:
        out["label"] = meta[label_col].to_numpy()
        used.add(label_col)

    pred_col = _find(meta.columns, _PRED_NAMES)
    if pred_col is None and label_col is not None and label_col.startswith("label_"):
        pred_col = "pred_" + label_col[len("label_"):] if "pred_" + label_col[len("label_"):] in meta else None
    probs = [c for c in meta.columns if c.startswith("prob_") and pd.api.types.is_numeric_dtype(meta[c])]
    if label_col is not None and label_col.startswith("label_"):
        probs = [c for c in probs if c.startswith(f"prob_{label_col[len('label_'):]}_")]
    score_col = "score" if "score" in meta and pd.api.types.is_numeric_dtype(meta["score"]) else None
    if pred_col is not None:
        out["prediction"] = meta[pred_col].to_numpy()
        used.add(pred_col)
    elif len(probs) >= 2:
        p = meta[probs].to_numpy(dtype=float)
        arg = np.nanargmax(np.nan_to_num(p, nan=-1.0), axis=1)
        names = [c.split("_")[-1] for c in probs]
        labels = out["label"] if "label" in out else None
        if labels is not None and pd.api.types.is_integer_dtype(labels) and labels.between(0, len(probs) - 1).all():
            out["prediction"] = arg
        else:
            out["prediction"] = np.array(names, dtype=object)[arg]
    elif score_col is not None:
        out["prediction"] = (meta[score_col].to_numpy() >= 0.5).astype(int)

    conf_col = _find(meta.columns, _CONF_NAMES)
    if conf_col is not None and pd.api.types.is_numeric_dtype(meta[conf_col]):
        out["confidence"] = meta[conf_col].to_numpy(dtype=float)
        used.add(conf_col)
    elif len(probs) >= 2:
        out["confidence"] = meta[probs].max(axis=1).to_numpy(dtype=float)
    elif score_col is not None:
        s = meta[score_col].to_numpy(dtype=float)
        out["confidence"] = np.maximum(s, 1 - s)

    if "label" in out and "prediction" in out:
        out["correct"] = _same(out["label"], out["prediction"])
    elif "correct" in meta:
        out["correct"] = meta["correct"].astype(bool).to_numpy()
        used.add("correct")
    else:
        pairs = [(c, "pred_" + c[len("label_"):]) for c in heads if "pred_" + c[len("label_"):] in meta]
        if pairs:  # several heads: correct when every head is
            out["correct"] = np.all([_same(meta[a], meta[b]) for a, b in pairs], axis=0)

    if "image_index" in meta and pd.api.types.is_integer_dtype(meta["image_index"]):
        out["image_index"] = meta["image_index"].to_numpy()
        used.add("image_index")
    out = out[[c for c in STANDARD_COLUMNS if c in out]]
    for c in meta.columns:
        if c not in used and c not in out:
            out[c] = meta[c].to_numpy()
    if class_names and "label" in out and pd.api.types.is_integer_dtype(out["label"]):
        out.attrs["class_names"] = list(class_names)
    return out


def _same(a, b) -> np.ndarray:
    a, b = pd.Series(np.asarray(a)), pd.Series(np.asarray(b))
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        return (a.to_numpy() == b.to_numpy())
    return (a.astype(str).to_numpy() == b.astype(str).to_numpy())


def color_columns(meta: pd.DataFrame) -> list[str]:
    """Columns a map can be coloured by: few distinct values (categories) or numbers."""
    out = []
    for c in meta.columns:
        if c in ("index", "sample_id", "image_index"):
            continue
        s = meta[c]
        if s.nunique(dropna=True) <= MAX_CATEGORIES or pd.api.types.is_numeric_dtype(s):
            if s.notna().any():
                out.append(c)
    return out


def check_color_by(meta: pd.DataFrame, color_by: str | None) -> str | None:
    """The column to colour by: the one asked for (checked), else the label, else the prediction."""
    options = color_columns(meta)
    if color_by is None:
        return next((c for c in ("label", "prediction") if c in options), None)
    if color_by not in meta.columns:
        raise MlvizError(f"cannot colour by '{color_by}': no such metadata column (can colour by: "
                         f"{', '.join(options[:12]) or 'none'})")
    if color_by not in options:
        raise MlvizError(f"cannot colour by '{color_by}': it has {meta[color_by].nunique()} distinct non-numeric "
                         f"values (at most {MAX_CATEGORIES}); can colour by: {', '.join(options[:12]) or 'none'}")
    return color_by


def is_categorical(values: pd.Series) -> bool:
    """Coloured by category (legend) rather than by a colour scale."""
    if values.dtype == bool or not pd.api.types.is_numeric_dtype(values):
        return True
    return pd.api.types.is_integer_dtype(values) and values.nunique(dropna=True) <= MAX_CATEGORIES


# --------------------------------------------------------------------------- projection
def project(features: np.ndarray, method: str = "umap", *, n_neighbors: int = 15, min_dist: float = 0.1,
            perplexity: float = 30.0, seed: int = 0, pca_dims: int | None = PCA_BEFORE_UMAP,
            n_epochs: int | None = None) -> tuple[np.ndarray, dict]:
    """2-D coordinates (float32) and the parameters really used (clamped to what n allows).

    UMAP: `n_epochs` None is UMAP_EPOCHS (UMAP_EPOCHS_SMALL for at most UMAP_SMALL points); the k-NN
    graph is exact up to EXACT_KNN_MAX_POINTS points; seeded, so single-threaded and repeatable."""
    if method not in METHODS:
        raise MlvizError(f"unknown projection method '{method}'; choose one of {', '.join(METHODS)}")
    n, d = features.shape
    params: dict = {"seed": seed}
    if method == "pca":
        pca, coords = _pca(features, 2, seed)
        params["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
        return coords.astype(np.float32), params
    x = features
    if pca_dims and d > pca_dims and n > pca_dims:
        pca, x = _pca(features, pca_dims, seed)
        params["pca_before"] = {"dims": pca_dims, "variance_kept": float(pca.explained_variance_ratio_.sum())}
    if method == "tsne":
        perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
        params["perplexity"] = perplexity
        try:
            from openTSNE import TSNE as OpenTSNE  # faster on large n when installed

            coords = np.asarray(OpenTSNE(n_components=2, perplexity=perplexity, random_state=seed,
                                         n_jobs=1).fit(np.ascontiguousarray(x, dtype=np.float64)))
            params["implementation"] = "openTSNE"
        except ImportError:
            from sklearn.manifold import TSNE

            coords = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca",
                          learning_rate="auto").fit_transform(x)
            params["implementation"] = "scikit-learn"
        return coords.astype(np.float32), params
    import warnings

    _numba_cache()
    try:
        import umap
    except ImportError:
        raise MlvizError("UMAP needs umap-learn (pip install 'mlviz[embedding]'); or use --method pca") from None
    _cache_umap_numba()

    k = int(max(2, min(n_neighbors, n - 1)))
    epochs = umap_epochs(n, n_epochs)
    params.update(n_neighbors=k, min_dist=float(min_dist), metric="euclidean", n_epochs=epochs)
    # spectral initialisation needs a connected graph of a few points; tiny inputs start at random
    init = "spectral" if n > 20 else "random"
    params["init"] = init
    extra: dict = {}
    if n <= EXACT_KNN_MAX_POINTS:
        extra["precomputed_knn"] = exact_knn(x, k)
        params["knn_graph"] = "exact"
    else:
        params["knn_graph"] = "approximate (pynndescent)"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # seeded UMAP runs on one thread
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")  # no transform() of new data: not used
        warnings.filterwarnings("ignore", message="Graph is not fully connected")  # separate clusters: expected
        # random_state makes UMAP run its epochs on one thread, so the same seed gives the same map; unseeded
        # (parallel) it was no cheaper on the 2 shared cores measured for issue 11: 200 epochs on 10,000
        # points took 4.8 s of CPU either way (13.0 s vs 14.9 s wall on a busy machine)
        reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, random_state=seed, init=init,
                            n_epochs=epochs, **extra)
        coords = reducer.fit_transform(x)
    return np.asarray(coords, dtype=np.float32), params


def _pca(x: np.ndarray, dims: int, seed: int):
    """(fitted PCA, x projected on its first `dims` axes). Small problems (n·d² ≤ PCA_ONE_THREAD, e.g.
    10,000 × 512) run BLAS on one thread: the d × d eigendecomposition is tiny, and on a busy 2-core
    machine OpenBLAS's threads made it 5-10× slower (0.1 s of CPU on one thread, 0.8-1.4 s on two)."""
    from contextlib import nullcontext

    from sklearn.decomposition import PCA

    n, d = x.shape
    limit = nullcontext()
    if n * d * d <= PCA_ONE_THREAD:
        try:
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # scikit-learn brings it; without it PCA just runs as BLAS likes
            pass
    with limit:
        pca = PCA(n_components=dims, random_state=seed)
        return pca, pca.fit_transform(x)


def umap_epochs(n: int, n_epochs: int | None = None) -> int:
    """The epochs a UMAP fit of n points runs: the number asked for, else UMAP_EPOCHS (UMAP_EPOCHS_SMALL
    for at most UMAP_SMALL points)."""
    if n_epochs:
        return int(n_epochs)
    return UMAP_EPOCHS_SMALL if n <= UMAP_SMALL else UMAP_EPOCHS


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32, distances float32) of each row's k nearest rows, itself included, as UMAP's
    nearest-neighbour search returns them; brute force with BLAS (a second on 10,000 × 50)."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(x)
    return idx.astype(np.int32), dist.astype(np.float32)


def _numba_cache() -> None:
    """UMAP and pynndescent compile numba functions on first use (tens of seconds); those marked
    cache=True are kept on disk. Keep them in the user's cache folder (an installed package's own folder
    may be read-only) unless NUMBA_CACHE_DIR says otherwise. Must run before numba is imported."""
    import os
    import sys

    if "numba" not in sys.modules and not os.environ.get("NUMBA_CACHE_DIR"):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "mlviz", "numba")


# UMAP's own numba functions that a fit with a precomputed k-NN graph compiles, without cache=True upstream:
# compiled once and kept in the numba cache folder, they load in a fraction of a second in the next process
# instead of compiling for ~10 s (the parallel epoch function shares its source with the serial one, so only the
# serial one, which a seeded fit uses, is cached: numba's cache key would not tell them apart)
_UMAP_UNCACHED = (("umap.umap_", "smooth_knn_dist"), ("umap.umap_", "compute_membership_strengths"),
                  ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
                  ("umap.distances", "euclidean"))  # the spectral layout of a graph in several pieces
_umap_cached = False


def _cache_umap_numba() -> None:
    """Turn on numba's on-disk cache for `_UMAP_UNCACHED` (before their first compile in this process);
    a umap-learn without them, or a cache folder that cannot be written, just compiles as before."""
    global _umap_cached
    if _umap_cached:
        return
    _umap_cached = True
    import importlib

    for module, name in _UMAP_UNCACHED:
        try:
            function = getattr(importlib.import_module(module), name)
            function.enable_caching()
        except Exception:  # noqa: BLE001 - a speed-up only: without it UMAP compiles as it always did
            continue


# --------------------------------------------------------------------------- quality
def neighbourhood_quality(features: np.ndarray, coords: np.ndarray, labels=None, *, k: int = KNN_K,
                          seed: int = 0, label_column: str | None = "label") -> EmbeddingQuality:
    """Trustworthiness on a seeded subsample (≤ TRUST_MAX_POINTS), and cross-validated k-NN accuracy of
    the label on the 2-D coordinates against the original features (same folds)."""
    from sklearn.manifold import trustworthiness

    n = len(features)
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    idx = np.sort(rng.choice(n, TRUST_MAX_POINTS, replace=False)) if n > TRUST_MAX_POINTS else np.arange(n)
    if n > TRUST_MAX_POINTS:
        notes.append(f"trustworthiness on a random {TRUST_MAX_POINTS:,} of the {n:,} points (it costs n²)")
    tk = int(min(k, (len(idx) - 1) // 2))  # scikit-learn needs k < n / 2
    trust = float(trustworthiness(features[idx], coords[idx], n_neighbors=tk)) if tk >= 1 else None
    q = EmbeddingQuality(trustworthiness=trust, trust_k=tk, trust_n=len(idx), knn_accuracy_2d=None,
                         knn_accuracy_original=None, knn_chance=None, knn_k=k, knn_n=0, knn_folds=0,
                         label_column=None, notes=notes)
    if labels is None:
        q.notes.append("no label: k-NN accuracy not measured")
        return q
    y = pd.Series(np.asarray(labels))
    keep = y.notna().to_numpy()
    if keep.sum() < n:
        q.notes.append(f"{int(n - keep.sum())} rows without a label left out of the k-NN accuracy")
    y = y[keep].astype(str).to_numpy()
    rows = np.flatnonzero(keep)
    if len(rows) > KNN_MAX_POINTS:
        rows = np.sort(rng.choice(rows, KNN_MAX_POINTS, replace=False))
        y = pd.Series(np.asarray(labels))[rows].astype(str).to_numpy()
        q.notes.append(f"k-NN accuracy on a random {KNN_MAX_POINTS:,} of the labelled points")
    counts = pd.Series(y).value_counts()
    if len(counts) < 2:
        q.notes.append("a single label value: k-NN accuracy not measured")
        return q
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = int(min(KNN_FOLDS, len(rows) // 2))
    if folds < 2:
        q.notes.append("too few labelled points for cross-validated k-NN accuracy")
        return q
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if counts.min() >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    kk = int(min(k, len(rows) - len(rows) // folds - 1))
    clf = KNeighborsClassifier(n_neighbors=kk)
    q.knn_accuracy_2d = float(cross_val_score(clf, coords[rows], y, cv=splitter).mean())
    q.knn_accuracy_original = float(cross_val_score(clf, features[rows], y, cv=splitter).mean())
    q.knn_chance = float(counts.iloc[0] / len(y))
    q.knn_k, q.knn_n, q.knn_folds, q.label_column = kk, len(rows), folds, label_column
    return q


# --------------------------------------------------------------------------- all together
def umap_note(params: dict) -> str:
    """How the UMAP map was made, in words: graph, epochs, seed."""
    graph = "exact" if params.get("knn_graph") == "exact" else "approximate"
    return (f"UMAP: {graph} {params['n_neighbors']}-NN graph, {params['n_epochs']} epochs, seed {params['seed']} "
            "(one thread: the same seed gives the same map)")


def embed(features, metadata: pd.DataFrame | None = None, *, method: str = "umap", color_by: str | None = None,
          n_neighbors: int = 15, min_dist: float = 0.1, perplexity: float = 30.0, seed: int = 0,
          pca_dims: int | None = PCA_BEFORE_UMAP, class_names: list[str] | None = None,
          quality_label: str | None = None, n_epochs: int | None = None) -> EmbeddingResult:
    """Check, project and measure: the whole embedding analysis. Bad input raises MlvizError before any
    work. `quality_label`: the column whose k-NN accuracy is measured (default: the label)."""
    if method not in METHODS:
        raise MlvizError(f"unknown projection method '{method}'; choose one of {', '.join(METHODS)}")
    if metadata is not None and not isinstance(metadata, pd.DataFrame):
        raise MlvizError("the metadata must be a table (a DataFrame)")
    x = validate_features(features, None if metadata is None else len(metadata))
    if n_neighbors < 2:
        raise MlvizError(f"n_neighbors must be at least 2, got {n_neighbors}")
    if n_epochs is not None and int(n_epochs) < 1:
        raise MlvizError(f"n_epochs must be at least 1, got {n_epochs}")
    meta = standard_metadata(metadata, len(x), class_names)
    colour = check_color_by(meta, color_by)
    label_col = quality_label or ("label" if "label" in meta else None)
    if label_col is not None and label_col not in meta:
        raise MlvizError(f"no column '{label_col}' in the metadata to measure k-NN accuracy with")
    started = time.perf_counter()
    coords, params = project(x, method, n_neighbors=n_neighbors, min_dist=min_dist, perplexity=perplexity,
                             seed=seed, pca_dims=pca_dims, n_epochs=n_epochs)
    quality = neighbourhood_quality(x, coords, None if label_col is None else meta[label_col].to_numpy(),
                                    seed=seed, label_column=label_col)
    notes = list(quality.notes)
    if "pca_before" in params:
        pb = params["pca_before"]
        notes.append(f"reduced to {pb['dims']} dimensions with PCA first ({pb['variance_kept']:.1%} of the variance)")
    if method == "umap":
        notes.append(umap_note(params))
    return EmbeddingResult(method=method, params=params, n_samples=len(x), n_features=x.shape[1], coords=coords,
                           quality=quality, metadata=meta, color_by=colour, color_columns=color_columns(meta),
                           explained_variance=params.get("explained_variance_ratio"),
                           seconds=time.perf_counter() - started, notes=notes)
